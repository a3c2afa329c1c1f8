//! Keys in a line file, one key a line as a JSON string, after the unix second it was
//! added at when the keys expire ([`LineFormat::Stamped`]: `<seconds> "<key>"`), alone
//! when they do not ([`LineFormat::Bare`]: `"<key>"`). Opening reads the file back into
//! [`Keys`]; an append only adds its line, fsync'd or not as configured. With
//! compaction on, once enough lines were added a background thread rewrites the file
//! with only the live keys, so that no append ever waits for a rewrite.
//!
//! A rewrite is crash-safe: the new file is written beside the old one and fsync'd,
//! renamed over it, and the directory is fsync'd so that the rename itself is kept.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::{key_hash, Keys};
use crate::clock::unix_seconds;
use crate::store::fs::{open_append, sync_parent_dir, temporary_path, write_or_cut_back};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// `<unix seconds> <key as a JSON string>`
    Stamped,
    /// `<key as a JSON string>`
    Bare,
}

#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    pub format: LineFormat,
    /// Fsync every append before it returns.
    pub sync_each_append: bool,
    /// Rewrite the file with only the live keys at start and then after this many
    /// appends; never when unset.
    pub compact_after: Option<u64>,
    /// What the keys are, in log lines ("update ids").
    pub name: &'static str,
    /// The compaction thread's name.
    pub compactor: &'static str,
}

/// The file and, when compaction is on, the thread that compacts it; dropping it
/// stops the thread.
pub struct KeyFile {
    file: Arc<LogFile>,
    /// Wakes the compactor. `None` once dropped, which ends the compactor's loop.
    wake: Option<SyncSender<()>>,
    compactor: Option<JoinHandle<()>>,
}

impl KeyFile {
    /// Reads `path` back into `keys` (skipping expired ones), and with compaction on
    /// compacts it and starts the compactor.
    pub fn open(path: &Path, options: FileOptions, keys: &Keys) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let loaded = read_back(path, options.format, keys)?;
        let existed = path.exists();
        let file = Arc::new(LogFile {
            path: path.to_owned(),
            options,
            appender: Mutex::new(open_append(path)?),
            appended: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
        });
        if !existed && options.sync_each_append {
            // Durable appends need the file's directory entry to be durable too.
            sync_parent_dir(path)?;
        }
        tracing::info!(path = %path.display(), loaded, "{} read back", options.name);
        let Some(_) = options.compact_after else {
            return Ok(Self {
                file,
                wake: None,
                compactor: None,
            });
        };
        file.compact(keys)?;
        let (wake, woken) = mpsc::sync_channel(1);
        let compactor = {
            let (file, keys) = (file.clone(), keys.clone());
            std::thread::Builder::new()
                .name(options.compactor.to_owned())
                .spawn(move || run_compactor(&file, &keys, &woken))?
        };
        Ok(Self {
            file,
            wake: Some(wake),
            compactor: Some(compactor),
        })
    }

    /// Appends `key` as added at `at`; asks for a compaction when the file has grown
    /// enough. With compaction on, `key` must be in the [`Keys`] already, added at the
    /// same `at`: a compaction keeps a key's line only when its time is the one held.
    pub fn append(&self, key: &str, at: u64) -> io::Result<()> {
        if self.file.append(key, at)? {
            if let Some(wake) = &self.wake {
                // Full: a wake-up is already pending.
                let _ = wake.try_send(());
            }
        }
        Ok(())
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(compactor) = self.compactor.take() {
            // A compaction under way finishes first, so that a restart in the same
            // process reads a whole file.
            let _ = compactor.join();
        }
    }
}

/// The compactor: one rewrite per wake-up, until the file is dropped.
fn run_compactor(file: &LogFile, keys: &Keys, woken: &Receiver<()>) {
    let name = file.options.name;
    while woken.recv().is_ok() {
        match file.compact(keys) {
            Ok(live) => tracing::debug!(path = %file.path.display(), live, "{name} compacted"),
            Err(e) => {
                // Tried again after another `compact_after` lines, not in a loop.
                file.appended.store(0, Ordering::Relaxed);
                tracing::warn!(path = %file.path.display(), error = %e, "cannot compact the {name}; the file keeps growing until the next try");
            }
        }
    }
}

