//! Sensor configuration: one serde struct embedded as `[sensor]` in apiary's TOML, and a loader
//! that accepts PokieStream's `config.yaml` unchanged (top-level `config:` key, its validation
//! rules and messages, unknown keys kept for plugins).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Every sensor setting. Field names follow PokieStream's `config.yaml` so one vocabulary
/// serves both files; apiary's additions live in `tracking`, `capture` and `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Interface to capture on (`-i` overrides it).
    pub iface: Option<String>,
    /// Records queued between capture and output; overflow is counted and dropped.
    pub queue_size: usize,
    /// The pot name stamped on every record.
    pub name: String,
    /// Packet plugin.
    pub plugin: PluginConfig,
    /// What is reported.
    pub filter: FilterConfig,
    /// Flow table settings.
    pub tracking: TrackingConfig,
    /// Live capture settings.
    pub capture: CaptureConfig,
    /// Default output when no plugin is configured.
    pub output: OutputConfig,
    /// Seconds between stats lines (0: only at exit).
    pub stats_interval_secs: u64,
    /// PokieStream's `NOT_RECOMMENDED` section (accepted; apiary never sleeps per record).
    #[serde(rename = "NOT_RECOMMENDED", alias = "not_recommended")]
    pub not_recommended: NotRecommended,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            iface: None,
            queue_size: DEFAULT_QUEUE_SIZE,
            name: "sensor".into(),
            plugin: PluginConfig::default(),
            filter: FilterConfig::default(),
            tracking: TrackingConfig::default(),
            capture: CaptureConfig::default(),
            output: OutputConfig::default(),
            stats_interval_secs: 60,
            not_recommended: NotRecommended::default(),
        }
    }
}

/// PokieStream's queue size when `queue_size` is 0, null or (apiary) missing.
pub const DEFAULT_QUEUE_SIZE: usize = 10_000;

/// `plugin.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// A `.py` or `.lua` file with a `receiver` function.
    pub path: Option<PathBuf>,
    /// Pass the whole config as the receiver's second argument.
    pub pass_config: bool,
    /// Call `receiver_bulk(list)` with up to `bulk_size` records instead of one call per record.
    pub bulk: bool,
    /// Largest batch handed to `receiver_bulk`.
    pub bulk_size: Option<usize>,
}

/// `filter.*`: PokieStream's filters, in its order (section 4 of the reference).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Address filters: AND (true) or OR (false).
    pub strict: bool,
    /// Protocols reported (`tcp`, `udp`, `icmp`; `ip`, `arp`, `all` are accepted and match
    /// nothing, as in PokieStream). Absent: all.
    pub protocol: Option<Vec<String>>,
    /// Source addresses or CIDRs.
    pub source: Option<Vec<String>>,
    /// Destination addresses or CIDRs.
    pub destination: Option<Vec<String>>,
    /// Destination ports (TCP and UDP). Absent: all.
    pub port: Option<Vec<u16>>,
    /// Payload filters.
    pub payload: PayloadConfig,
    /// BPF capture filter in tcpdump syntax (compiled with libpcap at run time).
    #[serde(alias = "bpf")]
    pub scapy: String,
}

/// `filter.payload.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayloadConfig {
    /// DNS question names (PokieStream: UDP; apiary: also TCP on the same ports).
    pub dns: NameFilterConfig,
    /// TLS ClientHello server names.
    pub tls: NameFilterConfig,
    /// HTTP Host headers.
    pub http: NameFilterConfig,
    /// Drop records of flows on a payload filter's ports whose name does not match (the
    /// README's "only log if"); PokieStream itself only fills `payload`.
    pub drop_unmatched: bool,
}

impl Default for PayloadConfig {
    fn default() -> Self {
        Self {
            dns: NameFilterConfig::default(),
            tls: NameFilterConfig { ports: vec![443], ..NameFilterConfig::default() },
            http: NameFilterConfig { ports: vec![80, 8080], ..NameFilterConfig::default() },
            drop_unmatched: false,
        }
    }
}

/// One payload name filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NameFilterConfig {
    /// Turn the extraction on.
    pub enabled: bool,
    /// Destination ports treated as this protocol.
    pub ports: Vec<u16>,
    /// Wildcard patterns (`*`, `?`, `[...]`); empty matches every name.
    #[serde(rename = "match")]
    pub patterns: Vec<String>,
}

