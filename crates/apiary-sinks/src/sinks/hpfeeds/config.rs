//! Keys of `type = "hpfeeds"` loggers (HoneyPy's `server`, `port`, `ident`, `secret`,
//! `channel`, `serverid`).

use serde::Deserialize;

use super::HpfeedsSink;
use crate::{Encoder, SinkError};

/// `type = "hpfeeds"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpfeedsConfig {
    /// Broker host.
    #[serde(default = "default_server")]
    pub server: String,
    /// Broker port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Ident.
    pub ident: String,
    /// Secret.
    pub secret: String,
    /// Channel to publish on.
    pub channel: String,
}

fn default_server() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    20000
}

impl HpfeedsConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        if self.ident.is_empty() || self.ident.len() > 255 {
            return Err(SinkError::Config("ident must be 1 to 255 bytes".into()));
        }
        if self.channel.is_empty() || self.channel.len() > 255 {
            return Err(SinkError::Config("channel must be 1 to 255 bytes".into()));
        }
        Ok(())
    }

    /// The sink; it connects on first use.
    pub fn build(&self, encoder: Encoder) -> Result<HpfeedsSink, SinkError> {
        self.validate()?;
        Ok(HpfeedsSink::new(self.clone(), encoder))
    }
}
