//! Entry points: replay a capture file, capture live, or run the whole sensor (capture,
//! bounded queue, output or custom consumer, periodic stats).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use apiary_event::Timestamp;

use crate::capture::afpacket::{Ring, RingOptions};
use crate::capture::bpf::{BpfError, Filter};
use crate::capture::pcap::{PcapError, PcapReader};
use crate::config::{ConfigError, SensorConfig};
use crate::decode::LinkType;
use crate::output::Output;
use crate::output::rdns::{CachedRdns, NoRdns, Rdns};
use crate::pipeline::{Pipeline, Stats};
use crate::record::RecordSink;
use crate::record::{blocking_queue, queue};
use crate::track::Flush;

/// Why the sensor could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SensorError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A capture file could not be read.
    #[error(transparent)]
    Pcap(#[from] PcapError),
    /// The BPF expression could not be used.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// Live capture could not start.
    #[error("capture on {iface}: {source}")]
    Capture {
        /// The interface.
        iface: String,
        /// The cause.
        source: io::Error,
    },
    /// The packet plugin could not be loaded.
    #[error("Failed to load plugin: {0}")]
    Plugin(String),
    /// An I/O error (opening a file, writing output).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: io::Error,
    },
}

/// Options of a replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Node name stamped on records.
    pub node: Arc<str>,
    /// Show a progress bar on standard error when it is a terminal.
    pub progress: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self { node: Arc::from("sensor"), progress: false }
    }
}

/// Replays a pcap or pcapng stream through one pipeline into `sink`.
///
/// Deterministic: the same file and config give the same records, byte for byte.
pub fn replay<R: Read>(
    cfg: &SensorConfig,
    reader: R,
    sink: &mut dyn RecordSink,
    opts: &ReplayOptions,
) -> Result<Stats, SensorError> {
    replay_inner(cfg, reader, sink, opts, None)
}

/// Replays the file at `path`, with a progress bar when asked and on a terminal.
pub fn replay_file(
    cfg: &SensorConfig,
    path: &Path,
    sink: &mut dyn RecordSink,
    opts: &ReplayOptions,
) -> Result<Stats, SensorError> {
    let file = File::open(path).map_err(|source| SensorError::Io {
        context: format!("opening {}", path.display()),
        source,
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let pos = Arc::new(AtomicU64::new(0));
    let reader = Counting { inner: file, pos: Arc::clone(&pos) };
    let bar = opts.progress.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(len),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
        {
            bar.set_style(style);
        }
        bar
    });
    let progress = bar.as_ref().map(|b| (b, pos));
    let result = replay_inner(cfg, reader, sink, opts, progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    result
}

struct Counting<R> {
    inner: R,
    pos: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn replay_inner<R: Read>(
    cfg: &SensorConfig,
    reader: R,
    sink: &mut dyn RecordSink,
    opts: &ReplayOptions,
    progress: Option<(&indicatif::ProgressBar, Arc<AtomicU64>)>,
) -> Result<Stats, SensorError> {
    cfg.check()?;
    let mut reader = PcapReader::new(reader)?;
    let mut pipe = Pipeline::new(cfg, Arc::clone(&opts.node), 0);
    let mut n: u64 = 0;
    let expr = cfg.filter.scapy.trim();
    // Compiled per link type on first use (pcapng files may mix interfaces).
    let mut bpf: Vec<(u32, Filter)> = Vec::new();
    // The link type of the current interface, cached: pcapng files may mix several.
    let mut last: Option<(u32, Option<LinkType>)> = None;
    let outcome = loop {
        let pkt = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let link = match last {
            Some((lt, link)) if lt == pkt.linktype => link,
            _ => {
                let link = LinkType::from_pcap(pkt.linktype);
                last = Some((pkt.linktype, link));
                link
            }
        };
        n += 1;
        if !expr.is_empty() {
            let idx = match bpf.iter().position(|(lt, _)| *lt == pkt.linktype) {
                Some(i) => i,
                None => {
                    bpf.push((pkt.linktype, Filter::compile(expr, pkt.linktype, 262_144)?));
                    bpf.len() - 1
                }
            };
            if bpf.get(idx).is_some_and(|(_, f)| !f.matches(pkt.data, pkt.orig_len)) {
                pipe.bpf_rejected();
                continue;
            }
        }
        match link {
            Some(link) => pipe.packet(pkt.ts, link, pkt.data, sink),
            None => pipe.unknown_link(),
        }
        if n.is_multiple_of(65_536)
            && let Some((bar, pos)) = &progress
        {
            bar.set_position(pos.load(Ordering::Relaxed));
            bar.set_message(format!("{n} packets"));
        }
    };
    // A damaged tail still leaves the packets before it reported, and open flows flushed.
    if cfg.tracking.expire_at_end {
        pipe.flush(Flush::AtDeadline, sink);
    }
    sink.flush();
    match outcome {
        Ok(()) => Ok(pipe.stats()),
        Err(e @ PcapError::Truncated) => {
            tracing::warn!(error = %e, packets = n, "capture file ends mid-record; packets before it were replayed");
            Ok(pipe.stats())
        }
        Err(e) => Err(e.into()),
    }
}

/// Where the sensor reads packets from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A pcap or pcapng file (`-r FILE`).
    File(PathBuf),
    /// A network interface (`-i IFACE`).
    Interface(String),
}

/// A running live capture: one thread per fanout member.
pub struct LiveHandle {
    threads: Vec<JoinHandle<Result<Stats, SensorError>>>,
    shared: Vec<Arc<Mutex<Stats>>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for LiveHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHandle").field("workers", &self.threads.len()).finish()
    }
}

