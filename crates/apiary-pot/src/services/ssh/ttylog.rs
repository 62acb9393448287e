//! TTY logs in asciicast v2 (one JSON header line, then `[seconds, "o"|"i"|"r", data]` lines),
//! replayable with `asciinema play`. Kept in memory (capped) and written when the channel
//! closes, so a session never waits on the disk.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::Digest as _;

/// One channel's recording.
#[derive(Debug)]
pub(crate) struct TtyLog {
    started: Instant,
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl TtyLog {
    pub(crate) fn new(session: &str, term: &str, cols: u32, rows: u32, cap: usize) -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = serde_json::json!({
            "version": 2,
            "width": cols.clamp(1, 1000),
            "height": rows.clamp(1, 1000),
            "timestamp": unix,
            "title": session,
            "env": {"TERM": term, "SHELL": "/bin/bash"},
        });
        let mut buf = header.to_string().into_bytes();
        buf.push(b'\n');
        Self { started: Instant::now(), buf, cap, truncated: false }
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
        if self.buf.len() + s.len() > self.cap {
            self.truncated = true;
            return;
        }
        self.buf.extend_from_slice(&s);
    }

    /// Writes the log to `dir/<name>.cast` off the runtime; returns path, size and SHA-256.
    pub(crate) fn finish(self, dir: &Path, name: &str) -> (PathBuf, u64, String, bool) {
        let path = dir.join(format!("{name}.cast"));
        let sha: String =
            sha2::Sha256::digest(&self.buf).iter().map(|b| format!("{b:02x}")).collect();
        let size = self.buf.len() as u64;
        let (p, buf, d) = (path.clone(), self.buf, dir.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let r = std::fs::create_dir_all(&d).and_then(|()| std::fs::write(&p, &buf));
            if let Err(e) = r {
                tracing::warn!(path = %p.display(), error = %e, "cannot write tty log");
            }
        });
        (path, size, sha, self.truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asciicast_lines() {
        let mut t = TtyLog::new("abc", "xterm", 80, 24, 200);
        t.record("o", b"root@h:~# ");
        t.record("i", b"l");
        t.record("o", &[b'x'; 300]);
        assert!(t.truncated);
        let text = String::from_utf8(t.buf.clone()).unwrap();
        let mut lines = text.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header["version"], 2);
        assert_eq!(header["width"], 80);
        let ev: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(ev[1], "o");
        assert_eq!(ev[2], "root@h:~# ");
        assert_eq!(lines.count(), 1);
    }
}
