//! Where the binaries under test are. Shared with `tests/deployment.rs`.

use std::path::{Path, PathBuf};

/// The `vizion-bridge` binary, which Cargo builds for this package's integration tests.
pub fn bridge_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vizion-bridge"))
}

/// The `vizion-sim` binary, built by the workspace beside `vizion-bridge`
/// (`target/<profile>/vizion-sim`). Cargo builds a package's own binaries for its
/// integration tests, not those of another workspace member, so a test that needs the
/// simulator fails here, saying how to build it, rather than being skipped.
pub fn sim_binary() -> PathBuf {
    let dir = bridge_binary()
        .parent()
        .expect("the bridge binary lies in the target directory");
    let sim = dir.join(format!("vizion-sim{}", std::env::consts::EXE_SUFFIX));
    assert!(
        sim.is_file(),
        "{} is missing: build it with `cargo build --workspace` (scripts/test.sh does) \
         before running the tests",
        sim.display()
    );
    sim
}
