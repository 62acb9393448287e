//! apiary's Core: the HoneyBee v2 node server, enrollment, durable commands and the event store.
//!
//! The binary calls [`Core::start`] with a [`CoreConfig`] and keeps the [`CoreHandle`]; the
//! REST layer uses the handle's query methods and [`CoreHandle::store`]. `apiary core node add`
//! calls [`enroll_offline`] (or [`CoreHandle::add_node`] in-process). Wire types live in
//! `apiary-proto`; this crate never defines one.

pub mod config;
pub mod enroll;
pub mod http;
mod server;
pub mod settings;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use apiary_event::{Event, Timestamp};
use apiary_proto::NodeCommandType;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{CoreConfig, EnrollmentMode, NodeTransport};
pub use enroll::{EnrollKind, Enrollment, NodeTrust};
pub use server::{Rejection, StatsSnapshot};
pub use settings::CoreSettings;
pub use store::{
    AuditRecord, CommandRecord, CommandStatus, Count, EventQuery, NodeCertRecord, NodeRecord,
    PotRecord, Store, StoreError, StoredEvent,
};
pub use tls::{NodeCert, TlsFiles};

pub use http::up;

use server::Shared;

/// Why the Core could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Certificates could not be created or loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A node name outside `[A-Za-z0-9._-]{1,64}`.
    #[error("invalid node name {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ -")]
    InvalidName(String),
    /// No such node.
    #[error("no node with id {0}")]
    NoSuchNode(i64),
    /// No node has that name.
    #[error("no node named {0:?}")]
    NoNodeNamed(String),
}

pub(crate) fn now_micros() -> i64 {
    Timestamp::now().as_micros()
}

pub(crate) fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Installs aws-lc-rs as the process's rustls provider (a no-op if one is installed); other
/// crates in the graph pull in ring, and rustls refuses to guess between the two.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The Core.
#[derive(Debug)]
pub struct Core;

impl Core {
    /// Opens the store, prepares TLS, binds the node port and starts serving.
    pub async fn start(cfg: CoreConfig) -> Result<CoreHandle, CoreError> {
        install_crypto_provider();
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| CoreError::DataDir {
            path: cfg.data_dir.display().to_string(),
            source,
        })?;
        let store = store::open(&cfg.store_url(), cfg.database_schema.as_deref()).await?;
        store.all_offline().await?;

        if cfg.mtls && cfg.transport != NodeTransport::Tls {
            return Err(CoreError::Tls(
                "mutual TLS needs the TLS-only transport (plain connections carry no certificate)"
                    .into(),
            ));
        }
        let (acceptor, tls_files) = match cfg.transport {
            NodeTransport::Plain => {
                tracing::warn!(
                    listen = %cfg.listen,
                    "PLAIN TCP node port: TOTP codes, secrets and events cross the network unencrypted; use only in a lab"
                );
                (None, None)
            }
            NodeTransport::Tls | NodeTransport::Both => {
                let (cert, key, files) = match &cfg.tls_cert {
                    Some((c, k)) => (c.clone(), k.clone(), None),
                    None => {
                        let files = tls::ensure_certificates(&cfg.tls_dir(), &cfg.tls_names)?;
                        if files.created {
                            tracing::info!(
                                ca = %files.ca_cert.display(),
                                cert = %files.server_cert.display(),
                                "created the node-port certificate; give nodes the CA file to trust"
                            );
                        }
                        (files.server_cert.clone(), files.server_key.clone(), Some(files))
                    }
                };
                if cfg.transport == NodeTransport::Both {
                    tracing::warn!(
                        "node port accepts TLS and PLAIN TCP; plain connections are unencrypted"
                    );
                }
                let client_ca = if cfg.mtls {
                    let ca = tls::ensure_certificates(&cfg.tls_dir(), &cfg.tls_names)?.ca_cert;
                    tracing::info!(
                        ca = %ca.display(),
                        "mutual TLS: nodes must present the certificate issued to them by this CA"
                    );
                    Some(ca)
                } else {
                    None
                };
                let config = tls::server_config(&cert, &key, client_ca.as_deref())?;
                (Some(TlsAcceptor::from(config)), files)
            }
        };
        if cfg.enrollment == EnrollmentMode::Open {
            tracing::warn!(
                "OPEN enrollment: any node name that connects is enrolled (trust on first use)"
            );
        }

        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| CoreError::Bind { addr: cfg.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| CoreError::Bind { addr: cfg.listen, source })?;
        tracing::info!(%local_addr, store = store.backend(), "node server listening");

        let cancel = CancellationToken::new();
        let (ingest_tx, ingest_rx) = mpsc::channel(cfg.ingest_queue.max(1));
        let (live_tx, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared::new(cfg, store, ingest_tx, live_tx, cancel.clone()));
        let tracker = TaskTracker::new();
        let stop_ingest = CancellationToken::new();
        let ingest_task =
            tokio::spawn(server::ingest(shared.clone(), ingest_rx, stop_ingest.clone()));
        let accept_task =
            tokio::spawn(server::serve(shared.clone(), listener, acceptor, tracker.clone()));
        Ok(CoreHandle {
            shared,
            local_addr,
            tls_files,
            tracker,
            accept_task,
            ingest_task,
            stop_ingest,
        })
    }
}