/// `tracking.*` (apiary): timeouts and table bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// TCP session timeout (PokieStream: 60 s from creation or ESTABLISHED).
    pub tcp_timeout_secs: u64,
    /// Let every packet extend the TCP timeout (idle timeout) instead of PokieStream's
    /// "from the last state change".
    pub tcp_idle: bool,
    /// UDP idle timeout.
    pub udp_timeout_secs: u64,
    /// UDP idle timeout when the destination port is 53.
    pub udp_dns_timeout_secs: u64,
    /// Most flows tracked at once; beyond it the flow closest to expiry is evicted and
    /// reported as `EXPIRED` with reason `evicted`.
    pub max_flows: usize,
    /// Bytes buffered per flow to reassemble a split ClientHello or request head.
    pub reassembly_bytes: usize,
    /// Flows that may hold a reassembly buffer at once.
    pub max_reassembly_flows: usize,
    /// Replays: report flows still open at the end of the file as expired at their deadline.
    pub expire_at_end: bool,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            tcp_timeout_secs: 60,
            tcp_idle: false,
            udp_timeout_secs: 120,
            udp_dns_timeout_secs: 30,
            max_flows: 1_000_000,
            reassembly_bytes: 16_384,
            max_reassembly_flows: 4096,
            expire_at_end: true,
        }
    }
}

/// `capture.*` (apiary): live capture ring and threads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Capture threads sharing the interface through `PACKET_FANOUT_HASH`.
    pub workers: usize,
    /// Ring block size in bytes (power of two, multiple of the page size).
    pub block_size: usize,
    /// Ring blocks per worker.
    pub block_count: usize,
    /// Milliseconds before the kernel hands over a partly filled block.
    pub block_timeout_ms: u32,
    /// Bytes captured per packet.
    pub snaplen: u32,
    /// Put the interface in promiscuous mode (SPAN and TAP ports).
    pub promiscuous: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            block_size: 1 << 20,
            block_count: 64,
            block_timeout_ms: 50,
            snaplen: 65_535,
            promiscuous: true,
        }
    }
}

/// `output.*` (apiary): the default output without a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// `plain` (PokieStream's bundled plugin), `packet_log` (one JSON object per line with
    /// the ten keys) or `json` (apiary's native event JSON).
    pub format: OutputFormat,
    /// Colour `plain` lines by state.
    pub color: bool,
    /// Reverse-resolve destination addresses in `plain` lines.
    pub rdns: bool,
    /// Most addresses kept in the reverse DNS cache.
    pub rdns_cache: usize,
    /// Milliseconds a `plain` line waits for an uncached reverse lookup.
    pub rdns_wait_ms: u64,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            format: OutputFormat::Plain,
            color: true,
            rdns: true,
            rdns_cache: 4096,
            rdns_wait_ms: 200,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// PokieStream's `plain` plugin lines.
    Plain,
    /// PokieStream `packet_log` JSON lines.
    PacketLog,
    /// apiary native event JSON lines.
    Json,
}

/// PokieStream's `NOT_RECOMMENDED` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotRecommended {
    /// PokieStream: remove the 10 ms sleep per record. apiary never sleeps per record, so this
    /// is accepted and has no effect.
    pub bypass_polling_delay: bool,
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML or TOML did not parse.
    #[error("parsing config: {0}")]
    Parse(String),
    /// PokieStream-style validation errors, one per line.
    #[error("Validation Errors:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// A loaded PokieStream-style config: the typed settings, the merged tree handed to plugins
/// with `pass_config` (custom keys included) and the warnings to log.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The typed settings.
    pub sensor: SensorConfig,
    /// The merged config as plugins see it (`config.filter.strict`, custom keys kept).
    pub plugin_view: serde_json::Value,
    /// Warnings (empty optional keys).
    pub warnings: Vec<String>,
}

impl SensorConfig {
    /// Loads PokieStream's `config.yaml` (or `.yml`) from `path`.
    pub fn load_pokiestream(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_pokiestream_yaml(&text)
    }

    /// Parses PokieStream's YAML layout: everything under a top-level `config:` mapping.
    pub fn from_pokiestream_yaml(text: &str) -> Result<LoadedConfig, ConfigError> {
        let doc: serde_json::Value =
            yaml_serde::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let Some(mut user) = doc.get("config").cloned() else {
            return Err(ConfigError::Invalid(vec!["Missing top-level 'config' key".into()]));
        };
        if !user.is_object() {
            return Err(ConfigError::Invalid(vec!["'config' must be a mapping".into()]));
        }
        strip_strings(&mut user);
        let mut warnings = Vec::new();
        drop_empty_optionals(&mut user, "", &mut warnings);
        validate_pokiestream(&user)?;
        // Keep only the keys the typed config knows; the full tree still goes to plugins.
        let schema = serde_json::to_value(Self::default()).unwrap_or_default();
        let mut known = user.clone();
        prune_unknown(&mut known, &schema);
        if known.get("queue_size").is_some_and(|q| q.is_null() || q.as_u64() == Some(0))
            && let Some(m) = known.as_object_mut()
        {
            m.remove("queue_size");
        }
        let sensor: Self =
            serde_json::from_value(known).map_err(|e| ConfigError::Invalid(vec![e.to_string()]))?;
        sensor.check()?;
        let mut plugin_view = serde_json::to_value(&sensor).unwrap_or_default();
        merge_missing(&mut plugin_view, &user);
        Ok(LoadedConfig { sensor, plugin_view, warnings })
    }

