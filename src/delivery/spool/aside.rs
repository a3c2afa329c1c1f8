//! Files kept aside from the log under the spool directory (`undecodable/`,
//! `quarantine/`): each written under a temporary name, fsync'd and renamed, so that it
//! is either whole or absent, and durable before the forwarder moves past its entry.

use std::io;
use std::path::{Path, PathBuf};

use crate::store::fs::{replace_file, sync_dir};

/// Writes `bytes` to `<dir>/<subdir>/<name>` durably; returns the file's path.
pub(super) fn write(dir: &Path, subdir: &str, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let kept = dir.join(subdir);
    if !kept.is_dir() {
        std::fs::create_dir_all(&kept)?;
        sync_dir(dir)?;
    }
    let path = kept.join(name);
    replace_file(&path, bytes)?;
    Ok(path)
}