struct LogFile {
    path: PathBuf,
    options: FileOptions,
    /// The open file, appended to under this lock; replaced by a compaction.
    appender: Mutex<File>,
    /// Lines appended since the last compaction.
    appended: AtomicU64,
    /// Compactions done, the one at start included.
    compactions: AtomicU64,
}

impl LogFile {
    /// Appends the line of `key`; true when the file is due for a compaction.
    fn append(&self, key: &str, at: u64) -> io::Result<bool> {
        let line = line(self.options.format, key, at);
        {
            let mut file = self.lock();
            // A line written in part would be glued to the next one and both lost
            // (compactions copy lines from the file, not from memory): it is cut back.
            let len = file.metadata()?.len();
            write_or_cut_back(&mut file, len, |file| file.write_all(line.as_bytes()))
                .map_err(|torn| torn.error)?;
            if self.options.sync_each_append {
                file.sync_data()?;
            }
        }
        let appended = self.appended.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(self
            .options
            .compact_after
            .is_some_and(|limit| appended >= limit))
    }

    /// Rewrites the file with the live keys, oldest first, and appends from there.
    /// Appends go on meanwhile; they wait only for the final rename. Returns how many
    /// keys were kept.
    ///
    /// [`Keys`] holds hashes, not text: the lines kept are read from the file itself,
    /// for each live key the first line with the time held for it (a line of a key
    /// let go of, an older line of a key added again, and a repeat are dropped).
    fn compact(&self, keys: &Keys) -> io::Result<usize> {
        // Every line before this offset has its key in `keys` already (a key is put
        // there before its line is written), so whether it is live is known; lines
        // appended after it are copied over at the end.
        let covered = self.lock().metadata()?.len();
        let temp = temporary_path(&self.path);
        let mut out = io::BufWriter::new(File::create(&temp)?);
        let mut old = File::open(&self.path)?;
        let mut kept = 0;
        let mut written = HashSet::new();
        let mut bytes = Vec::new();
        let mut reader = BufReader::new((&mut old).take(covered));
        loop {
            bytes.clear();
            if reader.read_until(b'\n', &mut bytes)? == 0 {
                break;
            }
            // Not text, or cut short by a crash: not a key's line.
            let Some(line) = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.strip_suffix('\n'))
            else {
                continue;
            };
            let Some((at, key)) = parse_line(self.options.format, line) else {
                continue;
            };
            let hash = key_hash(&key);
            let live = match self.options.format {
                LineFormat::Stamped => keys.added_at_hash(hash) == Some(at),
                LineFormat::Bare => keys.added_at_hash(hash).is_some(),
            };
            if live && written.insert(hash) {
                out.write_all(&bytes)?;
                kept += 1;
            }
        }
        drop(reader);
        let mut out = out.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        // The lines appended meanwhile, most of them without holding appends up; those
        // appended after this first copy (the rest of a line it caught half-written
        // included) follow under the lock. They are fsync'd here only if they were
        // where they were appended.
        old.seek(SeekFrom::Start(covered))?;
        io::copy(&mut old, &mut out)?;
        {
            let mut appender = self.lock();
            io::copy(&mut old, &mut out)?;
            if self.options.sync_each_append {
                out.sync_all()?;
            }
            std::fs::rename(&temp, &self.path)?;
            *appender = open_append(&self.path)?;
            self.appended.store(0, Ordering::Relaxed);
        }
        sync_parent_dir(&self.path)?;
        self.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(kept)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, File> {
        self.appender.lock().expect("key file lock poisoned")
    }
}

fn line(format: LineFormat, key: &str, at: u64) -> String {
    let key = serde_json::to_string(key).unwrap_or_default();
    match format {
        LineFormat::Stamped => format!("{at} {key}\n"),
        LineFormat::Bare => format!("{key}\n"),
    }
}

fn parse_line(format: LineFormat, line: &str) -> Option<(u64, String)> {
    match format {
        LineFormat::Stamped => {
            let (at, key) = line.split_once(' ')?;
            Some((at.parse().ok()?, serde_json::from_str(key).ok()?))
        }
        LineFormat::Bare => Some((unix_seconds(), serde_json::from_str(line).ok()?)),
    }
}