impl LiveHandle {
    /// Counters of all workers, as last published (about once a second).
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in &self.shared {
            if let Ok(s) = s.lock() {
                total.add(&s);
            }
        }
        total
    }

    /// Asks the workers to stop (they flush open flows as `shutdown`).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether every worker has ended.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Waits for the workers and returns their summed counters.
    pub fn join(self) -> Result<Stats, SensorError> {
        let mut total = Stats::default();
        let mut first_err = None;
        for t in self.threads {
            match t.join() {
                Ok(Ok(s)) => total.add(&s),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(SensorError::Capture {
                        iface: String::new(),
                        source: io::Error::other("capture thread panicked"),
                    });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}

/// Starts live capture on `iface` with `cfg.capture.workers` threads; `make_sink(i)` gives
/// worker `i` its sink. Setting `stop` (or [`LiveHandle::stop`]) ends the capture.
pub fn live(
    cfg: &SensorConfig,
    iface: &str,
    node: Arc<str>,
    stop: Arc<AtomicBool>,
    mut make_sink: impl FnMut(usize) -> Box<dyn RecordSink + Send>,
) -> Result<LiveHandle, SensorError> {
    cfg.check()?;
    let cap_err = |source: io::Error| SensorError::Capture { iface: iface.to_owned(), source };
    let link = crate::capture::afpacket::link_type_of(iface).map_err(cap_err)?;
    let expr = cfg.filter.scapy.trim();
    let filter = if expr.is_empty() {
        None
    } else {
        Some(Filter::compile(expr, link.to_pcap(), cfg.capture.snaplen)?)
    };
    let workers = cfg.capture.workers.clamp(1, 64);
    let group = (std::process::id() & 0xffff) as u16;
    let opts = RingOptions {
        block_size: cfg.capture.block_size,
        block_count: cfg.capture.block_count,
        block_timeout_ms: cfg.capture.block_timeout_ms,
        promiscuous: cfg.capture.promiscuous,
        fanout_group: (workers > 1).then_some(group),
    };
    // Open every ring before starting any thread, so a failure leaves nothing running.
    let mut rings = Vec::with_capacity(workers);
    for _ in 0..workers {
        rings.push(Ring::open(iface, &opts, filter.as_ref()).map_err(cap_err)?);
    }
    let mut threads = Vec::with_capacity(workers);
    let mut shared = Vec::with_capacity(workers);
    let tov = cfg.capture.block_timeout_ms;
    for (i, ring) in rings.into_iter().enumerate() {
        let pub_stats = Arc::new(Mutex::new(Stats::default()));
        shared.push(Arc::clone(&pub_stats));
        let pipe = Pipeline::new(cfg, Arc::clone(&node), i as u8);
        let sink = make_sink(i);
        let stop = Arc::clone(&stop);
        let name = iface.to_owned();
        let t = std::thread::Builder::new()
            .name(format!("sensor-cap-{i}"))
            .spawn(move || capture_loop(ring, pipe, sink, &stop, &pub_stats, &name, tov))
            .map_err(cap_err)?;
        threads.push(t);
    }
    Ok(LiveHandle { threads, shared, stop })
}

fn capture_loop(
    mut ring: Ring,
    mut pipe: Pipeline,
    mut sink: Box<dyn RecordSink + Send>,
    stop: &AtomicBool,
    pub_stats: &Mutex<Stats>,
    iface: &str,
    block_timeout_ms: u32,
) -> Result<Stats, SensorError> {
    let link = ring.link();
    let mut kernel_drops = 0u64;
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let seen = ring
            .poll_block(100, |p| pipe.packet(p.ts, link, p.data, sink.as_mut()))
            .map_err(|source| SensorError::Capture { iface: iface.to_owned(), source })?;
        if seen == 0 || last_tick.elapsed() >= Duration::from_secs(1) {
            sink.flush();
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            // Idle flows expire on the wall clock, which kernel packet times follow.
            pipe.tick(Timestamp::now(), sink.as_mut());
            kernel_drops += ring.kernel_drops();
            if let Ok(mut s) = pub_stats.lock() {
                *s = pipe.stats();
                s.kernel_drops = kernel_drops;
            }
        }
    }
    // Drain what the kernel already captured (a partly filled block is handed over after the
    // block timeout), then report open flows.
    let wait = i32::try_from(block_timeout_ms.saturating_mul(2)).unwrap_or(200);
    while ring.poll_block(wait, |p| pipe.packet(p.ts, link, p.data, sink.as_mut())).unwrap_or(0) > 0
    {
    }
    pipe.flush(Flush::Shutdown(Timestamp::now()), sink.as_mut());
    sink.flush();
    kernel_drops += ring.kernel_drops();
    let mut s = pipe.stats();
    s.kernel_drops = kernel_drops;
    if let Ok(mut p) = pub_stats.lock() {
        *p = s;
    }
    Ok(s)
}

/// Everything [`run`] needs besides the config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where packets come from.
    pub source: Source,
    /// Node name stamped on records.
    pub node: Arc<str>,
    /// Show a replay progress bar (on a terminal).
    pub progress: bool,
    /// Set to end a live capture (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// The config as plugins see it with `pass_config` ([`crate::LoadedConfig::plugin_view`]).
    pub plugin_config: serde_json::Value,
    /// Where a plugin's `print` goes (PokieStream plugins print to stdout).
    #[cfg(feature = "plugins")]
    pub plugin_output: apiary_script::Output,
}

