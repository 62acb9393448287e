//! Logger configuration: `[[logger]]` tables selected by `type`, with common queue, spool,
//! format and filter keys; each sink's own keys live in its module's `config.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::alert::{AlertPolicy, AlertSink};
use crate::sinks;
use crate::{Encoder, Filter, Format, SinkError, SinkSpec, SpoolConfig};

/// Queue, batch and timing settings of one sink.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Events the in-memory queue holds; past half full a busy sink spills to its spool.
    pub queue: usize,
    /// Most events handed to the sink at once.
    pub max_events: usize,
    /// How long to wait for a batch to fill once the first event is in.
    pub linger: Duration,
    /// A send taking longer is abandoned and retried (the target may see the batch twice).
    pub send_timeout: Duration,
    /// A send running longer than this makes new arrivals go to the spool.
    pub slow_after: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            queue: 65_536,
            max_events: 1024,
            linger: Duration::ZERO,
            send_timeout: Duration::from_secs(30),
            slow_after: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// One `[[logger]]` table.
///
/// Unknown keys are rejected by the sink type's own struct (`deny_unknown_fields` there): serde
/// hands it every key this struct does not name, and does not support the attribute here
/// together with `flatten`.
#[derive(Debug, Clone, Deserialize)]
pub struct SinkConfig {
    /// Name in reports and of the spool directory; defaults to the type.
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
    /// How long a batch may wait to fill (`"50ms"`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub linger: Option<Duration>,
    /// Abandon and retry a send after this long.
    #[serde(default, deserialize_with = "opt_duration")]
    pub send_timeout: Option<Duration>,
    /// Source networks to keep out of this logger.
    #[serde(default)]
    pub ignore: Vec<IpNet>,
    /// Only these kinds (`session.` matches the family).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only these services.
    #[serde(default)]
    pub services: Vec<String>,
    /// Record layout: `json` (native), `ecs`, `cim` or `honeypy`.
    #[serde(default)]
    pub format: Format,
    /// Keep only these dotted fields of the record.
    #[serde(default)]
    pub fields: Vec<String>,
    /// With `format = "honeypy"`: HoneyPy's hex-string `bytes` and `data_hash`.
    #[serde(default)]
    pub honeypy_hex: bool,
    /// Most events per second handed to the sink; the rest wait (never dropped).
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Keep the backlog on disk (`true`, default) or in memory only.
    #[serde(default = "yes")]
    pub spool: bool,
    /// Spool directory; default `<data_dir>/spool/<name>`.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Spool size bound in bytes; the oldest events go first (counted and logged).
    #[serde(default)]
    pub spool_max_bytes: Option<u64>,
    /// How often the spool is flushed to disk (`"1s"`; `"0s"` = every write).
    #[serde(default, deserialize_with = "opt_duration")]
    pub spool_sync: Option<Duration>,
    /// Alert sinks: digest window (`"10m"`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub digest_window: Option<Duration>,
    /// Alert sinks: immediate alerts per window.
    #[serde(default)]
    pub alert_max: Option<usize>,
    /// Alert sinks: how long an alerted (kind, service, source) group stays quiet.
    #[serde(default, deserialize_with = "opt_duration")]
    pub alert_repeat_after: Option<Duration>,
    /// The sink type and its own keys.
    #[serde(flatten)]
    pub kind: SinkKind,
}

fn yes() -> bool {
    true
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    apiary_event::duration::deserialize(d).map(Some)
}

/// The sink types, selected by `type = "..."`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SinkKind {
    /// JSON lines in a local file with rotation.
    Jsonl(sinks::jsonl::JsonlConfig),
    /// PostgreSQL table (COPY, dedupe by id).
    Postgres(sinks::postgres::PostgresConfig),
    /// NATS or NATS JetStream.
    Nats(sinks::nats::NatsConfig),
    /// Logstash TCP JSON lines.
    Logstash(sinks::logstash::LogstashConfig),
    /// E-mail over SMTP (alerts).
    Email(sinks::email::EmailConfig),
    /// X (Twitter) posts (alerts).
    Twitter(sinks::chat::TwitterConfig),
    /// Generic JSON webhook (alerts).
    Webhook(sinks::chat::WebhookConfig),
    /// Telegram bot (alerts).
    Telegram(sinks::chat::TelegramConfig),
    /// Discord webhook (alerts).
    Discord(sinks::chat::DiscordConfig),
    /// Slack incoming webhook (alerts).
    Slack(sinks::chat::SlackConfig),
    /// HoneyDB collector.
    Honeydb(sinks::http::HoneydbConfig),
    /// Sumo Logic HTTP source.
    Sumologic(sinks::http::SumologicConfig),
    /// Elasticsearch / OpenSearch `_bulk`.
    Elasticsearch(sinks::http::ElasticsearchConfig),
    /// Splunk HTTP Event Collector.
    SplunkHec(sinks::http::SplunkHecConfig),
    /// RabbitMQ / AMQP exchange with publisher confirms.
    Amqp(sinks::amqp::AmqpConfig),
    /// MQTT topic (QoS 1).
    Mqtt(sinks::mqtt::MqttConfig),
    /// hpfeeds broker channel.
    Hpfeeds(sinks::hpfeeds::HpfeedsConfig),
    /// Syslog RFC 5424 over UDP, TCP or TLS.
    Syslog(sinks::syslog::SyslogConfig),
    /// Redis stream or list.
    Redis(sinks::redis::RedisConfig),
}

