//! The per-sink spool: where events wait while their sink is down or slow, in order.
//!
//! The disk spool is a directory of append-only segment files plus a cursor file:
//!
//! ```text
//! <dir>/00000000000000000001.seg   records: u32 LE length | u32 LE crc32 of body | body (native JSON)
//! <dir>/00000000000000000002.seg
//! <dir>/cursor                     u64 LE segment | u64 LE offset | u32 LE crc32 of the 16 bytes
//! ```
//!
//! Why this shape: appends are one `write_all` per batch, so a SIGKILL loses nothing that was
//! written (the page cache outlives the process) and at worst leaves a torn last record, which
//! opening detects (length or checksum) and truncates. `fsync` runs on a timer (`sync_interval`)
//! and on shutdown, which bounds what a power cut can take without paying a disk flush per
//! batch. The cursor is written after each acknowledged batch; a torn or stale cursor only
//! means some events are sent again, which is at-least-once. The byte bound drops whole oldest
//! segments, counting the unread records in them.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiary_event::{Event, encode};

/// Largest record accepted when reading back; anything bigger is corruption.
const MAX_RECORD: u32 = 64 << 20;
const HEADER: usize = 8;

/// Where an event stands in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    seq: u64,
    off: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    bytes: u64,
    records: u64,
}

/// What an append did besides storing the events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// Unread events thrown away to stay inside the byte bound.
    pub(crate) dropped: u64,
}

/// Settings of one sink's spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory of the disk spool; `None` keeps the backlog in memory only (lost on restart).
    pub dir: Option<PathBuf>,
    /// Most bytes on disk (or, in memory, `max_bytes / 512` events) before the oldest go.
    pub max_bytes: u64,
    /// How often appended data and the cursor are flushed to disk (`fsync`); zero = every write.
    pub sync_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { dir: None, max_bytes: 1 << 30, sync_interval: Duration::from_secs(1) }
    }
}

/// One sink's backlog, on disk or in memory.
#[derive(Debug)]
pub(crate) enum Spool {
    Disk(DiskSpool),
    Memory(MemorySpool),
}

impl Spool {
    /// Opens the spool a config describes, recovering what a previous run left.
    pub(crate) fn open(cfg: &SpoolConfig) -> io::Result<Self> {
        Ok(match &cfg.dir {
            Some(dir) => Self::Disk(DiskSpool::open(dir, cfg.max_bytes, cfg.sync_interval)?),
            None => Self::Memory(MemorySpool::new((cfg.max_bytes / 512).max(1024) as usize)),
        })
    }

