//! Keys of `type = "mqtt"` loggers.

use serde::Deserialize;

use super::MqttSink;
use crate::{Encoder, SinkError};

/// `type = "mqtt"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host.
    #[serde(default = "default_host")]
    pub host: String,
    /// Broker port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Topic.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Client id; default `apiary-<random>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_topic() -> String {
    "apiary/events".into()
}

impl MqttConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        if self.topic.is_empty() || self.topic.contains(['+', '#']) {
            return Err(SinkError::Config("topic must be a literal topic (no + or #)".into()));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(SinkError::Config("password needs username".into()));
        }
        Ok(())
    }

    /// The sink; it connects on first use.
    pub fn build(&self, encoder: Encoder) -> Result<MqttSink, SinkError> {
        self.validate()?;
        Ok(MqttSink::new(self.clone(), encoder))
    }
}
