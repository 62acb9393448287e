//! The NATS publisher.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;

use super::NatsConfig;
use crate::{Encoder, Sink, SinkError};

struct Conn {
    client: async_nats::Client,
    js: Option<jetstream::Context>,
}

/// Publishes batches to one subject (or one per kind).
pub struct NatsSink {
    cfg: NatsConfig,
    encoder: Encoder,
    conn: Option<Conn>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink").field("subject", &self.cfg.subject).finish()
    }
}

fn err(e: impl std::fmt::Display) -> SinkError {
    SinkError::Rejected(e.to_string())
}

impl NatsSink {
    /// A sink for `cfg` (not connected yet).
    pub fn new(cfg: NatsConfig, encoder: Encoder) -> Self {
        Self { cfg, encoder, conn: None }
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(self.cfg.url.as_str())
            .await
            .map_err(err)?;
        let js = if self.cfg.jetstream {
            let js = jetstream::new(client.clone());
            if let Some(name) = &self.cfg.stream {
                let subjects = if self.cfg.subject_by_kind {
                    vec![format!("{}.>", self.cfg.subject)]
                } else {
                    vec![self.cfg.subject.clone()]
                };
                js.get_or_create_stream(jetstream::stream::Config {
                    name: name.clone(),
                    subjects,
                    duplicate_window: self.cfg.duplicate_window,
                    ..Default::default()
                })
                .await
                .map_err(err)?;
            }
            Some(js)
        } else {
            None
        };
        Ok(Conn { client, js })
    }

    fn subject(&self, e: &Event) -> String {
        if self.cfg.subject_by_kind {
            format!("{}.{}", self.cfg.subject, e.kind)
        } else {
            self.cfg.subject.clone()
        }
    }
}

#[async_trait::async_trait]
impl Sink for NatsSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        match &conn.js {
            Some(js) => {
                let mut acks = Vec::with_capacity(batch.len());
                for e in batch {
                    let payload = Bytes::from(self.encoder.to_vec(e));
                    let msg = PublishMessage::build().payload(payload).message_id(e.id.to_string());
                    acks.push(js.send_publish(self.subject(e), msg).await.map_err(err)?);
                }
                for ack in acks {
                    ack.await.map_err(err)?;
                }
            }
            None => {
                for e in batch {
                    let payload = Bytes::from(self.encoder.to_vec(e));
                    conn.client.publish(self.subject(e), payload).await.map_err(err)?;
                }
                // A flush round trip confirms the server has read everything before it.
                conn.client.flush().await.map_err(err)?;
            }
        }
        self.conn = Some(conn);
        Ok(())
    }
}
