//! The AMQP publisher.

use std::sync::Arc;

use apiary_event::Event;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};

use super::AmqpConfig;
use crate::{Encoder, Sink, SinkError};

/// Publishes batches to one exchange and routing key.
pub struct AmqpSink {
    cfg: AmqpConfig,
    encoder: Encoder,
    conn: Option<(Connection, Channel)>,
}

impl std::fmt::Debug for AmqpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSink").field("exchange", &self.cfg.exchange).finish()
    }
}

fn err(e: impl std::fmt::Display) -> SinkError {
    SinkError::Rejected(e.to_string())
}

impl AmqpSink {
    /// A sink for `cfg` (not connected yet).
    pub fn new(cfg: AmqpConfig, encoder: Encoder) -> Self {
        Self { cfg, encoder, conn: None }
    }

    async fn connect(&self) -> Result<(Connection, Channel), SinkError> {
        let conn = Connection::connect(&self.cfg.url, ConnectionProperties::default())
            .await
            .map_err(err)?;
        let ch = conn.create_channel().await.map_err(err)?;
        ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(err)?;
        if self.cfg.declare_exchange {
            ch.exchange_declare(
                self.cfg.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        }
        if let Some(q) = &self.cfg.declare_queue {
            ch.queue_declare(
                q.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
            if !self.cfg.exchange.is_empty() {
                ch.queue_bind(
                    q.as_str().into(),
                    self.cfg.exchange.as_str().into(),
                    self.cfg.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
            }
        }
        Ok((conn, ch))
    }
}

#[async_trait::async_trait]
impl Sink for AmqpSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let (conn, ch) = match self.conn.take() {
            Some(c) if c.1.status().connected() => c,
            _ => self.connect().await?,
        };
        let mut confirms = Vec::with_capacity(batch.len());
        for e in batch {
            let props = BasicProperties::default()
                .with_message_id(e.id.to_string().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_type(e.kind.as_str().into());
            let c = ch
                .basic_publish(
                    self.cfg.exchange.as_str().into(),
                    self.cfg.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &self.encoder.to_vec(e),
                    props,
                )
                .await
                .map_err(err)?;
            confirms.push(c);
        }
        for c in confirms {
            match c.await.map_err(err)? {
                Confirmation::Ack(_) => {}
                other => {
                    return Err(SinkError::Rejected(format!("broker did not confirm: {other:?}")));
                }
            }
        }
        self.conn = Some((conn, ch));
        Ok(())
    }
}
