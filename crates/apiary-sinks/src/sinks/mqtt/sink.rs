//! The MQTT publisher.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use rumqttc::{AsyncClient, Event as MqttEvent, EventLoop, MqttOptions, Packet, QoS};

use super::MqttConfig;
use crate::{Encoder, Sink, SinkError};

/// Requests rumqttc queues before the event loop must run.
const CHUNK: usize = 256;

/// Publishes batches to one topic.
pub struct MqttSink {
    cfg: MqttConfig,
    encoder: Encoder,
    conn: Option<(AsyncClient, EventLoop)>,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink").field("topic", &self.cfg.topic).finish()
    }
}

fn err(e: impl std::fmt::Display) -> SinkError {
    SinkError::Rejected(e.to_string())
}

impl MqttSink {
    /// A sink for `cfg` (not connected yet; rumqttc connects on the first poll).
    pub fn new(cfg: MqttConfig, encoder: Encoder) -> Self {
        Self { cfg, encoder, conn: None }
    }

    fn client(&self) -> (AsyncClient, EventLoop) {
        let id = self
            .cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("apiary-{}", apiary_event::new_id().simple()));
        let mut opts = MqttOptions::new(id, self.cfg.host.clone(), self.cfg.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        if let Some(u) = &self.cfg.username {
            opts.set_credentials(u.clone(), self.cfg.password.clone().unwrap_or_default());
        }
        AsyncClient::new(opts, CHUNK + 16)
    }
}

#[async_trait::async_trait]
impl Sink for MqttSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let (client, mut eventloop) = match self.conn.take() {
            Some(c) => c,
            None => self.client(),
        };
        for chunk in batch.chunks(CHUNK) {
            for e in chunk {
                client
                    .try_publish(
                        self.cfg.topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        self.encoder.to_vec(e),
                    )
                    .map_err(err)?;
            }
            let mut acked = 0;
            while acked < chunk.len() {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    // The event loop is dropped with its unacknowledged state; the whole
                    // batch is retried on a fresh connection.
                    Err(e) => return Err(err(e)),
                }
            }
        }
        self.conn = Some((client, eventloop));
        Ok(())
    }
}
