//! Keys of `type = "amqp"` loggers (HoneyPy's `url_param`, `exchange`, `routing_key`).

use serde::Deserialize;

use super::AmqpSink;
use crate::{Encoder, SinkError};

/// `type = "amqp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// Broker URL (`amqp://user:pass@host:5672/%2f`).
    #[serde(default = "default_url")]
    pub url: String,
    /// Exchange to publish to (`""` is the default exchange).
    #[serde(default)]
    pub exchange: String,
    /// Routing key (a queue name with the default exchange).
    #[serde(default = "default_key")]
    pub routing_key: String,
    /// Declare the exchange (durable, `topic`) if it does not exist.
    #[serde(default)]
    pub declare_exchange: bool,
    /// Declare a durable queue of this name and bind it with the routing key.
    #[serde(default)]
    pub declare_queue: Option<String>,
}

fn default_url() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".into()
}
fn default_key() -> String {
    "apiary.events".into()
}

impl AmqpConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        if !self.url.starts_with("amqp://") {
            return Err(SinkError::Config("url must start with amqp://".into()));
        }
        if self.declare_exchange && self.exchange.is_empty() {
            return Err(SinkError::Config("declare_exchange needs an exchange name".into()));
        }
        if self.exchange.len() > 255 || self.routing_key.len() > 255 {
            return Err(SinkError::Config("exchange and routing_key are at most 255 bytes".into()));
        }
        Ok(())
    }

    /// The sink; it connects on first use.
    pub fn build(&self, encoder: Encoder) -> Result<AmqpSink, SinkError> {
        self.validate()?;
        Ok(AmqpSink::new(self.clone(), encoder))
    }
}
