//! The `[core]` section of the apiary TOML file and its mapping to a [`CoreConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{CoreConfig, EnrollmentMode, NodeTransport};

/// How nodes connect, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportSetting {
    /// TLS only.
    #[default]
    Tls,
    /// Plain TCP only (lab; logged as a warning).
    Plain,
    /// Both on one port.
    Both,
}

/// Enrollment mode, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentSetting {
    /// Only nodes enrolled with `apiary core node add`.
    #[default]
    Closed,
    /// Trust on first use (lab).
    Open,
}

/// `[core]`: every key optional; unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreSettings {
    /// The node port (HoneyBee: 9001).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Certificates and the SQLite file (default `<data_dir>/core`).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// `postgres://...` or `sqlite:PATH`; SQLite in `data_dir` when absent.
    #[serde(default)]
    pub database_url: Option<String>,
    /// `tls` (default), `plain` or `both`.
    #[serde(default)]
    pub transport: TransportSetting,
    /// Extra names for the generated server certificate.
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// Your own certificate chain (PEM) instead of the generated one; needs `tls_key`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// `closed` (default) or `open`.
    #[serde(default)]
    pub enrollment: EnrollmentSetting,
    /// Mutual TLS: `apiary core node add` issues each node a client certificate and the Core
    /// refuses nodes that do not present the one issued to them.
    #[serde(default)]
    pub mtls: bool,
    /// Validity of the client certificates issued to nodes (default `365d`).
    #[serde(default = "default_cert_validity", with = "apiary_event::duration")]
    pub node_cert_validity: Duration,
    /// Expected heartbeat interval of nodes.
    #[serde(default = "default_heartbeat", with = "apiary_event::duration")]
    pub heartbeat: Duration,
    /// Heartbeats a node may miss before it is marked offline.
    #[serde(default = "default_missed")]
    pub missed_heartbeats: u32,
    /// Events per store transaction at most (default: 16000 on SQLite, 2000 on PostgreSQL).
    #[serde(default)]
    pub ingest_batch: Option<usize>,
    /// Events buffered between connections and the store.
    #[serde(default = "default_queue")]
    pub ingest_queue: usize,
    /// Node connections served at once.
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    /// Where `apiary core run` serves the REST API and dashboard (off when absent; port 0
    /// picks a free port).
    #[serde(default)]
    pub http: Option<SocketAddr>,
    /// A MaxMind GeoIP2/GeoLite2 Country or City database (`.mmdb`) for the dashboard's source
    /// countries and map; none is bundled, and without one the map is not shown.
    #[serde(default)]
    pub geoip: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9001))
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(30)
}
fn default_missed() -> u32 {
    3
}
fn default_cert_validity() -> Duration {
    CoreConfig::default().node_cert_validity
}
fn default_queue() -> usize {
    CoreConfig::default().ingest_queue
}
fn default_connections() -> usize {
    CoreConfig::default().max_connections
}

impl Default for CoreSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: None,
            database_url: None,
            transport: TransportSetting::default(),
            tls_names: Vec::new(),
            tls_cert: None,
            tls_key: None,
            enrollment: EnrollmentSetting::default(),
            mtls: false,
            node_cert_validity: default_cert_validity(),
            heartbeat: default_heartbeat(),
            missed_heartbeats: default_missed(),
            ingest_batch: None,
            ingest_queue: default_queue(),
            max_connections: default_connections(),
            http: None,
            geoip: None,
        }
    }
}

impl CoreSettings {
    /// Every problem parsing cannot catch.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            errs.push("tls_cert and tls_key go together".into());
        }
        if let Some(url) = &self.database_url {
            let ok = url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:");
            if !ok {
                errs.push(format!(
                    "database_url: use sqlite:PATH or postgres://... (got {:?})",
                    url.chars().take(40).collect::<String>()
                ));
            }
        }
        if self.mtls && self.transport != TransportSetting::Tls {
            errs.push(
                "mtls: needs transport = \"tls\" (plain connections carry no certificate)".into(),
            );
        }
        if self.mtls && self.enrollment == EnrollmentSetting::Open {
            errs.push(
                "mtls: needs enrollment = \"closed\" (certificates are issued at enrollment)"
                    .into(),
            );
        }
        if self.node_cert_validity < Duration::from_secs(3600)
            || self.node_cert_validity > Duration::from_secs(10 * 366 * 86_400)
        {
            errs.push("node_cert_validity: between 1h and 3660d".into());
        }
        if self.heartbeat < Duration::from_secs(1) {
            errs.push("heartbeat: at least 1s".into());
        }
        if self.missed_heartbeats == 0 {
            errs.push("missed_heartbeats: at least 1".into());
        }
        if self.ingest_batch.is_some_and(|b| !(1..=100_000).contains(&b)) {
            errs.push("ingest_batch: between 1 and 100000".into());
        }
        if self.ingest_queue == 0 || self.max_connections == 0 {
            errs.push("ingest_queue and max_connections must be above zero".into());
        }
        if let Some(p) = &self.geoip
            && !p.is_file()
        {
            errs.push(format!("geoip: {} is not a readable file", p.display()));
        }
        for n in &self.tls_names {
            if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
                errs.push(format!("tls_names: {n:?} is not a DNS name or IP address"));
            }
        }
        errs
    }

    /// The Core's data directory given the file's top-level data directory.
    pub fn data_dir(&self, top: &Path) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| top.join("core"))
    }

    /// The runtime configuration.
    pub fn to_config(&self, top_data_dir: &Path) -> CoreConfig {
        CoreConfig {
            listen: self.listen,
            data_dir: self.data_dir(top_data_dir),
            database_url: self.database_url.clone(),
            transport: match self.transport {
                TransportSetting::Tls => NodeTransport::Tls,
                TransportSetting::Plain => NodeTransport::Plain,
                TransportSetting::Both => NodeTransport::Both,
            },
            tls_names: self.tls_names.clone(),
            tls_cert: self.tls_cert.clone().zip(self.tls_key.clone()),
            enrollment: match self.enrollment {
                EnrollmentSetting::Closed => EnrollmentMode::Closed,
                EnrollmentSetting::Open => EnrollmentMode::Open,
            },
            mtls: self.mtls,
            node_cert_validity: self.node_cert_validity,
            heartbeat_interval: self.heartbeat,
            missed_heartbeats: self.missed_heartbeats,
            ingest_batch: self.ingest_batch,
            ingest_queue: self.ingest_queue,
            max_connections: self.max_connections,
            geoip: self.geoip.clone(),
            ..CoreConfig::default()
        }
    }
}
