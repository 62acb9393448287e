//! `apiary up`: one call to a running honeypot you can watch. Starts a Core (SQLite, TLS node
//! port), the REST API and dashboard, a local node enrolled automatically with TOTP, and the
//! default honeypot pot on unprivileged ports whose events travel through the local node to
//! the Core, exactly as a remote node's would.

mod node;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apiary_event::Transport;
use apiary_pot::{ListenerInfo, PortSpec, PotConfig, ServiceConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{HttpConfig, HttpError, HttpHandle, Role};
use crate::{Core, CoreConfig, CoreError, CoreHandle, EnrollKind, NodeTransport};

pub use node::NodeStats;

/// Name of the admin token `apiary up` creates (replaced on every start).
pub const UP_TOKEN_NAME: &str = "apiary-up";

/// Why `apiary up` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpError {
    /// The Core failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The API failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    /// The pot failed.
    #[error("honeypot: {0}")]
    Pot(#[from] apiary_pot::PotError),
    /// Something else.
    #[error("{0}")]
    Other(String),
}

/// What `apiary up` runs.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Where the Core keeps its database, CA and certificates.
    pub data_dir: PathBuf,
    /// The node port (TLS).
    pub core_listen: SocketAddr,
    /// The dashboard and API.
    pub http_listen: SocketAddr,
    /// Where the honeypot services listen.
    pub pot_bind: Vec<IpAddr>,
    /// The services; `None` is [`default_services`].
    pub services: Option<Vec<ServiceConfig>>,
    /// The local node's name.
    pub node_name: String,
    /// The pot's id.
    pub pot_name: String,
    /// `postgres://...` instead of SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// How often the local node heartbeats.
    pub heartbeat: Duration,
    /// A MaxMind GeoIP database for the overview's countries and map (`[core] geoip`).
    pub geoip: Option<PathBuf>,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("apiary-data"),
            core_listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 5100)),
            pot_bind: vec![IpAddr::from([0, 0, 0, 0])],
            services: None,
            node_name: "local".into(),
            pot_name: "default".into(),
            database_url: None,
            geoip: None,
            heartbeat: Duration::from_secs(30),
        }
    }
}

fn service(name: &str, plugin: &str, port: &str) -> Option<ServiceConfig> {
    apiary_pot::services::find(plugin)?;
    Some(ServiceConfig {
        name: name.into(),
        plugin: plugin.into(),
        ports: vec![port.parse().ok()?],
        bind: None,
        enabled: true,
        description: None,
        options: Default::default(),
    })
}

