//! The apiary TOML file: loading it (or the built-in default) and turning every mistake into a
//! message that names the file, the line and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use apiary_pot::{PotConfig, ServiceConfig};
use apiary_sinks::SinkConfig;
use serde::Deserialize;

/// The built-in configuration used when no file is given.
pub(crate) const DEFAULT: &str = include_str!("../defaults/apiary.toml");

/// The whole file. Each section's keys belong to the crate that uses them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Name stamped on every event (`node = "name"`), or the node agent's `[node]` table
    /// (whose `name` is then the events' node name).
    #[serde(default)]
    pub(crate) node: Option<NodeSetting>,
    /// Where logs and state live.
    #[serde(default)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Settings shared by the services.
    #[serde(default)]
    pub(crate) pot: PotConfig,
    /// `[[service]]` tables.
    #[serde(default)]
    pub(crate) service: Vec<ServiceConfig>,
    /// `[[logger]]` tables.
    #[serde(default)]
    pub(crate) logger: Vec<SinkConfig>,
    /// The flow sensor (`apiary sensor`), PokieStream's settings as a TOML table.
    #[serde(default)]
    pub(crate) sensor: Option<apiary_sensor::SensorConfig>,
    /// The Core (`apiary core run`).
    #[serde(default)]
    pub(crate) core: Option<apiary_core::CoreSettings>,
}

/// `node = "name"` or a `[node]` table: the key predates the node agent, so both forms stay.
#[derive(Debug)]
pub(crate) enum NodeSetting {
    /// Just the name events carry.
    Name(String),
    /// The node agent's settings (`apiary node run`).
    Agent(Box<apiary_node::NodeConfig>),
}

impl<'de> Deserialize<'de> for NodeSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NodeSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node name or a [node] table")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NodeSetting, E> {
                Ok(NodeSetting::Name(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<NodeSetting, A::Error> {
                let cfg = apiary_node::NodeConfig::deserialize(
                    serde::de::value::MapAccessDeserializer::new(m),
                )?;
                Ok(NodeSetting::Agent(Box::new(cfg)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A configuration and where it came from.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) config: Config,
    /// The file name as shown in messages (`<built-in>` for the default).
    pub(crate) origin: String,
    text: String,
}

/// A configuration mistake, located.
#[derive(Debug)]
pub(crate) struct ConfigError {
    pub(crate) origin: String,
    pub(crate) line: Option<usize>,
    pub(crate) col: Option<usize>,
    pub(crate) key: Option<String>,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.col {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Loaded {
    /// Reads and parses `path`, or the built-in default when `None`.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (origin, text) = match path {
            None => ("<built-in>".to_owned(), DEFAULT.to_owned()),
            Some(p) => {
                let origin = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                    origin: origin.clone(),
                    line: None,
                    col: None,
                    key: None,
                    message: format!("cannot read: {e}"),
                })?;
                (origin, text)
            }
        };
        Self::parse(origin, text)
    }

    pub(crate) fn parse(origin: String, text: String) -> Result<Self, ConfigError> {
        match toml::from_str::<Config>(&text) {
            Ok(config) => Ok(Self { config, origin, text }),
            Err(e) => {
                let (line, col, key) = match e.span() {
                    Some(span) => {
                        let (line, col) = line_col(&text, span.start);
                        (Some(line), Some(col), key_at(&text, span.start))
                    }
                    None => (None, None, None),
                };
                Err(ConfigError { origin, line, col, key, message: e.message().trim().to_owned() })
            }
        }
    }

    /// Checks what parsing alone cannot: unique names, known plugins, options, loggers.
    /// Returns every problem found, each located where possible.
    pub(crate) fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for e in apiary_pot::check_config(&self.config.pot, &self.config.service) {
            let (service, message) = match &e {
                apiary_pot::PotError::Service { service, message } => {
                    (service.clone(), message.clone())
                }
                other => (String::new(), other.to_string()),
            };
            // A duplicate is reported where it is repeated, not where it first appears.
            let nth = if message.starts_with("duplicate") { 2 } else { 1 };
            let line = find_name(&self.text, "service", &service, nth);
            errors.push(self.error_at(line, Some(format!("service.{service}")), message));
        }
        let mut names = std::collections::HashSet::new();
        for (i, logger) in self.config.logger.iter().enumerate() {
            let name = logger.display_name();
            let line = nth_header(&self.text, "logger", i + 1);
            if !names.insert(name.clone()) {
                errors.push(self.error_at(
                    line,
                    Some(format!("logger.{name}")),
                    "duplicate logger name (give each a distinct `name`)".into(),
                ));
            }
            if let Err(e) = logger.validate() {
                errors.push(self.error_at(line, Some(format!("logger.{name}")), e.to_string()));
            }
        }
        if let Some(sensor) = &self.config.sensor
            && let Err(e) = sensor.check()
        {
            let line = self.text.lines().position(|l| l.trim() == "[sensor]").map(|i| i + 1);
            errors.push(self.error_at(line, Some("sensor".into()), e.to_string()));
        }
        let header = |name: &str| {
            let h = format!("[{name}]");
            self.text.lines().position(|l| l.trim() == h).map(|i| i + 1)
        };
        if let Some(core) = &self.config.core {
            for e in core.validate() {
                errors.push(self.error_at(header("core"), Some("core".into()), e));
            }
        }
        if let Some(NodeSetting::Agent(node)) = &self.config.node {
            for e in node.validate() {
                errors.push(self.error_at(header("node"), Some("node".into()), e));
            }
        }
        errors
    }

    fn error_at(&self, line: Option<usize>, key: Option<String>, message: String) -> ConfigError {
        ConfigError { origin: self.origin.clone(), line, col: None, key, message }
    }

    /// The node name: configured, or this machine's host name.
    pub(crate) fn node(&self) -> String {
        match &self.config.node {
            Some(NodeSetting::Name(n)) => n.clone(),
            Some(NodeSetting::Agent(a)) => a.name.clone(),
            None => hostname(),
        }
    }

    /// The data directory: configured, `$APIARY_DATA_DIR`, or `./apiary-data`.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.config
            .data_dir
            .clone()
            .or_else(|| std::env::var_os("APIARY_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("apiary-data"))
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The dotted key at `offset`: the enclosing `[table]` header plus the key on that line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    let mut table = String::new();
    for line in before.lines() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
            table = h.0.trim().to_owned();
        } else if let Some(h) = t.strip_prefix('[').and_then(|r| r.split_once(']')) {
            table = h.0.trim().to_owned();
        }
    }
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?.trim();
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_owned());
    match (table.is_empty(), key) {
        (_, Some(k)) if line.starts_with('[') || k.is_empty() => {
            Some(table).filter(|t| !t.is_empty())
        }
        (true, Some(k)) => Some(k),
        (false, Some(k)) => Some(format!("{table}.{k}")),
        (false, None) => Some(table),
        (true, None) => None,
    }
}

