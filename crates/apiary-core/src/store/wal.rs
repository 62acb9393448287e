//! SQLite WAL checkpoints on their own thread, so the event writer only ever appends.
//!
//! A checkpoint copies every page changed since the last one from the WAL into the database
//! file and fsyncs it. Run by the writer (SQLite's auto-checkpoint), that was about a third of
//! the writer's time under a flood, and its fsync put the disk's latency on the ingest path.
//! Here the writer only nudges this thread after each commit.
//!
//! Passive checkpoints never block the writer, but the WAL only starts over from its beginning
//! when one has copied every frame before the writer's next transaction, which a constant
//! flood rarely allows. So once the WAL holds [`RESTART_BYTES`], the thread takes the
//! writer's lock between two batches and runs a RESTART checkpoint, which copies the frames the
//! passive ones left (about the last batch's) and makes the next transaction write from the
//! WAL's start: the WAL's size stays bounded, and the writer waits for that copy only. A second
//! without commits truncates the WAL file, so a flood's WAL does not stay on disk.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tracing::warn;

use super::StoreError;

/// WAL size at which the checkpointer makes the WAL start over. Each restart stalls the writer
/// while it copies the last batch's pages and syncs; at 64 MiB that was a fifth of a flood's
/// time.
const RESTART_BYTES: i64 = 256 << 20;

/// Quiet time after which the checkpointer truncates the WAL.
const IDLE: Duration = Duration::from_secs(1);

/// How long a RESTART checkpoint waits for readers (a dashboard query) to leave the WAL.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The event writer's connection, which never checkpoints, and the thread that does.
/// [`write`](Self::write) runs each batch. Clones share both; when the last is dropped the
/// thread makes one final checkpoint and ends.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    conn: Arc<Mutex<rusqlite::Connection>>,
    nudge: SyncSender<()>,
}

impl Writer {
    /// Takes over `conn` (open on `path` in WAL mode), turns its own checkpoints off and starts
    /// the checkpointer on a connection of its own.
    pub(crate) fn start(path: &Path, conn: rusqlite::Connection) -> Result<Self, StoreError> {
        Self::start_with(path, conn, RESTART_BYTES)
    }

    /// [`start`](Self::start) with the WAL size (in bytes) that triggers a restart.
    fn start_with(
        path: &Path,
        conn: rusqlite::Connection,
        restart_bytes: i64,
    ) -> Result<Self, StoreError> {
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        // A WAL frame is one page of the file.
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let restart_frames = (restart_bytes / page.max(512)).max(1);
        let checkpointer = rusqlite::Connection::open(path)?;
        checkpointer.busy_timeout(BUSY_TIMEOUT)?;
        // The same durability as the writer: the checkpoint fsyncs the WAL before copying
        // and the database file after.
        checkpointer
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")?;
        let conn = Arc::new(Mutex::new(conn));
        // One pending nudge is enough: a checkpoint copies everything committed before it.
        let (nudge, rx) = mpsc::sync_channel(1);
        let writer = Arc::clone(&conn);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&checkpointer, &rx, &writer, restart_frames))
            .map_err(|e| StoreError::Thread("SQLite checkpoint", e))?;
        Ok(Self { conn, nudge })
    }

    /// Runs one batch on the connection (it blocks: call it off the async runtime), then hands
    /// the connection to a waiting checkpointer and asks for a checkpoint.
    pub(crate) fn write<T>(&self, batch: impl FnOnce(&mut rusqlite::Connection) -> T) -> T {
        let mut conn = self.conn.lock();
        let out = batch(&mut conn);
        // A fair unlock lets a waiting checkpointer in before the next batch; with a plain one
        // the writer takes the lock straight back, batch after batch, and the WAL grows.
        MutexGuard::unlock_fair(conn);
        let _ = self.nudge.try_send(());
        out
    }
}