    /// Checks values serde cannot (addresses, protocol names); apiary's TOML path calls this
    /// after deserialising.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        for (key, list) in [
            ("filter.source", &self.filter.source),
            ("filter.destination", &self.filter.destination),
        ] {
            for item in list.iter().flatten() {
                if parse_net(item).is_none() {
                    errors.push(format!("{key}: invalid IP address or network: {item}"));
                }
            }
        }
        for p in self.filter.protocol.iter().flatten() {
            if !matches!(p.as_str(), "tcp" | "udp" | "icmp" | "ip" | "arp" | "all") {
                errors.push(format!("filter.protocol: invalid protocol: {p}"));
            }
        }
        if let Some(path) = &self.plugin.path {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "py" | "lua") {
                errors.push(format!("plugin.path: must end with .py or .lua: {}", path.display()));
            }
        }
        for (key, f) in [
            ("dns", &self.filter.payload.dns),
            ("tls", &self.filter.payload.tls),
            ("http", &self.filter.payload.http),
        ] {
            if f.patterns.iter().any(|p| p.trim().is_empty()) {
                errors.push(format!(
                    "filter.payload.{key}.match: patterns must be non-empty strings"
                ));
            }
        }
        if self.capture.workers == 0 || self.capture.workers > 64 {
            errors.push("capture.workers: must be between 1 and 64".into());
        }
        if self.tracking.max_flows == 0 {
            errors.push("tracking.max_flows: must be at least 1".into());
        }
        if errors.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(errors)) }
    }

    /// `queue_size` with PokieStream's rule (0 means the default).
    pub fn effective_queue_size(&self) -> usize {
        if self.queue_size == 0 { DEFAULT_QUEUE_SIZE } else { self.queue_size }
    }
}

/// An address or network as PokieStream's `ipaddress.ip_network` accepts it (host bits allowed).
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

fn strip_strings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            let t = s.trim();
            if t.len() != s.len() {
                *s = t.to_owned();
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_strings),
        serde_json::Value::Object(m) => m.values_mut().for_each(strip_strings),
        _ => {}
    }
}

/// PokieStream warns about optional keys that are present but empty and then ignores them.
fn drop_empty_optionals(v: &mut serde_json::Value, prefix: &str, warnings: &mut Vec<String>) {
    let Some(m) = v.as_object_mut() else { return };
    let empty: Vec<String> =
        m.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k.clone()).collect();
    for k in empty {
        if k != "queue_size" {
            warnings.push(format!("Optional key '{prefix}{k}' is empty and will be ignored"));
            m.remove(&k);
        }
    }
    for (k, child) in m.iter_mut() {
        drop_empty_optionals(child, &format!("{prefix}{k}."), warnings);
    }
}