/// The default honeypot profile on unprivileged ports: SSH 2222 (when the SSH emulator is
/// built in), HTTP 8080, SMTP 2525, Elasticsearch 9200, DNS 5353/udp.
pub fn default_services() -> Vec<ServiceConfig> {
    [
        service("ssh", "ssh", "tcp:2222"),
        service("web", "web", "tcp:8080"),
        service("smtp", "smtp", "tcp:2525"),
        service("elasticsearch", "elasticsearch", "tcp:9200"),
        service("dns", "dns", "udp:5353"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A running `apiary up`.
#[derive(Debug)]
pub struct UpHandle {
    core: CoreHandle,
    http: HttpHandle,
    node: JoinHandle<()>,
    cancel: CancellationToken,
    stats: Arc<NodeStats>,
    /// The admin API token created for this run.
    pub token: String,
    /// The dashboard URL with the token (in the fragment, which browsers never send).
    pub dashboard_url: String,
    /// The API base URL.
    pub api_url: String,
    /// The node port.
    pub core_addr: SocketAddr,
    /// The CA certificate remote nodes must trust.
    pub ca_cert: Option<PathBuf>,
    /// The local node's Core id.
    pub node_id: i64,
    /// The honeypot's listeners.
    pub listeners: Vec<ListenerInfo>,
}

impl UpHandle {
    /// The Core.
    pub fn core(&self) -> &CoreHandle {
        &self.core
    }

    /// The API server.
    pub fn http(&self) -> &HttpHandle {
        &self.http
    }

    /// The local node's counters.
    pub fn node_stats(&self) -> &NodeStats {
        &self.stats
    }

    /// A command that creates a first event, for the "try it" hint.
    pub fn try_it(&self) -> String {
        let host = |a: SocketAddr| {
            if a.ip().is_unspecified() { "127.0.0.1".to_string() } else { a.ip().to_string() }
        };
        if let Some(l) = self.listeners.iter().find(|l| l.plugin == "ssh") {
            return format!("ssh -p {} root@{}", l.addr.port(), host(l.addr));
        }
        if let Some(l) = self.listeners.iter().find(|l| l.transport == Transport::Tcp) {
            if l.plugin == "web" {
                return format!("curl http://{}:{}/", host(l.addr), l.addr.port());
            }
            return format!("nc {} {}", host(l.addr), l.addr.port());
        }
        String::new()
    }

    /// What `apiary up` prints: the dashboard URL, the listeners and the hint.
    pub fn banner(&self) -> String {
        let mut s = format!("apiary is up.\n\n  dashboard   {}\n", self.dashboard_url);
        s.push_str(&format!("  API token   {}  (admin; new on every start)\n", self.token));
        s.push_str(&format!("  node port   {} (TLS)", self.core_addr));
        if let Some(ca) = &self.ca_cert {
            s.push_str(&format!(", CA {}", ca.display()));
        }
        s.push_str("\n\n  honeypot services:\n");
        for l in &self.listeners {
            s.push_str(&format!(
                "    {:<14} {:<14} {}/{}\n",
                l.service,
                l.plugin,
                l.transport.as_str(),
                l.addr
            ));
        }
        let hint = self.try_it();
        if !hint.is_empty() {
            s.push_str(&format!("\n  try it:  {hint}   then watch the Live page\n"));
        }
        s.push_str("\nPress Ctrl-C to stop.\n");
        s
    }

    /// Stops the pot, the local node, the API and the Core, in that order.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.node.await;
        self.http.shutdown().await;
        self.core.shutdown().await;
    }
}

/// Starts everything; see the module documentation.
pub async fn run(cfg: UpConfig) -> Result<UpHandle, UpError> {
    let core_cfg = CoreConfig {
        listen: cfg.core_listen,
        data_dir: cfg.data_dir.clone(),
        database_url: cfg.database_url.clone(),
        transport: NodeTransport::Tls,
        heartbeat_interval: cfg.heartbeat,
        command_gap: Duration::from_millis(50),
        geoip: cfg.geoip.clone(),
        ..CoreConfig::default()
    };
    let core = Core::start(core_cfg).await?;
    let http_cfg = HttpConfig { listen: cfg.http_listen, ..HttpConfig::default() };
    let http = match super::start(&core, http_cfg).await {
        Ok(h) => h,
        Err(e) => {
            core.shutdown().await;
            return Err(e.into());
        }
    };
    match start_rest(&cfg, core, http).await {
        Ok(h) => Ok(h),
        Err(partial) => {
            let (e, core, http) = *partial;
            http.shutdown().await;
            core.shutdown().await;
            Err(e)
        }
    }
}

type Partial = (UpError, CoreHandle, HttpHandle);

async fn start_rest(
    cfg: &UpConfig,
    core: CoreHandle,
    http: HttpHandle,
) -> Result<UpHandle, Box<Partial>> {
    macro_rules! tryp {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Err(Box::new((e.into(), core, http))),
            }
        };
    }
    let token = tryp!(http.db().create_token(UP_TOKEN_NAME, Role::Admin, true).await);
    let store = core.store();
    tryp!(store.audit("apiary-up", "token.add", UP_TOKEN_NAME, crate::now_micros()).await);

    // The local node: enrolled once with TOTP, reused on later starts.
    let node = match tryp!(store.node_by_name(&cfg.node_name).await) {
        Some(n) if n.totp_secret.is_some() => n,
        Some(n) => {
            let secret = crate::enroll::new_secret().to_base32();
            tryp!(store.set_totp_secret(n.id, &secret).await);
            crate::NodeRecord { totp_secret: Some(secret), ..n }
        }
        None => {
            let e = tryp!(core.add_node(&cfg.node_name, EnrollKind::Totp).await);
            match tryp!(store.node_by_id(e.node_id).await) {
                Some(n) => n,
                None => {
                    return Err(Box::new((
                        UpError::Other("local node vanished after enrollment".into()),
                        core,
                        http,
                    )));
                }
            }
        }
    };
    let Some(secret) = node.totp_secret.clone() else {
        return Err(Box::new((UpError::Other("local node has no TOTP secret".into()), core, http)));
    };

    let services = cfg.services.clone().unwrap_or_else(default_services);
    let pot_cfg = PotConfig {
        name: cfg.pot_name.clone(),
        bind: cfg.pot_bind.clone(),
        ..PotConfig::default()
    };
    let cancel = CancellationToken::new();
    let stats = Arc::new(NodeStats::default());
    let ca = core.tls_files().map(|f| f.ca_cert.clone());
    let local = node::LocalNode::new(node::LocalNodeConfig {
        core_addr: loopback(core.local_addr()),
        ca: ca.clone(),
        name: cfg.node_name.clone(),
        node_id: node.id,
        secret,
        heartbeat: cfg.heartbeat,
        pot_cfg,
        stats: stats.clone(),
    });
    let (pot, listeners) = tryp!(local.bind_pot(&services).map_err(UpError::from));
    let services = rebound(&services, &listeners);
    let node_task = tokio::spawn(local.run(pot, services, cancel.clone()));

    let api_url = http.base_url();
    let url_host = loopback(http.local_addr());
    let dashboard_url = format!("http://{url_host}/#token={token}");
    Ok(UpHandle {
        core_addr: core.local_addr(),
        node_id: node.id,
        core,
        http,
        node: node_task,
        cancel,
        stats,
        token,
        dashboard_url,
        api_url,
        ca_cert: ca,
        listeners,
    })
}

/// A connectable address for a listener that may be bound to the unspecified address.
fn loopback(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        let ip = if a.is_ipv4() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
        };
        SocketAddr::new(ip, a.port())
    } else {
        a
    }
}

/// Services rebuilt from the addresses they are bound to, so a pot restart reuses the same
/// ports even when the first start asked the OS for free ones.
fn rebound(services: &[ServiceConfig], listeners: &[ListenerInfo]) -> Vec<ServiceConfig> {
    services
        .iter()
        .map(|s| {
            let mine: Vec<&ListenerInfo> =
                listeners.iter().filter(|l| l.service == s.name).collect();
            if mine.is_empty() {
                return s.clone();
            }
            let mut ports: Vec<PortSpec> = Vec::new();
            let mut bind: Vec<IpAddr> = Vec::new();
            for l in mine {
                let p = PortSpec { transport: l.transport, port: l.addr.port() };
                if !ports.contains(&p) {
                    ports.push(p);
                }
                if !bind.contains(&l.addr.ip()) {
                    bind.push(l.addr.ip());
                }
            }
            ServiceConfig { ports, bind: Some(bind), ..s.clone() }
        })
        .collect()
}