fn run(
    conn: &rusqlite::Connection,
    rx: &Receiver<()>,
    writer: &Mutex<rusqlite::Connection>,
    restart_frames: i64,
) {
    // Whether the writer has committed since the WAL was last truncated.
    let mut written = false;
    loop {
        match rx.recv_timeout(IDLE) {
            Ok(()) => written = true,
            Err(RecvTimeoutError::Timeout) => {
                // Quiet after writing: give the WAL's disk space back. Under a flood the file
                // keeps its largest size (reusing it is cheaper than growing it again), which
                // would otherwise stay on disk for good.
                if written {
                    let _writing = writer.lock();
                    match checkpoint(conn, Mode::Truncate) {
                        Ok(_) => written = false,
                        Err(e) => warn!(error = %e, "SQLite WAL truncation postponed"),
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = checkpoint(conn, Mode::Passive);
                return;
            }
        }
        match checkpoint(conn, Mode::Passive) {
            Ok(frames) if frames >= restart_frames => {
                // Holding the writer's lock keeps its next batch from starting, so the RESTART
                // only ever waits for readers.
                let _writing = writer.lock();
                if let Err(e) = checkpoint(conn, Mode::Restart) {
                    // A long reader (a large export) holds the WAL; the next nudge retries.
                    warn!(error = %e, wal_frames = frames, "SQLite WAL restart postponed");
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "SQLite checkpoint failed"),
        }
    }
}

/// The checkpoints used here (SQLite's modes of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Copies what it can without waiting for anyone.
    Passive,
    /// Copies everything and makes the next writer start the WAL over.
    Restart,
    /// As `Restart`, and truncates the WAL file to nothing.
    Truncate,
}

/// Runs one checkpoint; returns the WAL's size in frames before it.
fn checkpoint(conn: &rusqlite::Connection, mode: Mode) -> Result<i64, rusqlite::Error> {
    let sql = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
        Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    let (busy, frames): (i64, i64) = conn.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if busy != 0 && mode != Mode::Passive {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("readers held the WAL".into()),
        ));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(path: &Path, restart_bytes: i64) -> Writer {
        let c = rusqlite::Connection::open(path).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE t (v BLOB);",
        )
        .unwrap();
        Writer::start_with(path, c, restart_bytes).unwrap()
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// Ten 4 KiB rows: at least ten WAL frames.
    fn write_some(c: &rusqlite::Connection) {
        for _ in 0..10 {
            c.execute("INSERT INTO t VALUES (zeroblob(4000))", []).unwrap();
        }
    }

    /// Polls `done` for up to 10 s; `what` describes the state it waits for.
    fn wait_for(what: impl Fn() -> String, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "after 10 s: {}", what());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let w = writer(&db, RESTART_BYTES);
        let before = size(&db);
        w.write(|c| write_some(c));
        // The writer never checkpoints (autocheckpoint 0), so only the thread can grow the
        // database file by the rows' pages.
        wait_for(|| "no checkpoint".into(), || size(&db) >= before + 10 * 4000);
    }

    #[test]
    fn restarts_the_wal_so_it_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let wal = dir.path().join("t.db-wal");
        let w = writer(&db, 40 * 4096);
        // Back-to-back transactions of 10+ frames each, as under a flood.
        const TXNS: u64 = 1000;
        for _ in 0..TXNS {
            w.write(|c| {
                let tx = c.transaction().unwrap();
                write_some(&tx);
                tx.commit().unwrap();
            });
        }
        // The WAL file never shrinks, so its size is the most it ever held: without restarts
        // every frame is still in it (measured: 51 MB), with them it holds what one passive
        // checkpoint's time lets the writer add (8 to 10 MB).
        let written = TXNS * 10 * 4096;
        assert!(size(&wal) < written / 2, "WAL grew to {} bytes of {written}", size(&wal));
    }

    #[test]
    fn truncates_the_wal_once_writes_stop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let wal = dir.path().join("t.db-wal");
        let w = writer(&db, RESTART_BYTES);
        w.write(|c| write_some(c));
        assert!(size(&wal) > 10 * 4000, "the rows are in the WAL first");
        wait_for(|| format!("WAL still {} bytes", size(&wal)), || size(&wal) == 0);
        // Still a working database, every row in the file.
        let n: i64 = w.write(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap());
        assert_eq!(n, 10);
    }
}