/// Calls `$body` with the inner config of any variant bound to `$c`.
macro_rules! each_kind {
    ($self:expr, $c:ident => $body:expr) => {
        match $self {
            SinkKind::Jsonl($c) => $body,
            SinkKind::Postgres($c) => $body,
            SinkKind::Nats($c) => $body,
            SinkKind::Logstash($c) => $body,
            SinkKind::Email($c) => $body,
            SinkKind::Twitter($c) => $body,
            SinkKind::Webhook($c) => $body,
            SinkKind::Telegram($c) => $body,
            SinkKind::Discord($c) => $body,
            SinkKind::Slack($c) => $body,
            SinkKind::Honeydb($c) => $body,
            SinkKind::Sumologic($c) => $body,
            SinkKind::Elasticsearch($c) => $body,
            SinkKind::SplunkHec($c) => $body,
            SinkKind::Amqp($c) => $body,
            SinkKind::Mqtt($c) => $body,
            SinkKind::Hpfeeds($c) => $body,
            SinkKind::Syslog($c) => $body,
            SinkKind::Redis($c) => $body,
        }
    };
}

impl SinkKind {
    /// The type name as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Jsonl(_) => "jsonl",
            Self::Postgres(_) => "postgres",
            Self::Nats(_) => "nats",
            Self::Logstash(_) => "logstash",
            Self::Email(_) => "email",
            Self::Twitter(_) => "twitter",
            Self::Webhook(_) => "webhook",
            Self::Telegram(_) => "telegram",
            Self::Discord(_) => "discord",
            Self::Slack(_) => "slack",
            Self::Honeydb(_) => "honeydb",
            Self::Sumologic(_) => "sumologic",
            Self::Elasticsearch(_) => "elasticsearch",
            Self::SplunkHec(_) => "splunk_hec",
            Self::Amqp(_) => "amqp",
            Self::Mqtt(_) => "mqtt",
            Self::Hpfeeds(_) => "hpfeeds",
            Self::Syslog(_) => "syslog",
            Self::Redis(_) => "redis",
        }
    }

    /// Whether events leave this host (the global ignore list applies to external sinks
    /// only, as HoneyPy's whitelist did).
    pub fn is_external(&self) -> bool {
        !matches!(self, Self::Jsonl(_))
    }

    /// Whether this is an alerting sink (deduplicates and sends digests).
    pub fn is_alert(&self) -> bool {
        matches!(
            self,
            Self::Slack(_)
                | Self::Discord(_)
                | Self::Telegram(_)
                | Self::Webhook(_)
                | Self::Twitter(_)
                | Self::Email(_)
        )
    }
}

impl SinkConfig {
    /// The display name.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.kind.type_name().to_owned())
    }

    /// The record encoder from `format`, `fields` and `honeypy_hex`.
    pub fn encoder(&self) -> Encoder {
        Encoder { format: self.format, fields: self.fields.clone(), honeypy_hex: self.honeypy_hex }
    }

    fn alert_policy(&self) -> AlertPolicy {
        let d = AlertPolicy::default();
        AlertPolicy {
            window: self.digest_window.unwrap_or(d.window),
            max_per_window: self.alert_max.unwrap_or(d.max_per_window),
            repeat_after: self.alert_repeat_after.unwrap_or(d.repeat_after),
        }
    }

    /// Checks the keys without touching the network or the disk.
    pub fn validate(&self) -> Result<(), SinkError> {
        let name = self.display_name();
        let bad = |m: String| Err(SinkError::Config(format!("logger {name:?}: {m}")));
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            || name.starts_with('.')
        {
            return bad("name may only use letters, digits, '-', '_' and '.'".into());
        }
        if let Err(e) = self.encoder().validate() {
            return bad(e);
        }
        if self.queue == Some(0) || self.batch == Some(0) {
            return bad("queue and batch must be at least 1".into());
        }
        if let Some(r) = self.rate_limit
            && !(r.is_finite() && r > 0.0)
        {
            return bad("rate_limit must be a positive number of events per second".into());
        }
        if !self.kind.is_alert()
            && (self.digest_window.is_some()
                || self.alert_max.is_some()
                || self.alert_repeat_after.is_some())
        {
            return bad(
                "digest_window, alert_max and alert_repeat_after apply to alert loggers only"
                    .into(),
            );
        }
        if self.spool_max_bytes.is_some_and(|b| b < 64 << 10) {
            return bad("spool_max_bytes must be at least 65536".into());
        }
        self.kind.validate().or_else(|e| bad(e.to_string()))
    }

    /// Builds the running sink. `global_ignore` is added to the filter of external sinks;
    /// relative paths are resolved against `data_dir`. Never connects: a target that is down
    /// at start is retried by the pipeline and does not stop the other sinks.
    pub fn build(&self, global_ignore: &[IpNet], data_dir: &Path) -> Result<SinkSpec, SinkError> {
        self.validate()?;
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
            linger: self.linger.unwrap_or(defaults.linger),
            send_timeout: self.send_timeout.unwrap_or(defaults.send_timeout),
            ..defaults
        };
        let name = self.display_name();
        let spool_defaults = SpoolConfig::default();
        let spool = SpoolConfig {
            dir: self.spool.then(|| {
                let dir = self.spool_dir.clone().unwrap_or_else(|| Path::new("spool").join(&name));
                if dir.is_absolute() { dir } else { data_dir.join(dir) }
            }),
            max_bytes: self.spool_max_bytes.unwrap_or(spool_defaults.max_bytes),
            sync_interval: self.spool_sync.unwrap_or(spool_defaults.sync_interval),
        };
        let sink = self.kind.build(self.encoder(), self.alert_policy(), data_dir)?;
        Ok(SinkSpec { name, sink, filter, batch, spool, rate_limit: self.rate_limit })
    }
}

