//! apiary's loggers: a pipeline that takes every [`Event`](apiary_event::Event) from producers
//! and delivers it to each configured sink without ever slowing a producer.
//!
//! Producers hold an [`Emitter`]; each sink gets its own bounded queue and task, so a slow or
//! dead sink only fills its own queue. Drops are counted per sink and reported.
//! Sinks live in `sinks/<name>/` with the same file roles (`config`, `sink`, `encoder`, tests).

mod config;
mod filter;
mod pipeline;
pub mod sinks;
mod stats;

use std::sync::Arc;

use apiary_event::Event;

pub use config::{BatchConfig, SinkConfig, SinkKind};
pub use filter::Filter;
pub use pipeline::{Emitter, Pipeline, SinkSpec};
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
}

/// A destination for events. One instance runs in its own task, so `&mut self` is free.
#[async_trait::async_trait]
pub trait Sink: Send + 'static {
    /// Delivers a batch, in order. On error nothing is assumed delivered and the pipeline
    /// retries the whole batch, so targets that can deduplicate by event id should.
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError>;

    /// Makes everything sent so far durable (called on shutdown and by tests).
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
