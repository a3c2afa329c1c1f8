//! Storage mechanisms the rest of the bridge builds on, each in one place: the
//! group-commit appender and its JSON-lines file, directory fsyncs and whole-file
//! replacement.

pub mod appender;
pub mod fs;
pub mod lines;
