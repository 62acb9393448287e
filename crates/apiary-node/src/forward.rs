//! Forwarding to the Core as a sink of the logger pipeline, so the pipeline's disk spool keeps
//! events while the Core is away.
//!
//! Each batch is written as `ApiaryEvent` lines followed by one `ApiarySync`; the batch counts
//! as delivered only when the Core answers `ApiaryAck` for it, after committing every event.
//! Anything else (no connection, a lost connection, a refusal, no answer in time) fails the
//! batch and the pipeline sends it again later: at-least-once, and the Core's store keeps one
//! copy per event id.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use apiary_sinks::{Sink, SinkError};
use tokio::sync::{mpsc, oneshot};

/// A batch on its way to the connection task.
pub(crate) struct ForwardReq {
    /// The encoded `ApiaryEvent` lines.
    pub(crate) lines: Vec<u8>,
    /// How many events they hold.
    pub(crate) count: usize,
    /// Answered with the Core's verdict; dropped if the connection is lost first.
    pub(crate) reply: oneshot::Sender<bool>,
}

/// The sink that hands batches to the Core connection.
pub(crate) struct CoreSink {
    pub(crate) tx: mpsc::Sender<ForwardReq>,
    /// How long to wait for the Core's `ApiaryAck`.
    pub(crate) ack_timeout: Duration,
}

fn not_connected() -> SinkError {
    SinkError::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "not connected to the Core",
    ))
}

#[async_trait::async_trait]
impl Sink for CoreSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Encoding here, on the sink's task, keeps the connection task free for I/O.
        let mut lines = Vec::with_capacity(batch.len() * 512);
        for e in batch {
            apiary_proto::wire::encode_apiary_event(e, &mut lines);
        }
        let (reply, verdict) = oneshot::channel();
        self.tx
            .send(ForwardReq { lines, count: batch.len(), reply })
            .await
            .map_err(|_| not_connected())?;
        match tokio::time::timeout(self.ack_timeout, verdict).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(SinkError::Rejected("the Core could not store the batch".into())),
            Ok(Err(_)) => Err(not_connected()),
            Err(_) => Err(SinkError::Timeout(self.ack_timeout)),
        }
    }
}