fn validate_pokiestream(user: &serde_json::Value) -> Result<(), ConfigError> {
    let mut errors = Vec::new();
    let get = |path: &str| path.split('.').try_fold(user, |v, k| v.get(k));
    let want_bool = |path: &str, errors: &mut Vec<String>| {
        if get(path).is_some_and(|v| !v.is_boolean()) {
            errors.push(format!("{path} must be a boolean"));
        }
    };
    if get("iface").is_some_and(|v| !v.is_string()) {
        errors.push("iface must be a string".into());
    }
    if get("queue_size").is_some_and(|v| !v.is_null() && !v.is_u64()) {
        errors.push("queue_size must be an integer".into());
    }
    for b in [
        "plugin.pass_config",
        "filter.strict",
        "filter.payload.dns.enabled",
        "NOT_RECOMMENDED.bypass_polling_delay",
    ] {
        want_bool(b, &mut errors);
    }
    if let Some(p) = get("plugin.path") {
        match p.as_str() {
            Some(s) if !Path::new(s).is_file() => {
                errors.push(format!("plugin.path: file does not exist: {s}"))
            }
            Some(s) if !(s.ends_with(".py") || s.ends_with(".lua")) => {
                errors.push(format!("plugin.path: must be a .py or .lua file: {s}"));
            }
            Some(_) => {}
            None => errors.push("plugin.path must be a string".into()),
        }
    }
    if let Some(list) = get("filter.protocol") {
        match list.as_array() {
            Some(items) => {
                for i in items {
                    if !matches!(i.as_str(), Some("tcp" | "udp" | "icmp" | "ip" | "arp" | "all")) {
                        errors.push(format!("filter.protocol: invalid protocol {i}"));
                    }
                }
            }
            None => errors.push("filter.protocol must be a list".into()),
        }
    }
    for key in ["filter.source", "filter.destination"] {
        if let Some(list) = get(key) {
            match list.as_array() {
                Some(items) => {
                    for i in items {
                        if i.as_str().and_then(parse_net).is_none() {
                            errors.push(format!("{key}: invalid IP address or network {i}"));
                        }
                    }
                }
                None => errors.push(format!("{key} must be a list")),
            }
        }
    }
    for key in ["filter.port", "filter.payload.dns.ports"] {
        if let Some(list) = get(key) {
            match list.as_array() {
                Some(items) => {
                    for i in items {
                        if i.as_u64().is_none_or(|p| p > 65_535) {
                            errors.push(format!("{key}: invalid port {i}"));
                        }
                    }
                }
                None => errors.push(format!("{key} must be a list")),
            }
        }
    }
    if let Some(list) = get("filter.payload.dns.match") {
        match list.as_array() {
            Some(items) => {
                for i in items {
                    if i.as_str().is_none_or(str::is_empty) {
                        errors.push(format!("filter.payload.dns.match: invalid pattern {i}"));
                    }
                }
            }
            None => errors.push("filter.payload.dns.match must be a list".into()),
        }
    }
    if get("filter.scapy").is_some_and(|v| !v.is_string()) {
        errors.push("filter.scapy must be a string".into());
    }
    if errors.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(errors)) }
}

/// Removes keys of `v` that `schema` (the serialised default config) does not have.
fn prune_unknown(v: &mut serde_json::Value, schema: &serde_json::Value) {
    let (Some(m), Some(s)) = (v.as_object_mut(), schema.as_object()) else { return };
    m.retain(|k, _| s.contains_key(k));
    for (k, child) in m.iter_mut() {
        if let Some(sc) = s.get(k) {
            prune_unknown(child, sc);
        }
    }
}

/// Adds keys of `extra` missing from `base` (custom plugin keys), recursively.
fn merge_missing(base: &mut serde_json::Value, extra: &serde_json::Value) {
    let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) else { return };
    for (k, v) in e {
        match b.get_mut(k) {
            Some(existing) => merge_missing(existing, v),
            None => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_queue_size_is_ten_thousand() {
        let c = SensorConfig::from_pokiestream_yaml("config:\n  iface: eth0\n").unwrap();
        assert_eq!(c.sensor.queue_size, 10_000);
        let c = SensorConfig::from_pokiestream_yaml("config:\n  iface: eth0\n  queue_size: 0\n")
            .unwrap();
        assert_eq!(c.sensor.effective_queue_size(), 10_000);
    }

    #[test]
    fn validation_errors_are_listed() {
        let y = "config:\n  iface: eth0\n  filter:\n    strict: maybe\n    protocol: [tcp, TCP]\n    port: [70000]\n    source: [nope]\n";
        let err = SensorConfig::from_pokiestream_yaml(y).unwrap_err().to_string();
        assert!(err.starts_with("Validation Errors:"), "{err}");
        for needle in ["filter.strict", "TCP", "70000", "nope"] {
            assert!(err.contains(needle), "{needle} in {err}");
        }
    }

    #[test]
    fn strings_are_stripped_and_custom_keys_reach_plugins() {
        let y = "config:\n  iface: ' eth0 '\n  my_plugin:\n    url: x\n  filter:\n    source:\n";
        let c = SensorConfig::from_pokiestream_yaml(y).unwrap();
        assert_eq!(c.sensor.iface.as_deref(), Some("eth0"));
        assert_eq!(c.plugin_view["my_plugin"]["url"], "x");
        assert_eq!(c.plugin_view["filter"]["strict"], false);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn toml_rejects_unknown_keys() {
        let ok: SensorConfig = toml::from_str("iface = \"lo\"\n[filter]\nport = [22]\n").unwrap();
        assert_eq!(ok.filter.port, Some(vec![22]));
        assert!(toml::from_str::<SensorConfig>("ifcae = \"lo\"\n").is_err());
    }
}
