//! Keys of `type = "nats"` loggers.

use std::time::Duration;

use serde::Deserialize;

use super::NatsSink;
use crate::{Encoder, SinkError};

/// `type = "nats"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL (`nats://host:4222`).
    #[serde(default = "default_url")]
    pub url: String,
    /// Subject to publish on.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Append the event kind to the subject (`apiary.events.session.open`).
    #[serde(default)]
    pub subject_by_kind: bool,
    /// Publish through JetStream and wait for the stream's acknowledgement.
    #[serde(default)]
    pub jetstream: bool,
    /// JetStream stream to create if missing (captures the subject); `None` = must exist.
    #[serde(default)]
    pub stream: Option<String>,
    /// Deduplication window of a stream this logger creates.
    #[serde(default = "default_window", with = "apiary_event::duration")]
    pub duplicate_window: Duration,
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_subject() -> String {
    "apiary.events".into()
}
fn default_window() -> Duration {
    Duration::from_secs(120)
}

impl NatsConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        let bad_subject = self.subject.is_empty()
            || self.subject.contains(|c: char| c.is_whitespace() || c == '*' || c == '>');
        if bad_subject {
            return Err(SinkError::Config("subject must be a literal NATS subject".into()));
        }
        if self.stream.is_some() && !self.jetstream {
            return Err(SinkError::Config("stream needs jetstream = true".into()));
        }
        if let Some(s) = &self.stream
            && (s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '.'))
        {
            return Err(SinkError::Config("stream name may not contain spaces or '.'".into()));
        }
        Ok(())
    }

    /// The sink; it connects on first use.
    pub fn build(&self, encoder: Encoder) -> Result<NatsSink, SinkError> {
        self.validate()?;
        Ok(NatsSink::new(self.clone(), encoder))
    }
}
