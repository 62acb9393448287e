//! Entry points: replay a capture file, capture live, or run the whole sensor (capture,
//! bounded queue, output or custom consumer, periodic stats).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::capture::pcap::{PcapError, PcapReader};
use crate::config::{ConfigError, SensorConfig};
use crate::decode::LinkType;
use crate::pipeline::{Pipeline, Stats};
use crate::record::RecordSink;
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
        match link {
            Some(link) => pipe.packet(pkt.ts, link, pkt.data, sink),
            None => pipe.unknown_link(),
        }
        n += 1;
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
