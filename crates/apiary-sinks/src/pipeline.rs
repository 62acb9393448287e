//! The pipeline: an [`Emitter`] fans each event out to one bounded queue per sink; one task per
//! sink batches, delivers, retries, and moves its backlog to the sink's spool.
//!
//! Architecture Invariant: `Emitter::emit` never blocks and never awaits. A full queue drops the
//! event for that sink only, counts it, and the drop is reported.
//!
//! Each sink task runs in one of two modes:
//! - direct: the spool is empty; batches go from the queue to the sink. If a send is slow
//!   (longer than `slow_after`) or the queue passes half full while it runs, the batch in
//!   flight is written to the spool first and everything arriving after it follows it there,
//!   so order is kept whatever the send's outcome.
//! - spooled: the spool has a backlog; new events are appended to it and the sink is fed from
//!   its head, oldest first, with jittered exponential backoff between failed attempts.
//!
//! The queue therefore only fills if the disk itself cannot keep up.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ratelimit::RateLimiter;
use crate::spool::{Spool, SpoolConfig};
use crate::stats::SinkStats;
use crate::{BatchConfig, Filter, Sink, SinkError};

/// A sink ready to be started, with its queue, spool and filter settings.
pub struct SinkSpec {
    /// Name shown in reports (`file`, `syslog`, ...).
    pub name: String,
    /// The sink.
    pub sink: Box<dyn Sink>,
    /// What it accepts.
    pub filter: Filter,
    /// Batching and queue sizes.
    pub batch: BatchConfig,
    /// Where the backlog waits.
    pub spool: SpoolConfig,
    /// Most events per second handed to the sink (`None`: unlimited).
    pub rate_limit: Option<f64>,
}

struct Lane {
    name: String,
    tx: mpsc::Sender<Arc<Event>>,
    filter: Filter,
    stats: Arc<SinkStats>,
}

/// The producers' handle: cheap to clone, safe to call from any task or thread.
#[derive(Clone)]
pub struct Emitter {
    lanes: Arc<[Lane]>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter").field("sinks", &self.lanes.len()).finish()
    }
}

impl Emitter {
    /// Hands `event` to every sink that accepts it. Never blocks.
    pub fn emit(&self, event: Event) {
        let event = Arc::new(event);
        for lane in self.lanes.iter() {
            if !lane.filter.accepts(&event) {
                SinkStats::add(&lane.stats.filtered, 1);
                continue;
            }
            match lane.tx.try_send(Arc::clone(&event)) {
                Ok(()) => SinkStats::add(&lane.stats.queued, 1),
                Err(_) => SinkStats::add(&lane.stats.dropped, 1),
            }
        }
    }

    /// An emitter that delivers nowhere (tools and tests that only need the producer side).
    pub fn discard() -> Self {
        Self { lanes: Arc::from(Vec::new()) }
    }
}

/// Running sinks. Shut down with [`Pipeline::shutdown`] after producers have stopped, so the
/// last events (session closes) are delivered, or kept in the disk spool for the next start.
pub struct Pipeline {
    emitter: Emitter,
    tasks: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
}

impl Pipeline {
    /// Starts one task per sink on the current tokio runtime.
    ///
    /// A spool that cannot be opened (unwritable directory) falls back to memory, logged as
    /// an error, so one broken sink never stops the others.
    pub fn start(specs: Vec<SinkSpec>) -> Self {
        let cancel = CancellationToken::new();
        let mut lanes = Vec::with_capacity(specs.len());
        let mut tasks = Vec::with_capacity(specs.len());
        for spec in specs {
            let (tx, rx) = mpsc::channel(spec.batch.queue.max(2));
            let stats = Arc::new(SinkStats::default());
            let spool = Spool::open(&spec.spool).unwrap_or_else(|e| {
                tracing::error!(sink = %spec.name, error = %e, "cannot open the disk spool, keeping the backlog in memory");
                Spool::open(&SpoolConfig { dir: None, ..spec.spool.clone() })
                    .unwrap_or_else(|_| unreachable_memory_spool())
            });
            SinkStats::set(&stats.pending, spool.len());
            if !spool.is_empty() {
                tracing::info!(sink = %spec.name, events = spool.len(), "replaying the spool from the last run");
            }
            let lane = LaneTask {
                name: spec.name.clone(),
                sink: spec.sink,
                rx,
                rx_open: true,
                cfg: spec.batch,
                stats: Arc::clone(&stats),
                spool,
                limiter: spec.rate_limit.map(RateLimiter::new),
                cancel: cancel.clone(),
                backoff: Duration::ZERO,
                retry_at: None,
                reported_drops: 0,
            };
            tasks.push(tokio::spawn(lane.run()));
            lanes.push(Lane { name: spec.name, tx, filter: spec.filter, stats });
        }
        Self { emitter: Emitter { lanes: lanes.into() }, tasks, cancel }
    }

