//! Keys of `type = "jsonl"` loggers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::JsonlSink;
use crate::{Encoder, SinkError};

/// `type = "jsonl"`: one native JSON event per line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// The file; relative paths are under the data directory.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// Rotate when the file reaches this many bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotate when the file has been written for this long.
    #[serde(default = "default_max_age", with = "apiary_event::duration")]
    pub max_age: Duration,
    /// Rotated files to keep; older ones are deleted.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_path() -> PathBuf {
    PathBuf::from("events.jsonl")
}
fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_max_age() -> Duration {
    Duration::from_secs(86_400)
}
fn default_keep() -> usize {
    10
}

impl Default for JsonlConfig {
    fn default() -> Self {
        Self {
            path: default_path(),
            max_bytes: default_max_bytes(),
            max_age: default_max_age(),
            keep: default_keep(),
        }
    }
}

impl JsonlConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        if self.max_bytes < 4096 {
            return Err(SinkError::Config("max_bytes must be at least 4096".into()));
        }
        Ok(())
    }

    /// Opens the file (creating directories) and returns the sink.
    pub fn build(&self, data_dir: &Path, encoder: Encoder) -> Result<JsonlSink, SinkError> {
        self.validate()?;
        let path =
            if self.path.is_absolute() { self.path.clone() } else { data_dir.join(&self.path) };
        Ok(JsonlSink::open(path, self.max_bytes, self.max_age, self.keep)?.with_encoder(encoder))
    }
}
