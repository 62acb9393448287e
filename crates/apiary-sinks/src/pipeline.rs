//! The pipeline: an [`Emitter`] fans each event out to one bounded queue per sink; one task per
//! sink batches, delivers and retries.
//!
//! Architecture Invariant: `Emitter::emit` never blocks and never awaits. A full queue drops the
//! event for that sink only, counts it, and the drop is reported. The on-disk spool (issue 2)
//! plugs in where `drop_full` is called.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::stats::SinkStats;
use crate::{BatchConfig, Filter, Sink};

/// A sink ready to be started, with its queue and filter settings.
pub struct SinkSpec {
    /// Name shown in reports (`file`, `syslog`, ...).
    pub name: String,
    /// The sink.
    pub sink: Box<dyn Sink>,
    /// What it accepts.
    pub filter: Filter,
    /// Batching and queue sizes.
    pub batch: BatchConfig,
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

impl apiary_event::Emit for Emitter {
    fn emit(&self, event: Event) {
        Emitter::emit(self, event);
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
/// last events (session closes) are delivered and flushed.
pub struct Pipeline {
    emitter: Emitter,
    tasks: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
}

impl Pipeline {
    /// Starts one task per sink on the current tokio runtime.
    pub fn start(specs: Vec<SinkSpec>) -> Self {
        let cancel = CancellationToken::new();
        let mut lanes = Vec::with_capacity(specs.len());
        let mut tasks = Vec::with_capacity(specs.len());
        for spec in specs {
            let (tx, rx) = mpsc::channel(spec.batch.queue.max(1));
            let stats = Arc::new(SinkStats::default());
            tasks.push(tokio::spawn(run_sink(
                spec.name.clone(),
                spec.sink,
                rx,
                spec.batch,
                Arc::clone(&stats),
                cancel.clone(),
            )));
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

    /// Delivers what is queued, flushes every sink and stops. Waits at most `grace` for a sink
    /// that cannot deliver; what it still held is counted as dropped.
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

async fn run_sink(
    name: String,
    mut sink: Box<dyn Sink>,
    mut rx: mpsc::Receiver<Arc<Event>>,
    batch_cfg: BatchConfig,
    stats: Arc<SinkStats>,
    cancel: CancellationToken,
) {
    let max = batch_cfg.max_events.max(1);
    let mut batch: Vec<Arc<Event>> = Vec::with_capacity(max);
    let mut reported_drops = 0u64;
    loop {
        let stopping = tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, max) => n == 0,
            () = cancel.cancelled() => true,
        };
        if stopping {
            // Producers are stopped: take what is left, deliver it, then leave.
            rx.close();
            while let Ok(ev) = rx.try_recv() {
                batch.push(ev);
            }
        } else if batch.len() < max && !batch_cfg.linger.is_zero() {
            // Wait briefly for more so slow trickles still make efficient batches.
            let room = max - batch.len();
            let _ = tokio::time::timeout(batch_cfg.linger, rx.recv_many(&mut batch, room)).await;
        }
        for chunk in batch.chunks(max) {
            deliver(&name, sink.as_mut(), chunk, &stats, &cancel).await;
        }
        batch.clear();
        let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
        if dropped > reported_drops {
            tracing::warn!(sink = %name, dropped = dropped - reported_drops, "queue full, events dropped");
            reported_drops = dropped;
        }
        if stopping {
            if let Err(e) = sink.flush().await {
                tracing::error!(sink = %name, error = %e, "flush failed at shutdown");
            }
            return;
        }
    }
}

/// Delivers one batch, retrying with jittered exponential backoff. Once shutdown has begun a
/// sink that keeps failing gets a few more tries, then its batch is counted as dropped.
async fn deliver(
    name: &str,
    sink: &mut dyn Sink,
    batch: &[Arc<Event>],
    stats: &SinkStats,
    cancel: &CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    let mut tries_after_cancel = 0;
    loop {
        match sink.send(batch).await {
            Ok(()) => {
                SinkStats::add(&stats.delivered, batch.len() as u64);
                return;
            }
            Err(e) => {
                SinkStats::add(&stats.failures, 1);
                tracing::warn!(sink = %name, error = %e, events = batch.len(), "delivery failed, retrying");
                if cancel.is_cancelled() {
                    tries_after_cancel += 1;
                    if tries_after_cancel > 3 {
                        SinkStats::add(&stats.dropped, batch.len() as u64);
                        tracing::error!(sink = %name, events = batch.len(), "giving up at shutdown, events dropped");
                        return;
                    }
                }
                SinkStats::add(&stats.retried, 1);
                let jitter = rand::random_range(0.5..1.5);
                tokio::time::sleep(delay.mul_f64(jitter)).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
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
            let mut fails = self.1.lock().unwrap();
            if *fails > 0 {
                *fails -= 1;
                return Err(SinkError::Rejected("down".into()));
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
            batch: BatchConfig { queue, max_events: 10, linger: Duration::ZERO },
        }
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
            let got: Vec<_> = sink.0.lock().unwrap().iter().map(|e| e.src_port.unwrap()).collect();
            assert_eq!(got, (0..100).collect::<Vec<_>>());
        }
        assert_eq!(stats[1].1.delivered, 100);
        assert_eq!(stats[1].1.retried, 2);
        assert_eq!(stats[0].1.dropped, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_and_counts_without_blocking() {
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
        // Every event the dead sink never delivered is counted as dropped exactly once: at the
        // full queue, or when the sink gave up at shutdown.
        assert_eq!(dead.delivered, 0);
        assert_eq!(dead.dropped, 100, "{dead:?}");
        assert!(dead.queued <= 10, "{dead:?}");
        assert_eq!(stats[1].1.delivered, 100);
        assert_eq!(live.0.lock().unwrap().len(), 100);
    }
}