    /// The producers' handle.
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// Counters per sink, in configuration order.
    pub fn stats(&self) -> Vec<(String, crate::StatsSnapshot)> {
        self.emitter.lanes.iter().map(|l| (l.name.clone(), l.stats.snapshot())).collect()
    }

    /// Delivers what is queued, flushes every sink and stops. Waits at most `grace` for sinks
    /// that cannot deliver; with a disk spool their backlog stays on disk for the next start
    /// (`pending`), without one it is counted as dropped.
    pub async fn shutdown(self, grace: Duration) -> Vec<(String, crate::StatsSnapshot)> {
        self.cancel.cancel();
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        for task in self.tasks {
            tokio::select! {
                _ = task => {}
                () = &mut deadline => break,
            }
        }
        self.emitter.lanes.iter().map(|l| (l.name.clone(), l.stats.snapshot())).collect()
    }
}

/// A memory spool cannot fail to open; this keeps `start` free of panics if that ever changes.
fn unreachable_memory_spool() -> Spool {
    Spool::Memory(crate::spool::MemorySpool::new(65_536))
}

struct LaneTask {
    name: String,
    sink: Box<dyn Sink>,
    rx: mpsc::Receiver<Arc<Event>>,
    rx_open: bool,
    cfg: BatchConfig,
    stats: Arc<SinkStats>,
    spool: Spool,
    limiter: Option<RateLimiter>,
    cancel: CancellationToken,
    backoff: Duration,
    retry_at: Option<Instant>,
    reported_drops: u64,
}

/// How often a running send checks whether it has become slow.
const CHECK_EVERY: Duration = Duration::from_millis(20);
/// Attempts per spooled batch once shutdown has begun.
const TRIES_AT_SHUTDOWN: u32 = 2;
/// While a sink is down, arrivals gather this long in its queue and go to the spool in one
/// write, instead of one wake-up and one write per event on the listeners' cores.
const SPILL_EVERY: Duration = Duration::from_millis(20);
/// Gathering needs room: a queue smaller than this is drained as events arrive.
const GATHER_MIN_QUEUE: usize = 4096;