    pub(crate) fn len(&self) -> u64 {
        match self {
            Self::Disk(d) => d.len(),
            Self::Memory(m) => m.events.len() as u64,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn is_durable(&self) -> bool {
        matches!(self, Self::Disk(_))
    }

    pub(crate) fn append(&mut self, events: &[Arc<Event>]) -> io::Result<Appended> {
        match self {
            Self::Disk(d) => d.append(events),
            Self::Memory(m) => Ok(m.append(events)),
        }
    }

    /// The oldest events, at most `max`; the same ones again until [`Spool::ack`].
    pub(crate) fn peek(&mut self, max: usize) -> io::Result<Peeked> {
        match self {
            Self::Disk(d) => d.peek(max),
            Self::Memory(m) => Ok(m.peek(max)),
        }
    }

    /// Forgets the events last returned by [`Spool::peek`]: they were delivered.
    pub(crate) fn ack(&mut self) -> io::Result<()> {
        match self {
            Self::Disk(d) => d.ack(),
            Self::Memory(m) => {
                m.ack();
                Ok(())
            }
        }
    }

    /// Flushes to disk if the sync interval has passed (or always with `force`).
    pub(crate) fn sync(&mut self, force: bool) -> io::Result<()> {
        match self {
            Self::Disk(d) => d.sync(force),
            Self::Memory(_) => Ok(()),
        }
    }
}

/// Events read back from the spool, plus records that could not be decoded (counted as lost).
#[derive(Debug, Default)]
pub(crate) struct Peeked {
    pub(crate) events: Vec<Arc<Event>>,
    pub(crate) undecodable: u64,
}

/// The in-memory backlog used when a sink has no spool directory.
#[derive(Debug)]
pub(crate) struct MemorySpool {
    events: VecDeque<Arc<Event>>,
    max: usize,
    inflight: usize,
}

impl MemorySpool {
    pub(crate) fn new(max: usize) -> Self {
        Self { events: VecDeque::new(), max, inflight: 0 }
    }

    fn append(&mut self, events: &[Arc<Event>]) -> Appended {
        self.events.extend(events.iter().cloned());
        let excess = self.events.len().saturating_sub(self.max);
        self.events.drain(..excess);
        self.inflight = self.inflight.saturating_sub(excess);
        Appended { dropped: excess as u64 }
    }

    fn peek(&mut self, max: usize) -> Peeked {
        self.inflight = max.min(self.events.len());
        Peeked { events: self.events.iter().take(self.inflight).cloned().collect(), undecodable: 0 }
    }

    fn ack(&mut self) {
        let n = self.inflight.min(self.events.len());
        self.events.drain(..n);
        self.inflight = 0;
    }
}

/// The durable backlog: segments on disk and a cursor.
#[derive(Debug)]
pub(crate) struct DiskSpool {
    dir: PathBuf,
    /// Oldest first; the last one is being appended to.
    segments: VecDeque<Segment>,
    writer: Option<File>,
    cursor: File,
    /// First unacknowledged record.
    head: Pos,
    /// Records of the head segment before `head.off`.
    head_done: u64,
    /// Where the last peek ended and how many records it covered.
    inflight: Option<(Pos, u64, u64)>,
    max_bytes: u64,
    segment_bytes: u64,
    sync_interval: Duration,
    dirty: bool,
    last_sync: Instant,
    buf: Vec<u8>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

impl DiskSpool {
    /// Opens or creates the spool in `dir`, validating every segment and truncating a torn tail.
    pub(crate) fn open(dir: &Path, max_bytes: u64, sync_interval: Duration) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        let mut segments = VecDeque::with_capacity(seqs.len());
        for seq in seqs {
            let path = segment_path(dir, seq);
            let (valid, records, len) = scan_segment(&path)?;
            if valid < len {
                tracing::warn!(spool = %dir.display(), segment = seq, kept = valid, len, "spool segment has a torn or corrupt tail, truncating");
                OpenOptions::new().write(true).open(&path)?.set_len(valid)?;
            }
            segments.push_back(Segment { seq, bytes: valid, records });
        }
        let cursor_path = dir.join("cursor");
        let cursor = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&cursor_path)?;
        let mut spool = Self {
            dir: dir.to_path_buf(),
            segments,
            writer: None,
            cursor,
            head: Pos { seq: 0, off: 0 },
            head_done: 0,
            inflight: None,
            max_bytes: max_bytes.max(64 << 10),
            segment_bytes: (max_bytes / 16).clamp(16 << 10, 64 << 20),
            sync_interval,
            dirty: false,
            last_sync: Instant::now(),
            buf: Vec::new(),
        };
        spool.restore_cursor()?;
        Ok(spool)
    }

    fn restore_cursor(&mut self) -> io::Result<()> {
        let mut raw = [0u8; 20];
        let saved = match self.cursor.read_exact_at(&mut raw, 0) {
            Ok(()) => decode_cursor(&raw),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(e) => return Err(e),
        };
        // Segments before the cursor's were fully delivered but not yet deleted.
        let first = self.segments.front().map_or(0, |s| s.seq);
        let start = match saved {
            Some(pos) if self.segments.iter().any(|s| s.seq == pos.seq) => pos,
            Some(pos) if pos.seq > first && self.segments.iter().all(|s| s.seq < pos.seq) => {
                // Everything was delivered.
                Pos { seq: pos.seq, off: 0 }
            }
            _ => Pos { seq: first, off: 0 },
        };
        while self.segments.front().is_some_and(|s| s.seq < start.seq) {
            if let Some(s) = self.segments.pop_front() {
                remove_if_exists(&segment_path(&self.dir, s.seq))?;
            }
        }
        self.head = start;
        self.head_done = 0;
        if let Some(seg) = self.segments.front()
            && seg.seq == start.seq
        {
            if start.off > seg.bytes {
                self.head.off = 0;
            } else if start.off > 0 {
                // Count the records before the cursor; also checks the cursor is on a boundary.
                match count_records_until(&segment_path(&self.dir, seg.seq), start.off)? {
                    Some(n) => self.head_done = n,
                    None => self.head.off = 0,
                }
            }
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum::<u64>().saturating_sub(self.head_done)
    }

    fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    fn append(&mut self, events: &[Arc<Event>]) -> io::Result<Appended> {
        if events.is_empty() {
            return Ok(Appended::default());
        }
        let roll = match self.segments.back() {
            None => true,
            Some(s) => s.bytes >= self.segment_bytes,
        };
        if roll || self.writer.is_none() {
            self.open_writer(roll)?;
        }
        self.buf.clear();
        for event in events {
            let start = self.buf.len();
            self.buf.extend_from_slice(&[0u8; HEADER]);
            apiary_event::encode::json::write(event, &mut self.buf);
            let body = self.buf.get(start + HEADER..).unwrap_or_default();
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            let crc = crc32fast::hash(body);
            if let Some(h) = self.buf.get_mut(start..start + HEADER) {
                h[..4].copy_from_slice(&len.to_le_bytes());
                h[4..].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let Some(writer) = self.writer.as_mut() else {
            return Err(io::Error::other("spool writer missing"));
        };
        writer.write_all(&self.buf)?;
        if let Some(seg) = self.segments.back_mut() {
            seg.bytes += self.buf.len() as u64;
            seg.records += events.len() as u64;
        }
        self.dirty = true;
        if self.buf.capacity() > 8 << 20 {
            self.buf = Vec::new();
        }
        let dropped = self.enforce_bound()?;
        self.sync(false)?;
        Ok(Appended { dropped })
    }

    /// Opens the last segment for appending, or starts a new one.
    fn open_writer(&mut self, new_segment: bool) -> io::Result<()> {
        if new_segment {
            let seq = self.segments.back().map_or(self.head.seq.max(1), |s| s.seq + 1);
            let path = segment_path(&self.dir, seq);
            let old = self.writer.take();
            // Two flushes of a full segment's worth of data: off the worker, like `sync`, so
            // a dead sink's spool never stalls the listeners sharing the runtime.
            let file = off_worker(|| -> io::Result<File> {
                if let Some(w) = old {
                    w.sync_data()?;
                }
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                File::open(&self.dir)?.sync_all()?;
                Ok(file)
            })?;
            if self.segments.is_empty() {
                self.head = Pos { seq, off: 0 };
                self.head_done = 0;
            }
            self.segments.push_back(Segment { seq, bytes: 0, records: 0 });
            self.writer = Some(file);
        } else if let Some(seg) = self.segments.back() {
            self.writer =
                Some(OpenOptions::new().append(true).open(segment_path(&self.dir, seg.seq))?);
        }
        Ok(())
    }

    /// Drops whole oldest segments until the spool fits its byte bound.
    fn enforce_bound(&mut self) -> io::Result<u64> {
        let mut dropped = 0;
        while self.total_bytes() > self.max_bytes && self.segments.len() > 1 {
            let Some(seg) = self.segments.pop_front() else { break };
            let lost = if seg.seq == self.head.seq { seg.records - self.head_done } else { 0 };
            dropped += lost;
            remove_if_exists(&segment_path(&self.dir, seg.seq))?;
            if let Some(next) = self.segments.front() {
                self.head = Pos { seq: next.seq, off: 0 };
                self.head_done = 0;
            }
            self.inflight = None;
        }
        if dropped > 0 {
            self.write_cursor()?;
        }
        Ok(dropped)
    }

    fn peek(&mut self, max: usize) -> io::Result<Peeked> {
        let mut out = Peeked::default();
        let mut pos = self.head;
        let mut seg_done = self.head_done;
        'segments: for seg in self.segments.iter().filter(|s| s.seq >= self.head.seq) {
            if seg.seq != pos.seq {
                pos = Pos { seq: seg.seq, off: 0 };
                seg_done = 0;
            }
            if pos.off >= seg.bytes {
                continue;
            }
            let mut file = File::open(segment_path(&self.dir, seg.seq))?;
            file.seek(SeekFrom::Start(pos.off))?;
            let mut reader = BufReader::with_capacity(256 << 10, file);
            while pos.off < seg.bytes {
                if out.events.len() >= max {
                    break 'segments;
                }
                let mut header = [0u8; HEADER];
                reader.read_exact(&mut header)?;
                let (len, crc) = split_header(&header);
                if len > MAX_RECORD {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "spool record too long",
                    ));
                }
                let mut body = vec![0u8; len as usize];
                reader.read_exact(&mut body)?;
                pos.off += HEADER as u64 + u64::from(len);
                seg_done += 1;
                if crc32fast::hash(&body) != crc {
                    out.undecodable += 1;
                    continue;
                }
                match encode::from_json(&body) {
                    Ok(e) => out.events.push(Arc::new(e)),
                    Err(_) => out.undecodable += 1,
                }
            }
        }
        self.inflight = Some((pos, seg_done, self.head.seq));
        Ok(out)
    }

    fn ack(&mut self) -> io::Result<()> {
        let Some((end, seg_done, from_seq)) = self.inflight.take() else { return Ok(()) };
        if from_seq != self.head.seq || end < self.head {
            // Segments were dropped under the batch; the head already moved past it.
            return Ok(());
        }
        while self.segments.front().is_some_and(|s| s.seq < end.seq) {
            if let Some(s) = self.segments.pop_front() {
                remove_if_exists(&segment_path(&self.dir, s.seq))?;
            }
        }
        self.head = end;
        self.head_done = seg_done;
        // A fully read segment that is not being written to is deleted now.
        if let Some(seg) = self.segments.front()
            && seg.seq == end.seq
            && end.off >= seg.bytes
            && self.segments.len() > 1
        {
            let seq = seg.seq;
            self.segments.pop_front();
            remove_if_exists(&segment_path(&self.dir, seq))?;
            if let Some(next) = self.segments.front() {
                self.head = Pos { seq: next.seq, off: 0 };
                self.head_done = 0;
            }
        }
        self.write_cursor()?;
        self.sync(false)
    }

    fn write_cursor(&mut self) -> io::Result<()> {
        self.cursor.write_all_at(&encode_cursor(self.head), 0)?;
        self.dirty = true;
        Ok(())
    }

    fn sync(&mut self, force: bool) -> io::Result<()> {
        if !self.dirty || (!force && self.last_sync.elapsed() < self.sync_interval) {
            return Ok(());
        }
        off_worker(|| {
            if let Some(w) = &self.writer {
                w.sync_data()?;
            }
            self.cursor.sync_data()
        })?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// Runs `f`, which may wait on the disk (`fsync` can take tens of milliseconds on a busy
/// disk), without stalling the runtime worker that calls it: on a multi-threaded runtime the
/// worker's other tasks, such as listeners, move to another thread meanwhile.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn split_header(h: &[u8; HEADER]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, i] = *h;
    (u32::from_le_bytes([a, b, c, d]), u32::from_le_bytes([e, f, g, i]))
}

fn encode_cursor(pos: Pos) -> [u8; 20] {
    let mut raw = [0u8; 20];
    raw[..8].copy_from_slice(&pos.seq.to_le_bytes());
    raw[8..16].copy_from_slice(&pos.off.to_le_bytes());
    let crc = crc32fast::hash(&raw[..16]);
    raw[16..].copy_from_slice(&crc.to_le_bytes());
    raw
}

fn decode_cursor(raw: &[u8; 20]) -> Option<Pos> {
    let (body, crc) = raw.split_at(16);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let seq = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    let off = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
    Some(Pos { seq, off })
}

/// Checks a segment record by record: returns the length of its valid prefix, the records in
/// it, and the file length. A record is valid when it is complete and its checksum matches.
fn scan_segment(path: &Path) -> io::Result<(u64, u64, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let (mut valid, mut records) = (0u64, 0u64);
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; HEADER];
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let (n, crc) = split_header(&header);
        if n > MAX_RECORD || valid + HEADER as u64 + u64::from(n) > len {
            break;
        }
        body.resize(n as usize, 0);
        if reader.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
            break;
        }
        valid += HEADER as u64 + u64::from(n);
        records += 1;
    }
    Ok((valid, records, len))
}

