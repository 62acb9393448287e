//! The `[node]` section: where the Core is, how to trust it, how to prove who we are, and the
//! agent's timings and limits. Unknown keys are refused.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The node agent's configuration (`[node]` in the apiary TOML file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The enrollment name (`apiary core node add NAME`); sent as `node_name` and stamped on
    /// every event.
    pub name: String,
    /// The Core's node port, `host:port`.
    #[serde(default = "default_core")]
    pub core: String,
    /// The name the Core's certificate must carry (also sent as SNI).
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// PEM file of the CA that signed the Core's certificate (`<core data>/tls/ca.pem`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Certificate pinning: SHA-256 (hex) of the Core's certificate (DER). With `ca_file` both
    /// must hold; alone, the pin replaces CA verification.
    #[serde(default)]
    pub pin_sha256: Option<String>,
    /// The client certificate (PEM) the Core issued at enrollment, for a Core with
    /// `mtls = true`; needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// The private key of `client_cert` (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Plain TCP (a lab Core configured for it); secrets and events cross unencrypted.
    #[serde(default)]
    pub plain: bool,
    /// The TOTP secret (base32) the operator got from `apiary core node add`.
    #[serde(default)]
    pub totp_secret: Option<String>,
    /// A file holding the TOTP secret instead (keeps it out of the main file).
    #[serde(default)]
    pub totp_secret_file: Option<PathBuf>,
    /// A one-time enrollment token (`apiary core node add NAME --token`); the secret the Core
    /// issues in exchange is stored in the state directory.
    #[serde(default)]
    pub token: Option<String>,
    /// Where the node keeps its identity, installed pots and spool (default `<data_dir>/node`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Heartbeat (`NodeStatusUpdate`) interval.
    #[serde(default = "default_heartbeat", with = "apiary_event::duration")]
    pub heartbeat: Duration,
    /// First wait after a failed connection; doubles (with jitter) up to `reconnect_max`.
    #[serde(default = "default_reconnect_min", with = "apiary_event::duration")]
    pub reconnect_min: Duration,
    /// Longest wait between connection attempts.
    #[serde(default = "default_reconnect_max", with = "apiary_event::duration")]
    pub reconnect_max: Duration,
    /// Connect + TLS handshake + registration must finish within this.
    #[serde(default = "default_connect_timeout", with = "apiary_event::duration")]
    pub connect_timeout: Duration,
    /// Port of the external pots' event socket on 127.0.0.1: 9100 (HoneyBee's) means the
    /// first free port of 9100 to 9199, 0 any free port.
    #[serde(default = "default_event_port")]
    pub event_port: u16,
    /// Longest JSON line an external pot may send (bytes); longer lines are skipped.
    #[serde(default = "default_max_event_line")]
    pub max_event_line: usize,
    /// Programs (absolute paths) an `external` pot may run. Empty: external pots are refused,
    /// so a compromised Core cannot make this node run anything.
    #[serde(default)]
    pub allow_programs: Vec<PathBuf>,
    /// Most events per forwarded batch (one `ApiarySync` round trip each).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Most bytes the forwarding spool keeps on disk while the Core is unreachable.
    #[serde(default = "default_spool_bytes")]
    pub spool_max_bytes: u64,
}

fn default_core() -> String {
    "127.0.0.1:9001".into()
}
fn default_server_name() -> String {
    "honeybee-manager".into()
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(30)
}
fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_event_port() -> u16 {
    9100
}
fn default_max_event_line() -> usize {
    64 * 1024
}
fn default_batch() -> usize {
    2000
}
fn default_spool_bytes() -> u64 {
    1 << 30
}

impl NodeConfig {
    /// A configuration with defaults for everything but the name (tests, `apiary up`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            core: default_core(),
            server_name: default_server_name(),
            ca_file: None,
            pin_sha256: None,
            client_cert: None,
            client_key: None,
            plain: false,
            totp_secret: None,
            totp_secret_file: None,
            token: None,
            state_dir: None,
            heartbeat: default_heartbeat(),
            reconnect_min: default_reconnect_min(),
            reconnect_max: default_reconnect_max(),
            connect_timeout: default_connect_timeout(),
            event_port: default_event_port(),
            max_event_line: default_max_event_line(),
            allow_programs: Vec::new(),
            batch: default_batch(),
            spool_max_bytes: default_spool_bytes(),
        }
    }

    /// Every problem parsing cannot catch, as messages naming the key.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            errs.push(format!("name {:?}: use 1 to 64 of A-Z a-z 0-9 . _ -", self.name));
        }
        if split_host_port(&self.core).is_none() {
            errs.push(format!("core {:?}: expected host:port", self.core));
        }
        if !self.plain && self.ca_file.is_none() && self.pin_sha256.is_none() {
            errs.push(
                "set ca_file (the Core's tls/ca.pem) or pin_sha256, or plain = true for a lab Core"
                    .into(),
            );
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            errs.push("client_cert and client_key go together".into());
        }
        if self.plain && self.client_cert.is_some() {
            errs.push("client_cert needs TLS (remove plain = true)".into());
        }
        if let Some(pin) = &self.pin_sha256
            && crate::conn::parse_pin(pin).is_none()
        {
            errs.push("pin_sha256: expected 64 hex digits (colons allowed)".into());
        }
        if rustls::pki_types::ServerName::try_from(self.server_name.clone()).is_err() {
            errs.push(format!(
                "server_name {:?} is not a DNS name or IP address",
                self.server_name
            ));
        }
        let creds = [self.totp_secret.is_some(), self.totp_secret_file.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if creds > 1 {
            errs.push("give totp_secret or totp_secret_file, not both".into());
        }
        if let Some(s) = &self.totp_secret
            && apiary_proto::TotpSecret::from_base32(s).is_none()
        {
            errs.push("totp_secret: not a base32 secret".into());
        }
        if self.heartbeat < Duration::from_secs(1) || self.heartbeat > Duration::from_secs(3600) {
            errs.push("heartbeat: between 1s and 1h".into());
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            errs.push("reconnect_min must be above zero and at most reconnect_max".into());
        }
        if self.connect_timeout.is_zero() {
            errs.push("connect_timeout must be above zero".into());
        }
        if !(256..=(1 << 20)).contains(&self.max_event_line) {
            errs.push("max_event_line: between 256 and 1048576".into());
        }
        if !(1..=10_000).contains(&self.batch) {
            errs.push("batch: between 1 and 10000".into());
        }
        for p in &self.allow_programs {
            if !p.is_absolute() {
                errs.push(format!("allow_programs: {} is not an absolute path", p.display()));
            }
        }
        errs
    }
}

/// `host:port` split, with `[v6]:port` accepted.
pub(crate) fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host.to_owned(), port))
}
