//! What makes a change to a directory survive a crash: a new, renamed or deleted entry
//! is durable only once the directory itself is fsync'd.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes `path`'s own entry in its directory durable. A bare file name lives in the
/// working directory.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Where [`replace_file`] writes before the rename: `<path>.tmp`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` so that after a crash it holds either its old content or
/// all of `bytes`: written beside it under [`temporary_path`], fsync'd, renamed over
/// it, and the directory fsync'd so that the rename is kept.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    sync_parent_dir(path)
}

/// A write to the end of a file that failed.
#[derive(Debug)]
pub struct TornWrite {
    pub error: io::Error,
    /// Whether the file was cut back to its length before the write, and that fsync'd:
    /// when not, it may end with part of what was written.
    pub cut_back: bool,
}

/// Runs `write`, which appends to `file`, `len` bytes long until then. When it fails,
/// whatever reached the file is cut back, so that no half-written line is read back or
/// glued to the next one.
pub fn write_or_cut_back<T>(
    file: &mut File,
    len: u64,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> Result<T, TornWrite> {
    write(file).map_err(|error| TornWrite {
        error,
        cut_back: file.set_len(len).and_then(|()| file.sync_data()).is_ok(),
    })
}

/// Opens `path` for appending (and reading at given offsets), creating it if it is
/// missing.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_append_is_cut_back_to_where_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines");
        std::fs::write(&path, b"kept\n").unwrap();
        let mut file = open_append(&path).unwrap();
        let torn = write_or_cut_back(&mut file, 5, |file| {
            file.write_all(b"half a li")?;
            Err::<(), _>(io::Error::other("the disk is full"))
        })
        .unwrap_err();
        assert!(torn.cut_back);
        assert_eq!(torn.error.to_string(), "the disk is full");
        file.write_all(b"next\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept\nnext\n");
    }

    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::write(&path, b"old").unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!temporary_path(&path).exists());
        assert_eq!(temporary_path(&path), dir.path().join("state.tmp"));
    }
}
