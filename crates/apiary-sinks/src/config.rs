//! Logger configuration: `[[logger]]` tables selected by `type`, with common queue and filter
//! keys; each sink's own keys live in its module's `config.rs`.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::sinks::jsonl::JsonlConfig;
use crate::{Filter, SinkError, SinkSpec};

/// Queue and batch sizes of one sink.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Events the in-memory queue holds before the sink starts dropping.
    pub queue: usize,
    /// Most events handed to the sink at once.
    pub max_events: usize,
    /// How long to wait for a batch to fill once the first event is in.
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { queue: 65_536, max_events: 1024, linger: Duration::ZERO }
    }
}

/// One `[[logger]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Name in reports; defaults to the type.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether the logger runs (HoneyPy's `enabled`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Queue capacity in events.
    #[serde(default)]
    pub queue: Option<usize>,
    /// Largest batch.
    #[serde(default)]
    pub batch: Option<usize>,
    /// Source networks to keep out of this logger.
    #[serde(default)]
    pub ignore: Vec<IpNet>,
    /// Only these kinds (`session.` matches the family).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only these services.
    #[serde(default)]
    pub services: Vec<String>,
    /// The sink type and its own keys.
    #[serde(flatten)]
    pub kind: SinkKind,
}

fn yes() -> bool {
    true
}

/// The sink types, selected by `type = "..."`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SinkKind {
    /// JSON lines in a local file with rotation.
    Jsonl(JsonlConfig),
}

impl SinkKind {
    /// The type name as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Jsonl(_) => "jsonl",
        }
    }

    /// Whether events leave this host (the global ignore list applies to external sinks
    /// only, as HoneyPy's whitelist did).
    pub fn is_external(&self) -> bool {
        match self {
            Self::Jsonl(_) => false,
        }
    }
}

impl SinkConfig {
    /// The display name.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.kind.type_name().to_owned())
    }

    /// Builds the running sink. `global_ignore` is added to the filter of external sinks;
    /// relative paths are resolved against `data_dir`.
    pub fn build(
        &self,
        global_ignore: &[IpNet],
        data_dir: &std::path::Path,
    ) -> Result<SinkSpec, SinkError> {
        let mut ignore_sources = self.ignore.clone();
        if self.kind.is_external() {
            ignore_sources.extend_from_slice(global_ignore);
        }
        let filter =
            Filter { ignore_sources, kinds: self.kinds.clone(), services: self.services.clone() };
        let defaults = BatchConfig::default();
        let batch = BatchConfig {
            queue: self.queue.unwrap_or(defaults.queue),
            max_events: self.batch.unwrap_or(defaults.max_events),
            linger: defaults.linger,
        };
        let sink: Box<dyn crate::Sink> = match &self.kind {
            SinkKind::Jsonl(c) => Box::new(c.build(data_dir)?),
        };
        Ok(SinkSpec { name: self.display_name(), sink, filter, batch })
    }
}
