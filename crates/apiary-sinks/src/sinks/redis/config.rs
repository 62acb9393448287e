//! Keys of `type = "redis"` loggers.

use serde::Deserialize;

use super::RedisSink;
use crate::{Encoder, SinkError};

/// Where events go in Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    /// `XADD key [MAXLEN ~ n] * event <json> id <uuid>`.
    #[default]
    Stream,
    /// `RPUSH key <json>`.
    List,
}

/// `type = "redis"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Server host.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// `AUTH` password.
    #[serde(default)]
    pub password: Option<String>,
    /// `AUTH` user (Redis 6 ACLs).
    #[serde(default)]
    pub username: Option<String>,
    /// Database number (`SELECT`).
    #[serde(default)]
    pub db: u32,
    /// Stream or list key.
    #[serde(default = "default_key")]
    pub key: String,
    /// Stream or list.
    #[serde(default)]
    pub mode: RedisMode,
    /// Approximate stream length cap (`MAXLEN ~`); 0 = none.
    #[serde(default)]
    pub max_len: u64,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    6379
}
fn default_key() -> String {
    "apiary:events".into()
}

impl RedisConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        if self.key.is_empty() {
            return Err(SinkError::Config("key must not be empty".into()));
        }
        if self.max_len > 0 && self.mode == RedisMode::List {
            return Err(SinkError::Config("max_len applies to mode = \"stream\" only".into()));
        }
        Ok(())
    }

    /// The sink; it connects on first use.
    pub fn build(&self, encoder: Encoder) -> Result<RedisSink, SinkError> {
        self.validate()?;
        Ok(RedisSink::new(self.clone(), encoder))
    }
}
