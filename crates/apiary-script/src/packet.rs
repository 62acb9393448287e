//! The packet hook: PokieStream-compatible plugins that receive flow records, fed through a
//! bounded queue so a slow plugin never stalls capture (overflow is counted, never silent).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use apiary_event::encode::packet_log::PacketLog;
use serde_json::{Map, Value};

use crate::{Language, Limits, Output, ScriptError};

/// One flow record, PokieStream's `packet_log`: exactly [`RECORD_KEYS`], `None` where a field
/// does not apply (handed to plugins as `None`/`nil`). A compact typed struct, not a JSON map:
/// building, queueing and freeing maps was half of the plugin host's time.
pub type Record = PacketLog;

/// PokieStream's record keys in its order (Python plugins see the dict in this order); the one
/// definition lives with the `packet_log` encoding.
pub use apiary_event::encode::packet_log::KEYS as RECORD_KEYS;

/// How a packet plugin is run.
#[derive(Debug, Clone)]
pub struct PacketOptions {
    /// Pass the config as the receiver's second argument (PokieStream's `plugin.pass_config`).
    pub pass_config: bool,
    /// The config handed over when `pass_config` is set: PokieStream's merged `config:` mapping
    /// (Python sees nested attribute namespaces, Lua nested tables).
    pub config: Value,
    /// Records that may wait for the plugin (PokieStream's `queue_size`; 0 means 10000).
    pub queue_size: usize,
    /// Most records per plugin call in bulk mode and per transfer to the Python worker.
    pub batch_size: usize,
    /// Lua states (threads) receiving records; 1 keeps PokieStream's one-at-a-time order.
    pub lua_workers: usize,
    /// Memory limit of each Lua state.
    pub memory: usize,
    /// Instruction budget per call and other limits.
    pub limits: Limits,
    /// Where `print` goes; PokieStream plugins print to stdout.
    pub output: Output,
    /// The Python interpreter (a name looked up on PATH, or a path).
    pub python: String,
}

impl Default for PacketOptions {
    fn default() -> Self {
        Self {
            pass_config: false,
            config: Value::Object(Map::new()),
            queue_size: 10_000,
            batch_size: 1024,
            lua_workers: 1,
            memory: 256 << 20,
            limits: Limits::default(),
            output: Output::Stdout,
            python: "python3".into(),
        }
    }
}

/// Record counters of a packet host. Every submitted record ends up in exactly one of
/// delivered, failed, dropped or lost, once the host is finished.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PacketStats {
    /// Records offered to the host.
    pub submitted: u64,
    /// Records handed to the plugin without error.
    pub delivered: u64,
    /// Records whose receiver call raised an error (PokieStream would have exited).
    pub failed: u64,
    /// Records refused because the queue was full.
    pub dropped: u64,
    /// Records lost because the Python worker died while holding them.
    pub lost: u64,
}

/// What one plugin call produced.
#[derive(Debug, Default)]
pub(crate) struct BatchReport {
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    pub(crate) errors: Vec<String>,
}

impl BatchReport {
    pub(crate) fn fail(&mut self, n: u64, msg: String) {
        self.failed += n;
        if self.errors.len() < 3 {
            self.errors.push(msg);
        }
    }
}

/// Counters and the queue's record count, shared by producers and workers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    submitted: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    queued: AtomicUsize,
    /// Set by `finish`: workers leave once the queue is empty even if senders are still alive.
    closing: AtomicBool,
    capacity: usize,
    batch_size: usize,
}

impl Shared {
    pub(crate) fn record(&self, report: &BatchReport) {
        self.delivered.fetch_add(report.delivered, Ordering::Relaxed);
        let before = self.failed.fetch_add(report.failed, Ordering::Relaxed);
        // Log the first failures and then a sample, so a broken plugin cannot flood the log.
        if report.failed > 0 && (before < 10 || before % 1000 < report.failed) {
            for e in &report.errors {
                tracing::warn!(failed_so_far = before + report.failed, "packet plugin error: {e}");
            }
        }
    }

    pub(crate) fn lose(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }

    fn stats(&self) -> PacketStats {
        PacketStats {
            submitted: self.submitted.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

/// The consumer end of the queue, shared by worker threads.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    rx: Arc<Mutex<Receiver<Vec<Record>>>>,
    pub(crate) shared: Arc<Shared>,
}

impl Queue {
    /// Blocks for the next batch, then takes whatever else is already queued up to the batch
    /// size (bulk calls grow with the backlog); `None` once the host is finished and drained.
    pub(crate) fn next_batch(&self) -> Option<Vec<Record>> {
        let rx = self.rx.lock().ok()?;
        let mut batch = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(b) => break b,
                Err(RecvTimeoutError::Timeout) => {
                    if self.shared.closing.load(Ordering::Relaxed) {
                        return None;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        };
        while batch.len() < self.shared.batch_size {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        drop(rx);
        self.shared.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }

    pub(crate) fn batch_size(&self) -> usize {
        self.shared.batch_size
    }
}

/// A running packet plugin: submit records, read counters, finish to drain.
pub struct PacketHost {
    tx: Option<SyncSender<Vec<Record>>>,
    queue: Queue,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    bulk: bool,
    language: Language,
}

impl std::fmt::Debug for PacketHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketHost")
            .field("language", &self.language)
            .field("bulk", &self.bulk)
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl PacketHost {
    /// Loads the plugin at `path` (`.lua` or `.py`) and starts its workers.
    ///
    /// Fails as PokieStream does when the file has no `receiver` function (for Python, when it
    /// is not an `async def`), or does not compile.
    pub fn start(path: impl AsRef<Path>, opts: PacketOptions) -> Result<Self, ScriptError> {
        let path = path.as_ref();
        let language = Language::of_path(path)?;
        let capacity = if opts.queue_size == 0 { 10_000 } else { opts.queue_size };
        let shared =
            Arc::new(Shared { capacity, batch_size: opts.batch_size.max(1), ..Shared::default() });
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let queue = Queue { rx: Arc::new(Mutex::new(rx)), shared: shared.clone() };
        let (bulk, threads) = match language {
            Language::Lua => start_lua(path, &opts, &queue)?,
            Language::Python => crate::python::packet::start(path, &opts, &queue)?,
        };
        Ok(Self { tx: Some(tx), queue, shared, threads, bulk, language })
    }

    /// Whether the plugin defines `receiver_bulk` and gets whole batches.
    pub fn is_bulk(&self) -> bool {
        self.bulk
    }

    /// Queues records without blocking; when the queue is full the whole batch is dropped and
    /// counted, and `false` is returned.
    pub fn submit(&self, batch: Vec<Record>) -> bool {
        match &self.tx {
            Some(tx) => submit(tx, &self.shared, batch),
            None => false,
        }
    }

    /// A buffering producer handle for one capture thread.
    pub fn sender(&self) -> Option<PacketSender> {
        let tx = self.tx.clone()?;
        Some(PacketSender { tx, shared: self.shared.clone(), buf: Vec::new() })
    }

    /// Current counters.
    pub fn stats(&self) -> PacketStats {
        self.shared.stats()
    }

    /// Stops accepting records, waits until the workers have handed every queued record to the
    /// plugin, and returns the final counters. Records submitted through senders that are still
    /// alive after this are counted as dropped.
    pub fn finish(mut self) -> PacketStats {
        self.shutdown();
        self.shared.stats()
    }

    fn shutdown(&mut self) {
        self.tx = None;
        self.shared.closing.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // A sender that raced with `finish` may have queued a batch after the workers left.
        if let Ok(rx) = self.queue.rx.lock() {
            while let Ok(batch) = rx.try_recv() {
                self.shared.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for PacketHost {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn submit(tx: &SyncSender<Vec<Record>>, shared: &Shared, batch: Vec<Record>) -> bool {
    let n = batch.len();
    if n == 0 {
        return true;
    }
    shared.submitted.fetch_add(n as u64, Ordering::Relaxed);
    if shared.closing.load(Ordering::Relaxed) {
        shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
        return false;
    }
    let queued = shared.queued.fetch_add(n, Ordering::Relaxed);
    if queued + n > shared.capacity {
        shared.queued.fetch_sub(n, Ordering::Relaxed);
        shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
        return false;
    }
    match tx.try_send(batch) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            shared.queued.fetch_sub(n, Ordering::Relaxed);
            shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
            false
        }
    }
}

/// A producer handle that gathers records into batches before queueing them.
#[derive(Debug)]
pub struct PacketSender {
    tx: SyncSender<Vec<Record>>,
    shared: Arc<Shared>,
    buf: Vec<Record>,
}

impl PacketSender {
    /// Adds one record; a full batch is queued at once.
    pub fn push(&mut self, record: Record) {
        self.buf.push(record);
        if self.buf.len() >= self.shared.batch_size {
            self.flush();
        }
    }

    /// Queues the records gathered so far (call when capture goes idle).
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            let batch = std::mem::take(&mut self.buf);
            submit(&self.tx, &self.shared, batch);
        }
    }
}

impl Drop for PacketSender {
    fn drop(&mut self) {
        self.flush();
    }
}

fn start_lua(
    path: &Path,
    opts: &PacketOptions,
    queue: &Queue,
) -> Result<(bool, Vec<JoinHandle<()>>), ScriptError> {
    let source = std::fs::read(path)
        .map_err(|source| ScriptError::Read { path: path.to_path_buf(), source })?;
    let source = Arc::new(source);
    let mut threads = Vec::new();
    let mut bulk = false;
    for i in 0..opts.lua_workers.max(1) {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (path, source, opts, queue) =
            (path.to_path_buf(), source.clone(), opts.clone(), queue.clone());
        let spawned =
            std::thread::Builder::new().name(format!("lua-packet-{i}")).spawn(move || {
                let mut receiver =
                    match crate::lua::packet::LuaReceiver::load(&path, &source, &opts) {
                        Ok(r) => {
                            let _ = ready_tx.send(Ok(r.is_bulk()));
                            r
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                let max = queue.batch_size();
                while let Some(batch) = queue.next_batch() {
                    for chunk in batch.chunks(max) {
                        let report = receiver.deliver(chunk);
                        queue.shared.record(&report);
                    }
                }
            });
        let handle = spawned
            .map_err(|e| ScriptError::Runtime(format!("cannot start a Lua worker thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(b)) => bulk = b,
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(e);
            }
            Err(_) => {
                let _ = handle.join();
                return Err(ScriptError::Runtime("the Lua worker thread stopped".into()));
            }
        }
        threads.push(handle);
    }
    Ok((bulk, threads))
}