impl LaneTask {
    async fn run(mut self) {
        let max = self.cfg.max_events.max(1);
        let mut buf: Vec<Arc<Event>> = Vec::with_capacity(max);
        let mut tries_at_shutdown = 0;
        let tick_every = self.sink.tick_interval();
        let mut next_tick = tick_every.map(|d| Instant::now() + d);
        loop {
            self.report_drops();
            if self.cancel.is_cancelled() && self.rx_open {
                // Producers are stopped: everything still queued goes behind the backlog.
                self.rx.close();
                self.rx_open = false;
                while let Ok(ev) = self.rx.try_recv() {
                    buf.push(ev);
                }
                let batch = std::mem::take(&mut buf);
                for chunk in batch.chunks(max) {
                    // Direct while nothing waits; behind the backlog once anything does.
                    if self.spool.is_empty() {
                        self.attempt(chunk, false).await;
                    } else {
                        self.spill(chunk);
                    }
                }
            }
            if let (Some(every), Some(at)) = (tick_every, next_tick)
                && Instant::now() >= at
            {
                if let Err(e) = self.sink.tick().await {
                    tracing::warn!(sink = %self.name, error = %e, "periodic sink work failed");
                }
                next_tick = Some(Instant::now() + every);
            }
            if self.spool.is_empty() {
                if !self.rx_open {
                    break;
                }
                // Direct mode: wait for events (or a tick, or shutdown).
                let n = tokio::select! {
                    biased;
                    n = self.rx.recv_many(&mut buf, max) => n,
                    () = self.cancel.cancelled() => continue,
                    () = sleep_until_opt(next_tick) => continue,
                };
                if n == 0 {
                    self.rx_open = false;
                    continue;
                }
                if buf.len() < max && !self.cfg.linger.is_zero() {
                    let room = max - buf.len();
                    let _ =
                        tokio::time::timeout(self.cfg.linger, self.rx.recv_many(&mut buf, room))
                            .await;
                }
                let batch = std::mem::take(&mut buf);
                self.attempt(&batch, false).await;
                buf = batch;
                buf.clear();
            } else {
                // Spooled mode: wait out the backoff while spilling arrivals, then send the head.
                if let Some(at) = self.retry_at
                    && !self.cancel.is_cancelled()
                {
                    self.wait_spilling(at, next_tick).await;
                    if Instant::now() < at {
                        continue;
                    }
                }
                if self.cancel.is_cancelled() {
                    tries_at_shutdown += 1;
                    if tries_at_shutdown > TRIES_AT_SHUTDOWN {
                        break;
                    }
                }
                let peeked = match self.spool.peek(max) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(sink = %self.name, error = %e, "cannot read the spool");
                        self.fail_later();
                        continue;
                    }
                };
                if peeked.undecodable > 0 {
                    SinkStats::add(&self.stats.dropped, peeked.undecodable);
                    tracing::error!(sink = %self.name, events = peeked.undecodable, "unreadable spool records skipped");
                }
                if self.attempt(&peeked.events, true).await {
                    if let Err(e) = self.spool.ack() {
                        tracing::error!(sink = %self.name, error = %e, "cannot advance the spool cursor; events may be sent again");
                    }
                    tries_at_shutdown = 0;
                }
                SinkStats::set(&self.stats.pending, self.spool.len());
            }
        }
        self.finish().await;
    }

    async fn finish(&mut self) {
        if let Err(e) = self.sink.flush().await {
            tracing::error!(sink = %self.name, error = %e, "flush failed at shutdown");
        }
        let left = self.spool.len();
        if let Err(e) = self.spool.sync(true) {
            tracing::error!(sink = %self.name, error = %e, "cannot sync the spool at shutdown");
        }
        if left > 0 {
            if self.spool.is_durable() {
                tracing::warn!(sink = %self.name, events = left, "sink still down at shutdown; backlog kept in the spool for the next start");
            } else {
                SinkStats::add(&self.stats.dropped, left);
                tracing::error!(sink = %self.name, events = left, "sink still down at shutdown and it has no disk spool: events dropped");
            }
        }
        SinkStats::set(&self.stats.pending, left);
        self.report_drops();
    }

    fn report_drops(&mut self) {
        let dropped = self.stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
        if dropped > self.reported_drops {
            tracing::error!(sink = %self.name, dropped = dropped - self.reported_drops, total = dropped, "events dropped");
            self.reported_drops = dropped;
        }
    }

    /// Appends to the spool, counting what it had to throw away.
    fn spill(&mut self, events: &[Arc<Event>]) {
        if events.is_empty() {
            return;
        }
        match self.spool.append(events) {
            Ok(a) => {
                SinkStats::add(&self.stats.spooled, events.len() as u64);
                if a.dropped > 0 {
                    SinkStats::add(&self.stats.dropped, a.dropped);
                    tracing::error!(sink = %self.name, dropped = a.dropped, "spool full: oldest events dropped");
                }
            }
            Err(e) => {
                SinkStats::add(&self.stats.dropped, events.len() as u64);
                tracing::error!(sink = %self.name, error = %e, events = events.len(), "cannot write the spool: events dropped");
            }
        }
        SinkStats::set(&self.stats.pending, self.spool.len());
    }

    fn fail_later(&mut self) {
        self.backoff = if self.backoff.is_zero() {
            Duration::from_millis(100)
        } else {
            (self.backoff * 2).min(self.cfg.max_backoff)
        };
        let jitter = rand::random_range(0.5..1.5);
        self.retry_at = Some(Instant::now() + self.backoff.mul_f64(jitter));
    }

    /// Sleeps until `at`, moving arrivals to the spool; returns early on shutdown or a tick.
    async fn wait_spilling(&mut self, at: Instant, next_tick: Option<Instant>) {
        let max = self.cfg.max_events.max(1);
        let mut buf = Vec::new();
        if self.cfg.queue >= GATHER_MIN_QUEUE {
            // Even at millions of events a second the queue holds SPILL_EVERY's worth.
            while self.rx_open {
                let wake = (Instant::now() + SPILL_EVERY).min(at);
                let wake = next_tick.map_or(wake, |t| wake.min(t));
                tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => return,
                    () = tokio::time::sleep_until(wake) => {}
                }
                loop {
                    match self.rx.try_recv() {
                        Ok(ev) => buf.push(ev),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            self.rx_open = false;
                            break;
                        }
                    }
                }
                let batch = std::mem::take(&mut buf);
                self.spill(&batch);
                buf = batch;
                buf.clear();
                if wake == at || Some(wake) == next_tick {
                    return;
                }
            }
        }
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                n = self.rx.recv_many(&mut buf, max), if self.rx_open => {
                    if n == 0 {
                        self.rx_open = false;
                    }
                    let batch = std::mem::take(&mut buf);
                    self.spill(&batch);
                }
                () = tokio::time::sleep_until(at) => return,
                () = sleep_until_opt(next_tick) => return,
            }
        }
    }

    /// One delivery attempt of `batch` (rate-limited, bounded by `send_timeout`). While it
    /// runs, a slow send or a filling queue moves arrivals to the spool; if the batch did not
    /// come from the spool it is written there first so order holds. Returns whether the sink
    /// confirmed the batch; on failure the batch is in the spool and a retry is scheduled.
    async fn attempt(&mut self, batch: &[Arc<Event>], from_spool: bool) -> bool {
        if batch.is_empty() {
            return true;
        }
        let mut in_spool = from_spool;
        let mut spilling = from_spool;
        let max = self.cfg.max_events.max(1);
        let high_water = self.cfg.queue / 2;
        let wait = self.limiter.as_mut().map_or(Duration::ZERO, |l| l.reserve(batch.len()));
        let started = Instant::now();
        let send_timeout = self.cfg.send_timeout;
        let mut spilled = Vec::new();
        let result = {
            let sink = &mut self.sink;
            let send = async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                match tokio::time::timeout(send_timeout, sink.send(batch)).await {
                    Ok(r) => r,
                    Err(_) => Err(SinkError::Timeout(send_timeout)),
                }
            };
            tokio::pin!(send);
            loop {
                tokio::select! {
                    biased;
                    r = &mut send => break r,
                    n = self.rx.recv_many(&mut spilled, max), if spilling && self.rx_open => {
                        if n == 0 {
                            self.rx_open = false;
                        }
                        if !in_spool {
                            spill_into(&mut self.spool, &self.stats, &self.name, batch);
                            in_spool = true;
                        }
                        spill_into(&mut self.spool, &self.stats, &self.name, &spilled);
                        spilled.clear();
                    }
                    () = tokio::time::sleep(CHECK_EVERY), if !spilling => {
                        if self.rx.len() >= high_water
                            || started.elapsed() >= self.cfg.slow_after
                            || self.cancel.is_cancelled()
                        {
                            spilling = true;
                        }
                    }
                }
            }
        };
        let refused = matches!(result, Err(SinkError::Refused(_)));
        if let Err(SinkError::Refused(why)) = &result {
            // Sending the same bytes again cannot succeed: count the loss and move on, so one
            // poisonous batch never blocks the sink.
            SinkStats::add(&self.stats.dropped, batch.len() as u64);
            tracing::error!(sink = %self.name, error = %why, events = batch.len(), "target refused the batch for good: events dropped");
        }
        match result {
            Ok(()) | Err(SinkError::Refused(_)) => {
                if !refused {
                    SinkStats::add(&self.stats.delivered, batch.len() as u64);
                }
                self.backoff = Duration::ZERO;
                self.retry_at = None;
                if in_spool && !from_spool {
                    // The batch was promoted to the spool's head while it was in flight.
                    if let Err(e) = self.spool.peek(batch.len()).and_then(|_| self.spool.ack()) {
                        tracing::error!(sink = %self.name, error = %e, "cannot advance the spool cursor; events may be sent again");
                    }
                    SinkStats::set(&self.stats.pending, self.spool.len());
                }
                true
            }
            Err(e) => {
                SinkStats::add(&self.stats.failures, 1);
                SinkStats::add(&self.stats.retried, 1);
                tracing::warn!(sink = %self.name, error = %e, events = batch.len(), "delivery failed, will retry");
                if !in_spool {
                    self.spill(batch);
                }
                self.fail_later();
                false
            }
        }
    }
}

