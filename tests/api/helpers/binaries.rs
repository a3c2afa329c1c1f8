//! Where the binaries under test are. Shared with `tests/deployment.rs`.

use std::path::Path;

/// The `vizion-bridge` binary, which Cargo builds for this package's integration tests.
pub fn bridge_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vizion-bridge"))
}
