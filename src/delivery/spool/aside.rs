//! Files kept aside from the log under the spool directory (`undecodable/`,
//! `quarantine/`): each written under a temporary name, fsync'd and renamed, so that it
//! is either whole or absent, and durable before the forwarder moves past its entry.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `<dir>/<subdir>/<name>` durably; returns the file's path.
pub(super) fn write(dir: &Path, subdir: &str, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let kept = dir.join(subdir);
    if !kept.is_dir() {
        std::fs::create_dir_all(&kept)?;
        File::open(dir)?.sync_all()?;
    }
    let path = kept.join(name);
    let temporary = kept.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    File::open(&kept)?.sync_all()?;
    Ok(path)
}
