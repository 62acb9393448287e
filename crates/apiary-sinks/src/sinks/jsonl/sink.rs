//! The JSONL writer: encodes a batch into one buffer and writes it with `write_all`.
//!
//! Writes go to the page cache in one system call per batch; `fsync` happens on rotation and
//! on flush, off the per-event path, which is what lets one core write a million events a second.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiary_event::{Event, Timestamp};

use crate::{Encoder, Sink, SinkError};

/// An open JSONL file with its rotation state.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: File,
    written: u64,
    opened: Instant,
    max_bytes: u64,
    max_age: Duration,
    keep: usize,
    buf: Vec<u8>,
    encoder: Encoder,
}

impl JsonlSink {
    /// Opens `path` for appending, creating its directory.
    pub fn open(
        path: PathBuf,
        max_bytes: u64,
        max_age: Duration,
        keep: usize,
    ) -> Result<Self, SinkError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            written,
            opened: Instant::now(),
            max_bytes,
            max_age,
            keep,
            buf: Vec::with_capacity(1 << 20),
            encoder: Encoder::default(),
        })
    }

    /// Writes records in `encoder`'s format instead of native JSON.
    pub fn with_encoder(mut self, encoder: Encoder) -> Self {
        self.encoder = encoder;
        self
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        self.file.sync_all()?;
        let mut stamp = String::new();
        Timestamp::now().write_rfc3339(&mut stamp, "Z");
        let stamp: String =
            stamp.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
        let rotated = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        fs::rename(&self.path, &rotated)?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.written = 0;
        self.opened = Instant::now();
        self.prune()?;
        Ok(())
    }

    /// Deletes rotated files beyond the newest `keep`. Their names sort by time.
    fn prune(&self) -> Result<(), SinkError> {
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else { return Ok(()) };
        let dir =
            self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let prefix = format!("{name}.");
        let mut rotated: Vec<PathBuf> = fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
            .map(|e| e.path())
            .collect();
        rotated.sort();
        let excess = rotated.len().saturating_sub(self.keep);
        for old in rotated.iter().take(excess) {
            fs::remove_file(old)?;
        }
        Ok(())
    }

    /// Encodes and writes a batch synchronously (benchmarks call this directly).
    pub fn write_batch(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        if self.written >= self.max_bytes
            || (self.written > 0 && self.opened.elapsed() >= self.max_age)
        {
            self.rotate()?;
        }
        self.buf.clear();
        for event in batch {
            self.encoder.write_line(event, &mut self.buf);
        }
        self.file.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        if self.buf.capacity() > 8 << 20 {
            // One huge batch should not pin its buffer for the life of the process.
            self.buf = Vec::with_capacity(1 << 20);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for JsonlSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        self.write_batch(batch)
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.file.sync_data()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use apiary_event::{Kind, encode};

    use super::*;

    fn events(n: u16) -> Vec<Arc<Event>> {
        (0..n)
            .map(|i| {
                let mut e = Event::new(Kind::SESSION_OPEN, Arc::from("n"));
                e.src_port = Some(i);
                Arc::new(e)
            })
            .collect()
    }

    #[test]
    fn writes_lines_and_rotates_by_size_keeping_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/events.jsonl");
        let mut sink = JsonlSink::open(path.clone(), 4096, Duration::from_secs(3600), 2).unwrap();
        for _ in 0..10 {
            sink.write_batch(&events(40)).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[0], "events.jsonl");
        for name in &names {
            let text = fs::read_to_string(dir.path().join("sub").join(name)).unwrap();
            for line in text.lines() {
                let e = encode::from_json(line.as_bytes()).unwrap();
                assert_eq!(e.kind, Kind::SESSION_OPEN);
            }
        }
    }

    #[test]
    fn rotates_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut sink = JsonlSink::open(path, 1 << 30, Duration::from_millis(10), 5).unwrap();
        sink.write_batch(&events(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        sink.write_batch(&events(1)).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