impl RunOptions {
    /// Options for `source` with defaults: node `sensor`, no progress bar, a fresh stop flag.
    pub fn new(source: Source) -> Self {
        Self {
            source,
            node: Arc::from("sensor"),
            progress: false,
            stop: Arc::new(AtomicBool::new(false)),
            plugin_config: serde_json::Value::Object(serde_json::Map::new()),
            #[cfg(feature = "plugins")]
            plugin_output: apiary_script::Output::Stdout,
        }
    }
}

/// Runs the whole sensor: capture or replay, then the plugin (when `plugin.path` is set) or
/// the default output into `out`; logs stats every `stats_interval_secs` and at exit.
pub fn run(
    cfg: &SensorConfig,
    opts: RunOptions,
    out: Box<dyn std::io::Write + Send>,
) -> Result<Stats, SensorError> {
    cfg.check()?;
    #[cfg(feature = "plugins")]
    if let Some(path) = &cfg.plugin.path {
        return run_plugin(cfg, &opts, path);
    }
    #[cfg(not(feature = "plugins"))]
    if cfg.plugin.path.is_some() {
        return Err(SensorError::Plugin(
            "this build has no plugin support (feature `plugins`)".into(),
        ));
    }
    let size = cfg.effective_queue_size();
    let replaying = matches!(opts.source, Source::File(_));
    let (mut tx, rx) = if replaying { blocking_queue(size) } else { queue(size) };
    tx.set_details(Output::wants_details(&cfg.output));
    let drops = tx.drop_counter();
    let rdns: Box<dyn Rdns> = if cfg.output.rdns {
        Box::new(CachedRdns::new(
            cfg.output.rdns_cache,
            Duration::from_millis(cfg.output.rdns_wait_ms),
        ))
    } else {
        Box::new(NoRdns)
    };
    let mut output = Output::new(&cfg.output, rdns, out);
    let consumer = std::thread::Builder::new()
        .name("sensor-output".into())
        .spawn(move || -> io::Result<()> {
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(e) => {
                        output.write(&e)?;
                        // Write out in batches while records keep coming, at once when idle.
                        while let Ok(e) = rx.try_recv() {
                            output.write(&e)?;
                        }
                        output.flush()?;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return output.flush(),
                }
            }
        })
        .map_err(|source| SensorError::Io { context: "starting output thread".into(), source })?;
    let result = drive(cfg, &opts, Box::new(tx), &|| drops.load(Ordering::Relaxed));
    let written = consumer.join();
    let mut stats = result?;
    stats.queue_drops = drops.load(Ordering::Relaxed);
    match written {
        Ok(Ok(())) => {}
        Ok(Err(source)) => {
            return Err(SensorError::Io { context: "writing records".into(), source });
        }
        Err(_) => {
            return Err(SensorError::Io {
                context: "output thread".into(),
                source: io::Error::other("panicked"),
            });
        }
    }
    log_stats(&stats, "final");
    Ok(stats)
}

