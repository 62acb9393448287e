//! The Core's runtime configuration (validated values; the binary maps its flags and TOML here).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How nodes connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeTransport {
    /// TLS only (the default).
    #[default]
    Tls,
    /// Plain TCP only: for the seed example and labs; logged as a loud warning.
    Plain,
    /// Both on one port: the first byte decides (0x16 starts a TLS handshake, `{` JSON).
    Both,
}

/// What happens when an unknown node name registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnrollmentMode {
    /// Refused: nodes are enrolled by the operator first (`apiary core node add NAME`).
    #[default]
    Closed,
    /// Trust on first use: the node is enrolled on the spot and receives a TOTP secret in
    /// `RegistrationAck.totp_key`. Only for labs; logged as a warning.
    Open,
}

/// Everything [`crate::Core::start`] needs.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Where nodes connect (HoneyBee's port is 9001).
    pub listen: SocketAddr,
    /// Directory for the generated CA and certificate and the SQLite database.
    pub data_dir: PathBuf,
    /// `postgres://...` or `sqlite:PATH`; `None` means SQLite at `<data_dir>/core.db`.
    pub database_url: Option<String>,
    /// PostgreSQL schema to create and use (tests use a fresh one each).
    pub database_schema: Option<String>,
    /// TLS, plain, or both.
    pub transport: NodeTransport,
    /// Extra names for the generated server certificate (`honeybee-manager`, `honeybee-core`
    /// and `localhost` are always included).
    pub tls_names: Vec<String>,
    /// Operator-supplied certificate chain and key (PEM) instead of the generated ones.
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// Closed (default) or open enrollment.
    pub enrollment: EnrollmentMode,
    /// Mutual TLS: nodes must present the client certificate issued to them at enrollment
    /// (signed by the Core CA in `<data_dir>/tls`, bound to their node id).
    pub mtls: bool,
    /// How long an issued node client certificate is valid (from one hour before issue, for
    /// clock skew). A node with an expired certificate is refused with that reason; issue a
    /// new one with `apiary core node cert NAME`.
    pub node_cert_validity: Duration,
    /// How often nodes heartbeat (HoneyBee: 30 s).
    pub heartbeat_interval: Duration,
    /// Heartbeats a node may miss before it is marked offline and disconnected.
    pub missed_heartbeats: u32,
    /// Time from accept to a complete `NodeRegistration` (TLS handshake included).
    pub registration_timeout: Duration,
    /// Largest message in bytes.
    pub max_message: usize,
    /// Connections served at once; more wait in the kernel backlog.
    pub max_connections: usize,
    /// Pause between two commands to one node (the seed example parses one `recv` as one
    /// message, so two back-to-back lines would break it).
    pub command_gap: Duration,
    /// Longest a write to a node may take before the connection is dropped.
    pub write_timeout: Duration,
    /// Events per store transaction at most; `None` takes the back end's own
    /// ([`CoreConfig::batch_for`]).
    pub ingest_batch: Option<usize>,
    /// Events buffered between connections and the store; readers wait when it is full.
    pub ingest_queue: usize,
    /// MaxMind GeoIP database for the dashboard's source countries and map (none bundled).
    pub geoip: Option<PathBuf>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9001)),
            data_dir: PathBuf::from("apiary-core"),
            database_url: None,
            database_schema: None,
            transport: NodeTransport::Tls,
            tls_names: Vec::new(),
            tls_cert: None,
            enrollment: EnrollmentMode::Closed,
            mtls: false,
            node_cert_validity: Duration::from_secs(365 * 86_400),
            heartbeat_interval: Duration::from_secs(30),
            missed_heartbeats: 3,
            registration_timeout: Duration::from_secs(10),
            max_message: apiary_proto::MAX_MESSAGE,
            max_connections: 20_000,
            command_gap: Duration::from_millis(250),
            write_timeout: Duration::from_secs(30),
            ingest_batch: None,
            // Room for the batch being written and a full one behind it.
            ingest_queue: 40_000,
            geoip: None,
        }
    }
}

impl CoreConfig {
    /// Events per store transaction on `backend` (`sqlite`, `postgres`): the configured
    /// number, else 16,000 on SQLite, whose one writer takes a batch at a time (a larger
    /// transaction writes each index page it changes once for more rows), and 2,000 on
    /// PostgreSQL, which takes four batches at once.
    pub fn batch_for(&self, backend: &str) -> usize {
        self.ingest_batch.unwrap_or(if backend == "sqlite" { 16_000 } else { 2000 }).max(1)
    }

    /// The store URL in force.
    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite:{}", self.data_dir.join("core.db").display()),
        }
    }

    /// Silence after which a node counts as offline.
    pub fn offline_after(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.missed_heartbeats.max(1))
    }

    /// Where the Core keeps the CA and server certificate it creates (`<data_dir>/tls`).
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }

    /// How enrolled nodes check this Core's certificate, for their `[node]` section: with no
    /// `tls_cert` of its own, the Core's CA under [`tls_dir`](Self::tls_dir).
    pub fn node_trust(&self) -> crate::NodeTrust {
        match (self.transport, &self.tls_cert) {
            (NodeTransport::Plain, _) => crate::NodeTrust::Plain,
            (_, Some(_)) => crate::NodeTrust::OperatorCa,
            _ => crate::NodeTrust::CaFile(crate::tls::ca_cert_path(&self.tls_dir())),
        }
    }
}
