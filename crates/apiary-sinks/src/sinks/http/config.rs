//! Keys of the HTTP SIEM loggers.

use std::time::Duration;

use serde::Deserialize;

use super::{ElasticsearchSink, HoneydbSink, Http, SplunkHecSink, SumologicSink};
use crate::{Encoder, Format, SinkError};

fn http_url(url: &str, key: &str) -> Result<(), SinkError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(SinkError::Config(format!("{key} must be an http:// or https:// URL")))
    }
}

fn timeout() -> Duration {
    Duration::from_secs(10)
}

/// `type = "splunk_hec"` (HoneyPy's `splunk`: `url`, `token`, `index`, `source`, `sourcetype`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// Collector endpoint (`https://splunk:8088/services/collector/event`).
    pub url: String,
    /// HEC token.
    pub token: String,
    /// Index.
    #[serde(default)]
    pub index: Option<String>,
    /// Source.
    #[serde(default = "default_source")]
    pub source: String,
    /// Sourcetype.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// Accept any TLS certificate (HoneyPy always did; off by default here).
    #[serde(default)]
    pub insecure: bool,
}

fn default_source() -> String {
    "apiary".into()
}
fn default_sourcetype() -> String {
    "_json".into()
}

impl SplunkHecConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        http_url(&self.url, "url")?;
        if self.token.is_empty() {
            return Err(SinkError::Config("token is required".into()));
        }
        Ok(())
    }

    /// The sink.
    pub fn build(&self, encoder: Encoder) -> Result<SplunkHecSink, SinkError> {
        self.validate()?;
        Ok(SplunkHecSink::new(self.clone(), Http::new(self.insecure, timeout())?, encoder))
    }
}

/// `type = "elasticsearch"` (also OpenSearch): `_bulk` with `create` and `_id` = event id, so a
/// retried batch is refused per document (409) instead of duplicated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL (`https://es:9200`).
    pub url: String,
    /// Index (or data stream).
    #[serde(default = "default_index")]
    pub index: String,
    /// Basic auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password.
    #[serde(default)]
    pub password: Option<String>,
    /// API key (`Authorization: ApiKey ...`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Accept any TLS certificate.
    #[serde(default)]
    pub insecure: bool,
}

fn default_index() -> String {
    "apiary-events".into()
}

impl ElasticsearchConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        http_url(&self.url, "url")?;
        if self.index.is_empty() || self.index.contains(['/', ' ', '"', '*', '?', '#']) {
            return Err(SinkError::Config("bad index name".into()));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(SinkError::Config("password needs username".into()));
        }
        Ok(())
    }

    /// The sink.
    pub fn build(&self, encoder: Encoder) -> Result<ElasticsearchSink, SinkError> {
        self.validate()?;
        Ok(ElasticsearchSink::new(self.clone(), Http::new(self.insecure, timeout())?, encoder))
    }
}

/// `type = "sumologic"` (HoneyPy's `url`, `custom_source_host`, `custom_source_name`,
/// `custom_source_category`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SumologicConfig {
    /// HTTP source URL.
    pub url: String,
    /// `X-Sumo-Host`.
    #[serde(default)]
    pub custom_source_host: Option<String>,
    /// `X-Sumo-Name`.
    #[serde(default)]
    pub custom_source_name: Option<String>,
    /// `X-Sumo-Category`.
    #[serde(default)]
    pub custom_source_category: Option<String>,
}

impl SumologicConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        http_url(&self.url, "url")
    }

    /// The sink.
    pub fn build(&self, encoder: Encoder) -> Result<SumologicSink, SinkError> {
        self.validate()?;
        Ok(SumologicSink::new(self.clone(), Http::new(false, timeout())?, encoder))
    }
}

/// `type = "honeydb"` (HoneyPy's `api_id`, `api_key`): fetches an HMAC from `hmac_url` (kept
/// until HoneyDB refuses it, not fetched per event as HoneyPy did) and posts HoneyPy-layout
/// records with `hmac_hash`, `hmac_message` and `node` to `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoneydbConfig {
    /// API id.
    pub api_id: String,
    /// API key.
    pub api_key: String,
    /// HMAC endpoint.
    pub hmac_url: String,
    /// Collector endpoint.
    pub url: String,
    /// The `node` value (HoneyPy sent the host's MAC address).
    #[serde(default)]
    pub node: Option<String>,
}

impl HoneydbConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        http_url(&self.url, "url")?;
        http_url(&self.hmac_url, "hmac_url")?;
        if self.api_id.is_empty() || self.api_key.is_empty() {
            return Err(SinkError::Config("api_id and api_key are required".into()));
        }
        Ok(())
    }

    /// The sink; its records are HoneyPy's layout whatever `format` says.
    pub fn build(&self, encoder: Encoder) -> Result<HoneydbSink, SinkError> {
        self.validate()?;
        let encoder = Encoder { format: Format::Honeypy, ..encoder };
        Ok(HoneydbSink::new(self.clone(), Http::new(false, timeout())?, encoder))
    }
}
