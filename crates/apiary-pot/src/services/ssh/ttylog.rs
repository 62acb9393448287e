//! TTY logs in asciicast v2 (one JSON header line, then `[seconds, "o"|"i"|"r", data]` lines),
//! replayable with `asciinema play`. Lines gather in a small buffer that is appended to the file
//! by a writer task when it fills, so a chatty session costs a bounded amount of memory and never
//! waits on the disk (a writer that falls behind truncates the log instead).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::Digest as _;
use tokio::sync::mpsc;

/// Buffered bytes that make a chunk for the writer.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for the disk per log before the log is truncated.
const QUEUED_CHUNKS: usize = 4;

/// One channel's recording.
#[derive(Debug)]
pub(crate) struct TtyLog {
    started: Instant,
    path: PathBuf,
    buf: Vec<u8>,
    chunk: usize,
    /// Bytes recorded so far (in the file, queued or buffered).
    size: usize,
    cap: usize,
    sha: sha2::Sha256,
    truncated: bool,
    writer: Option<mpsc::Sender<Vec<u8>>>,
}

impl TtyLog {
    /// A log for `dir/<name>.cast`; nothing touches the disk until the first chunk fills.
    pub(crate) fn new(
        dir: &Path,
        name: &str,
        title: &str,
        term: &str,
        (cols, rows): (u32, u32),
        cap: usize,
    ) -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = serde_json::json!({
            "version": 2,
            "width": cols.clamp(1, 1000),
            "height": rows.clamp(1, 1000),
            "timestamp": unix,
            "title": title,
            "env": {"TERM": term, "SHELL": "/bin/bash"},
        });
        let mut log = Self {
            started: Instant::now(),
            path: dir.join(format!("{name}.cast")),
            buf: Vec::new(),
            chunk: CHUNK,
            size: 0,
            cap,
            sha: sha2::Sha256::new(),
            truncated: false,
            writer: None,
        };
        let mut line = header.to_string().into_bytes();
        line.push(b'\n');
        log.append(&line);
        log
    }

    /// Records an event: `o` output, `i` input (keystrokes), `r` resize (`COLSxROWS`).
    pub(crate) fn record(&mut self, kind: &str, data: &[u8]) {
        if self.truncated || data.is_empty() {
            return;
        }
        let t = self.started.elapsed().as_secs_f64();
        let line =
            serde_json::json!([(t * 1e6).round() / 1e6, kind, String::from_utf8_lossy(data)]);
        let mut s = line.to_string().into_bytes();
        s.push(b'\n');
        self.append(&s);
    }

    fn append(&mut self, line: &[u8]) {
        if self.size + line.len() > self.cap {
            self.truncated = true;
            return;
        }
        self.sha.update(line);
        self.size += line.len();
        self.buf.extend_from_slice(line);
        if self.buf.len() >= self.chunk {
            self.flush();
        }
    }

    /// Hands the buffer to the writer task (started on the first flush).
    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.buf);
        let tx = self.writer.get_or_insert_with(|| spawn_writer(self.path.clone()));
        if let Err(mpsc::error::TrySendError::Full(chunk)) = tx.try_send(chunk) {
            // The disk is behind: stop recording rather than hold more memory; this chunk
            // follows the queued ones when the channel ends, so the file matches the hash.
            self.buf = chunk;
            self.truncated = true;
        }
    }

    /// Sends the rest to the file; returns path, size, SHA-256 and whether it was truncated.
    pub(crate) fn finish(mut self) -> (PathBuf, u64, String, bool) {
        if self.truncated && !self.buf.is_empty() && self.writer.is_some() {
            let (rest, tx) = (std::mem::take(&mut self.buf), self.writer.take());
            tokio::spawn(async move {
                if let Some(tx) = tx {
                    let _ = tx.send(rest).await;
                }
            });
        } else {
            self.flush();
        }
        let sha: String = self.sha.clone().finalize().iter().map(|b| format!("{b:02x}")).collect();
        (self.path.clone(), self.size as u64, sha, self.truncated)
    }
}

/// Appends chunks to `path` in order (the file is replaced by the first chunk), each write on
/// the blocking pool so the runtime never waits on the disk.
fn spawn_writer(path: PathBuf) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUED_CHUNKS);
    tokio::spawn(async move {
        let mut first = true;
        while let Some(chunk) = rx.recv().await {
            let (p, create) = (path.clone(), std::mem::replace(&mut first, false));
            let written = tokio::task::spawn_blocking(move || {
                if create && let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(!create)
                    .truncate(create)
                    .open(&p)?;
                f.write_all(&chunk)
            })
            .await;
            if let Ok(Err(e)) = written {
                tracing::warn!(path = %path.display(), error = %e, "cannot write tty log");
                return;
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_when_complete(path: &Path, size: u64) -> Vec<u8> {
        for _ in 0..500 {
            if let Ok(b) = std::fs::read(path)
                && b.len() as u64 == size
            {
                return b;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{} never reached {size} bytes", path.display());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn asciicast_lines_and_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TtyLog::new(dir.path(), "abc-0", "abc", "xterm", (80, 24), 200);
        t.record("o", b"root@h:~# ");
        t.record("i", b"l");
        t.record("o", &[b'x'; 300]);
        let (path, size, sha, truncated) = t.finish();
        assert!(truncated);
        let bytes = read_when_complete(&path, size);
        assert_eq!(sha, format!("{:x}", sha2::Sha256::digest(&bytes)));
        let text = String::from_utf8(bytes).unwrap();
        let mut lines = text.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!((header["version"].as_u64(), header["width"].as_u64()), (Some(2), Some(80)));
        let ev: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!((ev[1].as_str(), ev[2].as_str()), (Some("o"), Some("root@h:~# ")));
        assert_eq!(lines.count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_long_session_streams_to_the_file_with_bounded_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TtyLog::new(dir.path(), "s-1", "s", "xterm", (80, 24), 1 << 20);
        t.chunk = 1024;
        for i in 0..2000 {
            t.record("o", format!("line {i}\r\n").as_bytes());
            assert!(t.buf.len() < 1024 + 64, "buffer grew to {}", t.buf.len());
            if i % 50 == 0 {
                // Let the writer drain, as a real session's pauses do.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        let (path, size, sha, truncated) = t.finish();
        assert!(!truncated);
        let bytes = read_when_complete(&path, size);
        assert_eq!(sha, format!("{:x}", sha2::Sha256::digest(&bytes)));
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 2001);
        assert!(text.lines().last().unwrap().contains("line 1999"));
    }
}
