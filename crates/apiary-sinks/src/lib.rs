//! apiary's loggers: a pipeline that takes every [`Event`](apiary_event::Event) from producers
//! and delivers it to each configured sink without ever slowing a producer.
//!
//! Producers hold an [`Emitter`]; each sink gets its own bounded queue, task and spool, so a
//! slow or dead sink only fills its own spool. Drops are counted per sink and reported.
//! Sinks live in `sinks/<name>/` with the same file roles (`config`, `sink`, tests).

pub mod alert;
mod check;
mod config;
mod emit;
mod filter;
mod format;
mod net;
mod pipeline;
mod ratelimit;
pub mod sinks;
mod spool;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;

pub use check::{SinkTestResult, test_sinks, validate};
pub use config::{BatchConfig, SinkConfig, SinkKind};
pub use filter::Filter;
pub use format::{Encoder, Format};
pub use pipeline::{Emitter, Pipeline, SinkSpec};
pub use spool::SpoolConfig;
pub use stats::{SinkStats, StatsSnapshot};

/// Why a sink could not deliver or could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// I/O failure talking to the target (retryable).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The target refused the data (retryable unless the sink says otherwise).
    #[error("target rejected the batch: {0}")]
    Rejected(String),
    /// The sink's configuration is unusable.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The target refused this batch for good (malformed for it: HTTP 400/413/422, SMTP 5xx);
    /// retrying the same bytes cannot help, so the pipeline drops the batch and counts it.
    #[error("target refused the batch permanently: {0}")]
    Refused(String),
    /// The target did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A destination for events. One instance runs in its own task, so `&mut self` is free.
///
/// `send` may be cancelled (the pipeline bounds it with `send_timeout`): a sink that holds a
/// connection takes it out of `self` while using it, so a cancelled send leaves no half-written
/// frame behind and the next call reconnects.
#[async_trait::async_trait]
pub trait Sink: Send + 'static {
    /// Delivers a batch, in order. On error nothing is assumed delivered and the pipeline
    /// retries the whole batch, so targets that can deduplicate by event id should.
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError>;

    /// Makes everything sent so far durable (called on shutdown and by tests).
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// How often [`Sink::tick`] should run (alert digests); `None` for never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work between batches (sending a due digest).
    async fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
