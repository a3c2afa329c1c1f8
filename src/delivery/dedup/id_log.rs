//! The file of remembered ids, `dedup-ids.log`: one `<unix seconds> <id as JSON
//! string>` line each. A request only appends its line (written before the answer, not
//! fsync'd); once `capacity` lines were added, a background thread rewrites the file
//! with only the live ids, so that no request ever waits for a rewrite.
//!
//! A rewrite is crash-safe: the new file is written beside the old one and fsync'd,
//! renamed over it, and the directory is fsync'd so that the rename itself is kept.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use moka::sync::Cache;

use super::{is_fresh, DedupError};

/// The ids remembered in memory: id → when it was written (unix seconds).
pub(super) type Seen = Cache<String, u64>;

/// The log and the thread that compacts it; dropping it stops the thread.
pub(super) struct IdLog {
    file: Arc<LogFile>,
    /// Wakes the compactor. `None` once dropped, which ends the compactor's loop.
    wake: Option<SyncSender<()>>,
    compactor: Option<JoinHandle<()>>,
}

impl IdLog {
    /// Reads `path` back into `seen` (skipping ids older than `ttl`), compacts it, and
    /// starts the compactor.
    pub(super) fn open(
        path: &Path,
        capacity: u64,
        seen: &Seen,
        ttl: Duration,
    ) -> Result<Self, DedupError> {
        let fail = |e: std::io::Error| DedupError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let loaded = read_back(path, seen, ttl).map_err(fail)?;
        let file = Arc::new(LogFile {
            path: path.to_owned(),
            appender: Mutex::new(open_append(path).map_err(fail)?),
            appended: AtomicU64::new(0),
            capacity,
            compactions: AtomicU64::new(0),
        });
        file.compact(seen, ttl).map_err(fail)?;
        tracing::info!(path = %path.display(), loaded, "update ids read back");

        let (wake, woken) = mpsc::sync_channel(1);
        let compactor = {
            let (file, seen) = (file.clone(), seen.clone());
            std::thread::Builder::new()
                .name("dedup-compactor".into())
                .spawn(move || run_compactor(&file, &seen, ttl, &woken))
                .map_err(fail)?
        };
        Ok(Self {
            file,
            wake: Some(wake),
            compactor: Some(compactor),
        })
    }

    /// Appends `key`; asks for a compaction when the file has grown enough.
    pub(super) fn append(&self, key: &str, at: u64) -> std::io::Result<()> {
        if let Some(wake) = &self.wake {
            self.file.append(key, at, wake)?;
        }
        Ok(())
    }
}

impl Drop for IdLog {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(compactor) = self.compactor.take() {
            // A compaction under way finishes first, so that a restart in the same
            // process reads a whole file.
            let _ = compactor.join();
        }
    }
}

/// The compactor: one rewrite per wake-up, until the log is dropped.
fn run_compactor(file: &LogFile, seen: &Seen, ttl: Duration, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        match file.compact(seen, ttl) {
            Ok(live) => tracing::debug!(path = %file.path.display(), live, "update ids compacted"),
            Err(e) => {
                // Tried again after another `capacity` lines, not in a loop.
                file.appended.store(0, Ordering::Relaxed);
                tracing::warn!(path = %file.path.display(), error = %e, "cannot compact the update ids; the file keeps growing until the next try");
            }
        }
    }
}

struct LogFile {
    path: PathBuf,
    /// The open file, appended to under this lock; replaced by a compaction.
    appender: Mutex<std::fs::File>,
    /// Lines appended since the last compaction.
    appended: AtomicU64,
    capacity: u64,
    /// Compactions done, the one at start included.
    compactions: AtomicU64,
}

impl LogFile {
    fn append(&self, key: &str, at: u64, wake: &SyncSender<()>) -> std::io::Result<()> {
        let mut line = format!("{at} ");
        line.push_str(&serde_json::to_string(key).unwrap_or_default());
        line.push('\n');
        self.lock().write_all(line.as_bytes())?;
        if self.appended.fetch_add(1, Ordering::Relaxed) + 1 >= self.capacity {
            // Full: a wake-up is already pending.
            let _ = wake.try_send(());
        }
        Ok(())
    }