/// The line of the `nth` `[[array]]` header.
fn nth_header(text: &str, array: &str, nth: usize) -> Option<usize> {
    let header = format!("[[{array}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim().replace(' ', "") == header)
        .nth(nth.checked_sub(1)?)
        .map(|(i, _)| i + 1)
}

/// The line of the `nth` `name = "value"` inside `[[array]]` tables.
fn find_name(text: &str, array: &str, value: &str, nth: usize) -> Option<usize> {
    let header = format!("[[{array}]]");
    let mut in_array = false;
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_array = t.replace(' ', "") == header;
            continue;
        }
        if !in_array {
            continue;
        }
        if let Some((k, v)) = t.split_once('=')
            && k.trim() == "name"
            && v.trim().trim_matches(|c| c == '"' || c == '\'') == value
        {
            seen += 1;
            if seen == nth {
                return Some(i + 1);
            }
        }
    }
    None
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "apiary".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Loaded::parse("a.toml".into(), text.into()).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn the_built_in_default_is_valid() {
        let l = Loaded::load(None).unwrap();
        assert!(l.validate().is_empty());
        let services = apiary_pot::resolve_services(&l.config.pot, &l.config.service).unwrap();
        assert_eq!(services.len(), 8);
    }

    #[test]
    fn parse_errors_name_file_line_and_key() {
        assert_eq!(
            err("[pot.limits]\nmax_connections = 5\ncolour = 1\n"),
            "a.toml:3:1: key `pot.limits.colour`: unknown field `colour`, expected one of \
             `max_connections`, `max_connections_per_ip`, `new_connections_per_sec`, \
             `new_connections_burst`, `read_timeout`, `idle_timeout`, `max_session`, \
             `max_recorded_bytes`, `udp_peers`, `udp_idle_timeout`, `udp_replies_per_sec`, \
             `udp_replies_burst`, `rate_table_size`"
        );
    }
}