/// A running Core.
#[derive(Debug)]
pub struct CoreHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tls_files: Option<TlsFiles>,
    tracker: TaskTracker,
    accept_task: JoinHandle<()>,
    ingest_task: JoinHandle<()>,
    stop_ingest: CancellationToken,
}

impl CoreHandle {
    /// The bound node-port address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The generated certificate files, when the Core generated them.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls_files.as_ref()
    }

    /// The store, for the REST layer.
    pub fn store(&self) -> Arc<dyn Store> {
        self.shared.store.clone()
    }

    /// Counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The most recent refusals (bad registrations, malformed messages, timeouts), oldest first.
    pub fn recent_rejections(&self) -> Vec<Rejection> {
        self.shared.rejections()
    }

    /// Ids of nodes connected now.
    pub fn connected_nodes(&self) -> Vec<i64> {
        self.shared.connected()
    }

    /// Live events as they are stored (for SSE); slow receivers miss events (`Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.live_events.subscribe()
    }

    /// Enrolls a node (what `apiary core node add NAME` does).
    pub async fn add_node(&self, name: &str, kind: EnrollKind) -> Result<Enrollment, CoreError> {
        enroll::add_node(self.shared.store.as_ref(), name, kind).await
    }

    /// Queues a command for a node and wakes its connection; returns the command id. The
    /// command is delivered when the node is (or next gets) connected.
    pub async fn send_command(
        &self,
        node_id: i64,
        command: NodeCommandType,
    ) -> Result<i64, CoreError> {
        let store = &self.shared.store;
        if store.node_by_id(node_id).await?.is_none() {
            return Err(CoreError::NoSuchNode(node_id));
        }
        let now = now_micros();
        let id = store.enqueue_command(node_id, &command, now).await?;
        let detail = format!(
            "node {node_id} command {id} {}",
            serde_json::to_string(&command).unwrap_or_default()
        );
        store.audit("operator", "command.send", &detail, now).await?;
        self.shared.wake(node_id);
        Ok(id)
    }

    /// Issues node `name` a client certificate bound to its id (mutual TLS); an earlier one
    /// stops working at once.
    pub async fn issue_node_cert(&self, name: &str) -> Result<tls::NodeCert, CoreError> {
        issue_cert(self.shared.store.as_ref(), &self.shared.cfg, name).await
    }

    /// Removes a node record (its events stay).
    pub async fn delete_node(&self, node_id: i64) -> Result<bool, CoreError> {
        let store = &self.shared.store;
        let deleted = store.delete_node(node_id).await?;
        if deleted {
            store
                .audit("operator", "node.delete", &format!("node {node_id}"), now_micros())
                .await?;
        }
        Ok(deleted)
    }

    /// Stops accepting, closes every node connection, flushes queued events.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        let _ = self.accept_task.await;
        self.tracker.close();
        self.tracker.wait().await;
        self.stop_ingest.cancel();
        let _ = self.ingest_task.await;
    }
}

/// Issues node `name` a client certificate from the Core CA and binds it to its node id,
/// replacing any earlier one (which stops working at once). Works with or without a running
/// Core: the binding is in the store.
pub async fn issue_node_cert(cfg: &CoreConfig, name: &str) -> Result<tls::NodeCert, CoreError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| CoreError::DataDir {
        path: cfg.data_dir.display().to_string(),
        source,
    })?;
    let store = store::open(&cfg.store_url(), cfg.database_schema.as_deref()).await?;
    issue_cert(store.as_ref(), cfg, name).await
}

pub(crate) async fn issue_cert(
    store: &dyn Store,
    cfg: &CoreConfig,
    name: &str,
) -> Result<tls::NodeCert, CoreError> {
    let node =
        store.node_by_name(name).await?.ok_or_else(|| CoreError::NoNodeNamed(name.to_owned()))?;
    let cert = tls::issue_node_cert(
        &cfg.tls_dir(),
        &cfg.tls_names,
        node.id,
        name,
        cfg.node_cert_validity,
    )?;
    let record = store::NodeCertRecord {
        sha256: cert.sha256.clone(),
        not_before: Some(cert.not_before),
        not_after: Some(cert.not_after),
    };
    store.set_node_cert(node.id, &record, now_micros()).await?;
    let detail = format!("node {name} id {} sha256 {}", node.id, cert.sha256);
    store.audit("operator", "node.cert", &detail, now_micros()).await?;
    Ok(cert)
}

/// Enrolls a node without a running Core (opens the store named by `cfg` directly).
pub async fn enroll_offline(
    cfg: &CoreConfig,
    name: &str,
    kind: EnrollKind,
) -> Result<Enrollment, CoreError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| CoreError::DataDir {
        path: cfg.data_dir.display().to_string(),
        source,
    })?;
    let store = store::open(&cfg.store_url(), cfg.database_schema.as_deref()).await?;
    enroll::add_node(store.as_ref(), name, kind).await
}
