//! Storage mechanisms the rest of the bridge builds on, each in one place: the
//! group-commit appender and its JSON-lines file, directory fsyncs and whole-file
//! replacement, and the key sets kept in a line file or in Redis.

pub mod appender;
pub mod fs;
pub mod key_set;
pub mod lines;