/// Puts the live keys of `path` into `keys`; how many.
fn read_back(path: &Path, format: LineFormat, keys: &Keys) -> io::Result<u64> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut loaded = 0;
    for line in BufReader::new(file).lines() {
        // A line cut short by a crash ends the useful part.
        let Ok(line) = line else { break };
        let Some((at, key)) = parse_line(format, &line) else {
            continue;
        };
        if keys.is_fresh(at) {
            keys.insert(&key, at);
            loaded += 1;
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TTL: Duration = Duration::from_secs(3600);

    fn options(compact_after: u64) -> FileOptions {
        FileOptions {
            format: LineFormat::Stamped,
            sync_each_append: false,
            compact_after: Some(compact_after),
            name: "test keys",
            compactor: "test-compactor",
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_full_log_wakes_the_compactor_and_the_append_itself_does_not_compact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.log");
        let file = LogFile {
            path: path.clone(),
            options: options(3),
            appender: Mutex::new(open_append(&path).unwrap()),
            appended: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
        };
        let seen = Keys::new(Some(100), Some(TTL));
        let mut woken = false;
        for key in ["a", "b", "a"] {
            let now = unix_seconds();
            seen.insert(key, now);
            woken = file.append(key, now).unwrap();
        }
        assert!(woken, "the compactor was woken");
        assert_eq!(
            lines(&path).len(),
            3,
            "nothing rewritten on the request path"
        );
        assert_eq!(file.compactions.load(Ordering::Relaxed), 0);

        // What the compactor then does: one line per live id, and appends go on.
        assert_eq!(file.compact(&seen).unwrap(), 2);
        assert_eq!(lines(&path).len(), 2);
        file.append("c", unix_seconds()).unwrap();
        assert_eq!(lines(&path).len(), 3);
        assert!(!path.with_extension("log.tmp").exists());
    }

    #[test]
    fn a_compaction_keeps_one_line_per_live_key_the_first_with_its_held_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.log");
        let now = unix_seconds();
        // "gone" expired; "torn" was cut short by a crash; "a" was added again later.
        std::fs::write(
            &path,
            format!(
                "{old} \"gone\"\n{now1} \"a\"\n{now} \"b\"\nnot a line\n{now} \"a\"\n{now} \"b\"\n{now} \"to",
                old = now - 2 * TTL.as_secs(),
                now1 = now - 1,
            ),
        )
        .unwrap();
        let seen = Keys::new(Some(100), Some(TTL));
        let log = KeyFile::open(&path, options(1_000), &seen).unwrap();
        assert!(seen.contains("a") && seen.contains("b"));
        assert!(!seen.contains("gone"));
        assert_eq!(
            lines(&path),
            [format!("{now} \"b\""), format!("{now} \"a\"")],
            "one line per live key: the first with the time held for it"
        );
        seen.insert("c", now);
        log.append("c", now).unwrap();
        assert_eq!(log.file.compact(&seen).unwrap(), 3);
        assert_eq!(lines(&path).len(), 3);
    }

    #[test]
    fn ids_remembered_while_the_compactor_runs_are_all_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.log");
        let seen = Keys::new(Some(100_000), Some(TTL));
        let log = KeyFile::open(&path, options(50), &seen).unwrap();
        let keys: Vec<String> = (0..5_000).map(|n| format!("update-{n}")).collect();
        for key in &keys {
            let now = unix_seconds();
            seen.insert(key, now);
            log.append(key, now).unwrap();
        }
        let file = log.file.clone();
        // Stops the compactor once a pending wake-up is served.
        drop(log);
        let compactions = file.compactions.load(Ordering::Relaxed);
        assert!(
            compactions > 1,
            "compacted in the background: {compactions}"
        );

        let again = Keys::new(Some(100_000), Some(TTL));
        let _log = KeyFile::open(&path, options(50), &again).unwrap();
        for key in &keys {
            assert!(again.contains(key), "{key} forgotten");
        }
    }

    #[test]
    fn bare_keys_are_kept_for_good_without_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        std::fs::write(&path, "\"r1\"\nnot a key\n\"r2\"\n").unwrap();
        let options = FileOptions {
            format: LineFormat::Bare,
            sync_each_append: true,
            compact_after: None,
            name: "test keys",
            compactor: "test-compactor",
        };
        let keys = Keys::new(None, None);
        let file = KeyFile::open(&path, options, &keys).unwrap();
        assert!(keys.contains("r1") && keys.contains("r2"));
        file.append("r\n3", 0).unwrap();
        drop(file);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "\"r1\"\nnot a key\n\"r2\"\n\"r\\n3\"\n"
        );
    }
}
