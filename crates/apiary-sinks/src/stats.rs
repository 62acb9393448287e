//! Per-sink delivery counters, shared between the emitter, the sink task and reporters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one sink. Updated with relaxed atomics: they are reports, not locks.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub(crate) queued: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) spooled: AtomicU64,
    pub(crate) pending: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) filtered: AtomicU64,
    pub(crate) failures: AtomicU64,
}

/// A copy of a sink's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events accepted into the sink's queue.
    pub queued: u64,
    /// Events the sink confirmed.
    pub delivered: u64,
    /// Batch deliveries that failed and were tried again.
    pub retried: u64,
    /// Events written to the spool (the sink was down or slow).
    pub spooled: u64,
    /// Events waiting in the spool now (a gauge).
    pub pending: u64,
    /// Events lost: queue full, spool full (oldest dropped), unreadable spool records, or a
    /// memory-only backlog at shutdown. Always reported in the log.
    pub dropped: u64,
    /// Events the sink's filter kept out (not a loss).
    pub filtered: u64,
    /// Failed delivery attempts.
    pub failures: u64,
}

impl SinkStats {
    /// Reads the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            queued: self.queued.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            retried: self.retried.load(Relaxed),
            spooled: self.spooled.load(Relaxed),
            pending: self.pending.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            filtered: self.filtered.load(Relaxed),
            failures: self.failures.load(Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, n: u64) {
        gauge.store(n, Relaxed);
    }
}