impl SinkKind {
    fn validate(&self) -> Result<(), SinkError> {
        each_kind!(self, c => c.validate())
    }

    fn build(
        &self,
        encoder: Encoder,
        alert: AlertPolicy,
        data_dir: &Path,
    ) -> Result<Box<dyn crate::Sink>, SinkError> {
        Ok(match self {
            Self::Jsonl(c) => Box::new(c.build(data_dir, encoder)?),
            Self::Postgres(c) => Box::new(c.build(encoder)?),
            Self::Nats(c) => Box::new(c.build(encoder)?),
            Self::Logstash(c) => Box::new(c.build(encoder.clone())?),
            Self::Email(c) => Box::new(AlertSink::new(c.build()?, alert)),
            Self::Twitter(c) => Box::new(AlertSink::new(c.build()?, alert)),
            Self::Webhook(c) => Box::new(AlertSink::new(c.build(encoder.clone())?, alert)),
            Self::Telegram(c) => Box::new(AlertSink::new(c.build()?, alert)),
            Self::Discord(c) => Box::new(AlertSink::new(c.build()?, alert)),
            Self::Slack(c) => Box::new(AlertSink::new(c.build()?, alert)),
            Self::Honeydb(c) => Box::new(c.build(encoder.clone())?),
            Self::Sumologic(c) => Box::new(c.build(encoder.clone())?),
            Self::Elasticsearch(c) => Box::new(c.build(encoder.clone())?),
            Self::SplunkHec(c) => Box::new(c.build(encoder.clone())?),
            Self::Amqp(c) => Box::new(c.build(encoder.clone())?),
            Self::Mqtt(c) => Box::new(c.build(encoder.clone())?),
            Self::Hpfeeds(c) => Box::new(c.build(encoder.clone())?),
            Self::Syslog(c) => Box::new(c.build(encoder.clone())?),
            Self::Redis(c) => Box::new(c.build(encoder.clone())?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        logger: Vec<SinkConfig>,
    }

    fn parse(s: &str) -> Result<Vec<SinkConfig>, toml::de::Error> {
        toml::from_str::<File>(s).map(|f| f.logger)
    }

    #[test]
    fn parses_common_and_sink_keys_and_rejects_unknown_ones() {
        let l = parse(
            r#"
            [[logger]]
            type = "jsonl"
            name = "file"
            path = "x.jsonl"
            format = "honeypy"
            honeypy_hex = true
            fields = ["event", "data"]
            rate_limit = 10.0
            spool_sync = "250ms"
            "#,
        )
        .unwrap();
        assert_eq!(l[0].display_name(), "file");
        assert_eq!(l[0].format, Format::Honeypy);
        assert_eq!(l[0].spool_sync, Some(Duration::from_millis(250)));
        l[0].validate().unwrap();
        let err = parse("[[logger]]\ntype = \"jsonl\"\npaht = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("paht"), "{err}");
        let err = parse("[[logger]]\ntype = \"nope\"\n").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn validation_names_the_logger_and_the_problem() {
        let l = parse("[[logger]]\ntype = \"jsonl\"\nname = \"a/b\"\n").unwrap();
        let e = l[0].validate().unwrap_err().to_string();
        assert!(e.contains("a/b") && e.contains("name"), "{e}");
        let l = parse("[[logger]]\ntype = \"jsonl\"\nhoneypy_hex = true\n").unwrap();
        assert!(l[0].validate().unwrap_err().to_string().contains("honeypy"));
        let l = parse("[[logger]]\ntype = \"jsonl\"\ndigest_window = \"1m\"\n").unwrap();
        assert!(l[0].validate().unwrap_err().to_string().contains("alert"));
    }
}
