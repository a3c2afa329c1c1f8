//! Commands of the command line beyond `serve`, `check-config` and `sign`.

pub mod poll;
pub mod references;
pub mod spool;