/// Counts records that end at or before `off`; `None` when `off` is not a record boundary.
fn count_records_until(path: &Path, off: u64) -> io::Result<Option<u64>> {
    let mut reader = BufReader::with_capacity(256 << 10, File::open(path)?);
    let (mut at, mut n) = (0u64, 0u64);
    while at < off {
        let mut header = [0u8; HEADER];
        if reader.read_exact(&mut header).is_err() {
            return Ok(None);
        }
        let (len, _) = split_header(&header);
        reader.seek_relative(i64::from(len))?;
        at += HEADER as u64 + u64::from(len);
        n += 1;
    }
    Ok((at == off).then_some(n))
}

#[cfg(test)]
mod tests {
    use apiary_event::Kind;

    use super::*;

    fn events(from: u16, n: u16) -> Vec<Arc<Event>> {
        (from..from + n)
            .map(|i| {
                let mut e = Event::new(Kind::SESSION_RX, Arc::from("n"));
                e.src_port = Some(i);
                Arc::new(e)
            })
            .collect()
    }

    fn ports(p: &Peeked) -> Vec<u16> {
        p.events.iter().filter_map(|e| e.src_port).collect()
    }

    fn open(dir: &Path, max: u64) -> Spool {
        Spool::open(&SpoolConfig {
            dir: Some(dir.to_path_buf()),
            max_bytes: max,
            sync_interval: Duration::ZERO,
        })
        .unwrap()
    }