    /// Rewrites the file with the live ids of `seen`, oldest first, and appends from
    /// there. Appends go on meanwhile; they wait only for the final rename. Returns
    /// how many ids were kept.
    fn compact(&self, seen: &Seen, ttl: Duration) -> std::io::Result<usize> {
        // Every line before this offset has its id in `seen` already (an id is put
        // there before its line is written), so the snapshot taken next covers them;
        // lines appended after it are copied over at the end.
        let covered = self.lock().metadata()?.len();
        seen.run_pending_tasks();
        let mut live: Vec<(u64, String)> = seen
            .iter()
            .filter(|(_, at)| is_fresh(*at, ttl))
            .map(|(key, at)| (at, key.as_ref().clone()))
            .collect();
        live.sort();
        let temp = self.path.with_extension("log.tmp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&temp)?);
        for (at, key) in &live {
            writeln!(
                out,
                "{at} {}",
                serde_json::to_string(key).unwrap_or_default()
            )?;
        }
        let mut out = out.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        // The lines appended meanwhile, most of them without holding appends up; those
        // appended after this first copy (the rest of a line it caught half-written
        // included) follow under the lock. They are not fsync'd here, as they were not
        // where they were appended either.
        let mut old = std::fs::File::open(&self.path)?;
        old.seek(SeekFrom::Start(covered))?;
        std::io::copy(&mut old, &mut out)?;
        {
            let mut appender = self.lock();
            std::io::copy(&mut old, &mut out)?;
            std::fs::rename(&temp, &self.path)?;
            *appender = open_append(&self.path)?;
            self.appended.store(0, Ordering::Relaxed);
        }
        sync_parent_dir(&self.path)?;
        self.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(live.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::fs::File> {
        self.appender.lock().expect("dedup file lock poisoned")
    }
}

/// Puts the fresh ids of `path` into `seen`; how many.
fn read_back(path: &Path, seen: &Seen, ttl: Duration) -> std::io::Result<u64> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut loaded = 0;
    for line in BufReader::new(file).lines() {
        // A line cut short by a crash ends the useful part.
        let Ok(line) = line else { break };
        let Some((at, key)) = parse_line(&line) else {
            continue;
        };
        if is_fresh(at, ttl) {
            seen.insert(key, at);
            loaded += 1;
        }
    }
    Ok(loaded)
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Makes a rename in `path`'s directory survive a crash.
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => std::fs::File::open(".")?.sync_all(),
    }
}

fn parse_line(line: &str) -> Option<(u64, String)> {
    let (at, key) = line.split_once(' ')?;
    Some((at.parse().ok()?, serde_json::from_str(key).ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::unix_now;
    use super::*;

    const TTL: Duration = Duration::from_secs(3600);

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
            appender: Mutex::new(open_append(&path).unwrap()),
            appended: AtomicU64::new(0),
            capacity: 3,
            compactions: AtomicU64::new(0),
        };
        let seen = Seen::new(100);
        let (wake, woken) = mpsc::sync_channel(1);
        for key in ["a", "b", "a"] {
            seen.insert(key.into(), unix_now());
            file.append(key, unix_now(), &wake).unwrap();
        }
        assert!(woken.try_recv().is_ok(), "the compactor was woken");
        assert_eq!(
            lines(&path).len(),
            3,
            "nothing rewritten on the request path"
        );
        assert_eq!(file.compactions.load(Ordering::Relaxed), 0);

        // What the compactor then does: one line per live id, and appends go on.
        assert_eq!(file.compact(&seen, TTL).unwrap(), 2);
        assert_eq!(lines(&path).len(), 2);
        file.append("c", unix_now(), &wake).unwrap();
        assert_eq!(lines(&path).len(), 3);
        assert!(!path.with_extension("log.tmp").exists());
    }

    #[test]
    fn ids_remembered_while_the_compactor_runs_are_all_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.log");
        let seen = Seen::new(100_000);
        let log = IdLog::open(&path, 50, &seen, TTL).unwrap();
        let keys: Vec<String> = (0..5_000).map(|n| format!("update-{n}")).collect();
        for key in &keys {
            seen.insert(key.clone(), unix_now());
            log.append(key, unix_now()).unwrap();
        }
        let file = log.file.clone();
        // Stops the compactor once a pending wake-up is served.
        drop(log);
        let compactions = file.compactions.load(Ordering::Relaxed);
        assert!(
            compactions > 1,
            "compacted in the background: {compactions}"
        );

        let again = Seen::new(100_000);
        let _log = IdLog::open(&path, 50, &again, TTL).unwrap();
        for key in &keys {
            assert!(again.contains_key(key), "{key} forgotten");
        }
    }
}
