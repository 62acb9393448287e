//! Keys of `type = "postgres"` loggers.

use serde::Deserialize;

use super::PostgresSink;
use crate::{Encoder, SinkError};

/// `type = "postgres"`: one row per event, the record in a `json` column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL (`postgres://user:password@host:5432/db`).
    pub url: String,
    /// Table name; created on first use.
    #[serde(default = "default_table")]
    pub table: String,
    /// Connections a batch is split over, each part its own `COPY`: the server parses and
    /// indexes one `COPY` on one core, so a second connection lets it use a second.
    #[serde(default = "default_connections")]
    pub connections: usize,
}

fn default_table() -> String {
    "apiary_events".into()
}

fn default_connections() -> usize {
    2
}

impl PostgresConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(SinkError::Config("url must start with postgres://".into()));
        }
        let ok = self.table.len() <= 48
            && self.table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && self.table.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            // The name is put into SQL, so it is restricted to a plain identifier.
            return Err(SinkError::Config(
                "table must be a lower-case identifier ([a-z_][a-z0-9_]*, at most 48 characters)"
                    .into(),
            ));
        }
        if !(1..=16).contains(&self.connections) {
            return Err(SinkError::Config("connections must be 1 to 16".into()));
        }
        Ok(())
    }

    /// The sink; it connects on first use.
    pub fn build(&self, encoder: Encoder) -> Result<PostgresSink, SinkError> {
        self.validate()?;
        Ok(PostgresSink::new(self.url.clone(), self.table.clone(), encoder, self.connections))
    }
}