/// Replays or captures into `first` (and clones of it for more workers), logging stats.
fn drive(
    cfg: &SensorConfig,
    opts: &RunOptions,
    first: Box<dyn RecordSink + Send>,
    queue_drops: &dyn Fn() -> u64,
) -> Result<Stats, SensorError> {
    drive_with(cfg, opts, first, &mut |_| None, queue_drops)
}

fn drive_with(
    cfg: &SensorConfig,
    opts: &RunOptions,
    first: Box<dyn RecordSink + Send>,
    more: &mut dyn FnMut(usize) -> Option<Box<dyn RecordSink + Send>>,
    queue_drops: &dyn Fn() -> u64,
) -> Result<Stats, SensorError> {
    match &opts.source {
        Source::File(path) => {
            let mut sink = first;
            let ro = ReplayOptions { node: Arc::clone(&opts.node), progress: opts.progress };
            replay_file(cfg, path, sink.as_mut(), &ro)
        }
        Source::Interface(iface) => {
            let mut first = Some(first);
            let handle =
                live(cfg, iface, Arc::clone(&opts.node), Arc::clone(&opts.stop), |i| match first
                    .take()
                {
                    Some(s) => s,
                    None => more(i).unwrap_or_else(|| Box::new(Vec::new())),
                })?;
            let every = Duration::from_secs(cfg.stats_interval_secs);
            let mut last = Instant::now();
            while !handle.is_finished() {
                std::thread::sleep(Duration::from_millis(200));
                if cfg.stats_interval_secs > 0 && last.elapsed() >= every {
                    last = Instant::now();
                    let mut s = handle.stats();
                    s.queue_drops = queue_drops();
                    log_stats(&s, "periodic");
                }
                if opts.stop.load(Ordering::Relaxed) {
                    handle.stop();
                }
            }
            handle.join()
        }
    }
}