fn spill_into(spool: &mut Spool, stats: &SinkStats, name: &str, events: &[Arc<Event>]) {
    if events.is_empty() {
        return;
    }
    match spool.append(events) {
        Ok(a) => {
            SinkStats::add(&stats.spooled, events.len() as u64);
            if a.dropped > 0 {
                SinkStats::add(&stats.dropped, a.dropped);
                tracing::error!(sink = %name, dropped = a.dropped, "spool full: oldest events dropped");
            }
        }
        Err(e) => {
            SinkStats::add(&stats.dropped, events.len() as u64);
            tracing::error!(sink = %name, error = %e, events = events.len(), "cannot write the spool: events dropped");
        }
    }
    SinkStats::set(&stats.pending, spool.len());
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use apiary_event::Kind;

    use super::*;
    use crate::SinkError;

    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<Arc<Event>>>>, Arc<Mutex<u32>>);

    #[async_trait::async_trait]
    impl Sink for Memory {
        async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
            {
                let mut fails = self.1.lock().unwrap();
                if *fails > 0 {
                    *fails -= 1;
                    return Err(SinkError::Rejected("down".into()));
                }
            }
            self.0.lock().unwrap().extend(batch.iter().cloned());
            Ok(())
        }
    }

    fn spec(name: &str, sink: Memory, queue: usize) -> SinkSpec {
        SinkSpec {
            name: name.into(),
            sink: Box::new(sink),
            filter: Filter::default(),
            batch: BatchConfig { queue, max_events: 10, ..BatchConfig::default() },
            spool: SpoolConfig::default(),
            rate_limit: None,
        }
    }

    fn ports(m: &Memory) -> Vec<u16> {
        m.0.lock().unwrap().iter().map(|e| e.src_port.unwrap()).collect()
    }

    #[tokio::test]
    async fn every_event_reaches_every_sink_in_order_and_retries() {
        let (a, b) = (Memory::default(), Memory::default());
        *b.1.lock().unwrap() = 2;
        let p = Pipeline::start(vec![spec("a", a.clone(), 1000), spec("b", b.clone(), 1000)]);
        let em = p.emitter();
        for i in 0..100 {
            let mut e = Event::new(Kind::SESSION_RX, Arc::from("n"));
            e.src_port = Some(i);
            em.emit(e);
        }
        let stats = p.shutdown(Duration::from_secs(10)).await;
        for sink in [&a, &b] {
            assert_eq!(ports(sink), (0..100).collect::<Vec<_>>());
        }
        assert_eq!(stats[1].1.delivered, 100);
        assert_eq!(stats[1].1.retried, 2);
        assert!(stats[1].1.spooled > 0);
        assert_eq!(stats[0].1.dropped, 0);
        assert_eq!(stats[1].1.pending, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_sink_spools_instead_of_filling_its_queue() {
        let dead = Memory::default();
        *dead.1.lock().unwrap() = u32::MAX;
        let live = Memory::default();
        let p = Pipeline::start(vec![spec("dead", dead, 5), spec("live", live.clone(), 1000)]);
        let em = p.emitter();
        for _ in 0..100 {
            em.emit(Event::new(Kind::SESSION_OPEN, Arc::from("n")));
            tokio::task::yield_now().await;
        }
        let stats = p.shutdown(Duration::from_secs(120)).await;
        let dead = stats[0].1;
        // Nothing is lost at the queue: the dead sink's backlog went to its (memory) spool,
        // and is counted as dropped only at shutdown because memory does not survive it.
        assert_eq!(dead.delivered, 0);
        assert_eq!(dead.dropped, 100, "{dead:?}");
        assert_eq!(dead.spooled, 100, "{dead:?}");
        assert_eq!(stats[1].1.delivered, 100);
        assert_eq!(live.0.lock().unwrap().len(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_down_sink_with_a_large_queue_gathers_arrivals_and_replays_them_in_order() {
        let mem = Memory::default();
        *mem.1.lock().unwrap() = 4;
        let p = Pipeline::start(vec![spec("recovers", mem.clone(), 65_536)]);
        let em = p.emitter();
        for i in 0..5000 {
            let mut e = Event::new(Kind::SESSION_RX, Arc::from("n"));
            e.src_port = Some(i);
            em.emit(e);
            if i % 50 == 0 {
                // Arrivals spread over about two seconds: several gathering rounds and retries.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let stats = p.shutdown(Duration::from_secs(3600)).await;
        assert_eq!(stats[0].1.dropped, 0, "{:?}", stats[0].1);
        assert_eq!(stats[0].1.retried, 4);
        assert!(stats[0].1.spooled > 1000, "{:?}", stats[0].1);
        assert_eq!(ports(&mem), (0..5000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn disk_spool_keeps_a_down_sinks_backlog_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let down = Memory::default();
        *down.1.lock().unwrap() = u32::MAX;
        let mut s = spec("pg", down, 1000);
        s.spool.dir = Some(dir.path().to_path_buf());
        let p = Pipeline::start(vec![s]);
        let em = p.emitter();
        for i in 0..50 {
            let mut e = Event::new(Kind::SESSION_RX, Arc::from("n"));
            e.src_port = Some(i);
            em.emit(e);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = p.shutdown(Duration::from_secs(5)).await;
        assert_eq!(stats[0].1.pending, 50, "{:?}", stats[0].1);
        assert_eq!(stats[0].1.dropped, 0);

        let up = Memory::default();
        let mut s = spec("pg", up.clone(), 1000);
        s.spool.dir = Some(dir.path().to_path_buf());
        let p = Pipeline::start(vec![s]);
        let em = p.emitter();
        for i in 50..60 {
            let mut e = Event::new(Kind::SESSION_RX, Arc::from("n"));
            e.src_port = Some(i);
            em.emit(e);
        }
        let stats = p.shutdown(Duration::from_secs(10)).await;
        assert_eq!(ports(&up), (0..60).collect::<Vec<_>>());
        assert_eq!(stats[0].1.pending, 0);
    }

    /// A sink that takes its time, to exercise the slow path.
    struct Slow(Memory, Duration);

    #[async_trait::async_trait]
    impl Sink for Slow {
        async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
            tokio::time::sleep(self.1).await;
            self.0.send(batch).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_sink_spills_to_the_spool_and_keeps_order() {
        let mem = Memory::default();
        let p = Pipeline::start(vec![SinkSpec {
            name: "slow".into(),
            sink: Box::new(Slow(mem.clone(), Duration::from_secs(2))),
            filter: Filter::default(),
            batch: BatchConfig {
                queue: 8,
                max_events: 4,
                slow_after: Duration::from_millis(100),
                ..BatchConfig::default()
            },
            spool: SpoolConfig::default(),
            rate_limit: None,
        }]);
        let em = p.emitter();
        for i in 0..200 {
            let mut e = Event::new(Kind::SESSION_RX, Arc::from("n"));
            e.src_port = Some(i);
            em.emit(e);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let stats = p.shutdown(Duration::from_secs(3600)).await;
        assert_eq!(stats[0].1.dropped, 0, "{:?}", stats[0].1);
        assert!(stats[0].1.spooled > 0);
        assert_eq!(ports(&mem), (0..200).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_paces_delivery_without_loss() {
        let mem = Memory::default();
        let mut s = spec("slowed", mem.clone(), 1000);
        s.rate_limit = Some(10.0);
        let p = Pipeline::start(vec![s]);
        let em = p.emitter();
        let start = Instant::now();
        for i in 0..50 {
            let mut e = Event::new(Kind::SESSION_RX, Arc::from("n"));
            e.src_port = Some(i);
            em.emit(e);
        }
        let stats = p.shutdown(Duration::from_secs(3600)).await;
        assert_eq!(stats[0].1.delivered, 50);
        assert_eq!(ports(&mem), (0..50).collect::<Vec<_>>());
        // Virtual time: 50 events at 10/s with a burst of 10 take at least 4 s.
        assert!(start.elapsed() >= Duration::from_secs(4), "{:?}", start.elapsed());
    }
}
