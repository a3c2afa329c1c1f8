//! Storage mechanisms the rest of the bridge builds on, each in one place: the
//! group-commit appender and its JSON-lines file, directory fsyncs and whole-file
//! replacement, the key sets kept in a line file or in Redis, the versioned state of
//! each reference (in a line file or in Redis, advanced by compare-and-set), and the
//! segment log with its frames, reader and checkpoint.

pub mod appender;
pub mod fs;
pub mod key_set;
pub mod lines;
pub mod log;
pub mod state;