fn log_stats(s: &Stats, when: &'static str) {
    tracing::info!(
        when,
        packets = s.packets,
        kernel_drops = s.kernel_drops,
        queue_drops = s.queue_drops,
        records = s.records,
        flows_open = s.flows_open,
        truncated = s.truncated,
        malformed = s.malformed,
        evicted = s.track.flows_evicted,
        "sensor stats"
    );
}

#[cfg(feature = "plugins")]
fn run_plugin(cfg: &SensorConfig, opts: &RunOptions, path: &Path) -> Result<Stats, SensorError> {
    use apiary_script::{PacketHost, PacketOptions};
    let popts = PacketOptions {
        pass_config: cfg.plugin.pass_config,
        config: opts.plugin_config.clone(),
        queue_size: cfg.effective_queue_size(),
        batch_size: cfg.plugin.bulk_size.unwrap_or(1024).max(1),
        output: opts.plugin_output.clone(),
        ..PacketOptions::default()
    };
    let host =
        Arc::new(PacketHost::start(path, popts).map_err(|e| SensorError::Plugin(e.to_string()))?);
    tracing::info!(plugin = %path.display(), bulk = host.is_bulk(), "plugin loaded");
    let pace = matches!(opts.source, Source::File(_));
    let make = |host: &Arc<PacketHost>| -> Option<Box<dyn RecordSink + Send>> {
        let tx = host.sender()?;
        Some(Box::new(PluginSink {
            tx,
            host: Arc::clone(host),
            pace,
            capacity: cfg.effective_queue_size() as u64,
        }))
    };
    let first =
        make(&host).ok_or_else(|| SensorError::Plugin("plugin host already stopped".into()))?;
    let h2 = Arc::clone(&host);
    let result = drive_with(cfg, opts, first, &mut |_| make(&h2), &|| h2.stats().dropped);
    // Every sender is gone once capture has ended; drop the last extra handle so finish()
    // can drain the queue and report final counters.
    drop(h2);
    let plugin_stats = match Arc::try_unwrap(host) {
        Ok(h) => h.finish(),
        Err(h) => h.stats(),
    };
    let mut stats = result?;
    stats.queue_drops = plugin_stats.dropped;
    tracing::info!(
        delivered = plugin_stats.delivered,
        failed = plugin_stats.failed,
        lost = plugin_stats.lost,
        "plugin stats"
    );
    log_stats(&stats, "final");
    Ok(stats)
}

/// Hands records to a packet plugin as PokieStream `packet_log` records.
#[cfg(feature = "plugins")]
struct PluginSink {
    tx: apiary_script::PacketSender,
    host: Arc<apiary_script::PacketHost>,
    /// Replays wait for the plugin instead of overrunning its queue.
    pace: bool,
    capacity: u64,
}

#[cfg(feature = "plugins")]
impl RecordSink for PluginSink {
    fn record(&mut self, event: apiary_event::Event) {
        if let Some(rec) = apiary_event::encode::packet_log::PacketLog::from_event(&event) {
            self.tx.push(rec);
        }
        if self.pace {
            loop {
                let s = self.host.stats();
                let in_flight =
                    s.submitted.saturating_sub(s.delivered + s.failed + s.dropped + s.lost);
                if in_flight < self.capacity / 2 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn flush(&mut self) {
        self.tx.flush();
    }

    /// Plugins see PokieStream's ten keys only.
    fn wants_details(&self) -> bool {
        false
    }
}