    #[test]
    fn keeps_order_across_segments_acks_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..100 {
            s.append(&events(i * 10, 10)).unwrap();
        }
        assert_eq!(s.len(), 1000);
        let p = s.peek(250).unwrap();
        assert_eq!(ports(&p), (0..250).collect::<Vec<_>>());
        // Not acknowledged: the same events come back.
        assert_eq!(ports(&s.peek(250).unwrap()), (0..250).collect::<Vec<_>>());
        s.ack().unwrap();
        assert_eq!(s.len(), 750);
        s.sync(true).unwrap();
        drop(s);
        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.len(), 750);
        let mut got = Vec::new();
        while !s.is_empty() {
            got.extend(ports(&s.peek(333).unwrap()));
            s.ack().unwrap();
        }
        assert_eq!(got, (250..1000).collect::<Vec<_>>());
        drop(s);
        let s = open(dir.path(), 1 << 20);
        assert!(s.is_empty());
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        s.append(&events(0, 5)).unwrap();
        drop(s);
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        // A half-written record, as a kill during write_all leaves it.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"']).unwrap();
        drop(f);
        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.len(), 5);
        s.append(&events(5, 1)).unwrap();
        assert_eq!(ports(&s.peek(100).unwrap()), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_corrupt_cursor_replays_from_the_oldest_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        s.append(&events(0, 10)).unwrap();
        s.peek(4).unwrap();
        s.ack().unwrap();
        drop(s);
        fs::write(dir.path().join("cursor"), b"garbage garbage garb").unwrap();
        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(ports(&s.peek(100).unwrap()), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn byte_bound_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 64 << 10);
        let mut dropped = 0;
        for i in 0..200 {
            dropped += s.append(&events(i * 10, 10)).unwrap().dropped;
        }
        let on_disk: u64 =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(on_disk <= (64 << 10) + (16 << 10) + 64, "{on_disk}");
        assert!(dropped > 0);
        assert_eq!(s.len() + dropped, 2000);
        // What is left is the newest, in order.
        let p = s.peek(usize::MAX).unwrap();
        let got = ports(&p);
        assert_eq!(*got.last().unwrap(), 1999);
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn memory_spool_bounds_and_orders() {
        let mut s =
            Spool::open(&SpoolConfig { dir: None, max_bytes: 0, ..Default::default() }).unwrap();
        let d = s.append(&events(0, 1500)).unwrap();
        assert_eq!(d.dropped, 476);
        assert_eq!(ports(&s.peek(3).unwrap()), vec![476, 477, 478]);
        s.ack().unwrap();
        assert_eq!(s.len(), 1021);
    }
}
