//! Keys of `type = "logstash"` loggers.

use std::path::PathBuf;

use serde::Deserialize;

use super::LogstashSink;
use crate::{Encoder, SinkError};

/// `type = "logstash"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogstashConfig {
    /// Logstash host.
    pub host: String,
    /// Port of its `tcp` input.
    pub port: u16,
    /// Use TLS.
    #[serde(default)]
    pub tls: bool,
    /// CA certificates (PEM) for TLS; default the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl LogstashConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        if self.host.is_empty() || self.port == 0 {
            return Err(SinkError::Config("host and port are required".into()));
        }
        Ok(())
    }

    /// The sink; it connects on first use.
    pub fn build(&self, encoder: Encoder) -> Result<LogstashSink, SinkError> {
        self.validate()?;
        let tls =
            if self.tls { Some(crate::net::tls_connector(self.ca_file.as_deref())?) } else { None };
        Ok(LogstashSink::new(self.host.clone(), self.port, tls, encoder))
    }
}
