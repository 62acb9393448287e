//! The Core's operator surfaces: the REST API (JSON, token auth with roles), the server-sent
//! events stream of live events, the embedded web dashboard, `apiary up`, and the typed client
//! `apiary ctl` uses.
//!
//! [`start`] serves the API next to a running [`CoreHandle`](crate::CoreHandle). The layer
//! keeps its own connection pool to the Core's database (tokens, rollups and the event
//! search queries live in `db.rs`), writes operator actions to the Core's audit log through
//! [`Store::audit`](crate::Store::audit), and never touches the node server's internals beyond
//! the shared state the handle already exposes.

mod api;
mod assets;
pub mod auth;
pub mod client;
pub mod db;
pub mod geo;
mod qr;
mod sse;
pub mod up;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::CoreHandle;
use crate::server::Shared;

pub use auth::{Principal, Role};
pub use db::{Db, EventFilter, EventPage};

/// Why the HTTP layer could not start or an offline operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The Core's store failed.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A bad argument (token name, role, URL).
    #[error("{0}")]
    Invalid(String),
}

/// How the API listens and what it serves.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where the API and dashboard listen (HoneyBee-Enhanced used 5100). Plain HTTP: keep it on
    /// loopback or put a TLS reverse proxy in front; a non-loopback address is logged loudly.
    pub listen: SocketAddr,
    /// Serve the embedded dashboard at `/` (the API is always served under `/api/v1`).
    pub dashboard: bool,
    /// Longest a command-result request may wait (`GET /api/v1/commands/{id}?wait=`).
    pub max_wait: Duration,
    /// Live-stream clients served at once; more get 503.
    pub max_streams: usize,
    /// Keep the stats rollups up to date in the background every this often (SQLite).
    pub rollup_interval: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5100)),
            dashboard: true,
            max_wait: Duration::from_secs(30),
            max_streams: 64,
            rollup_interval: Duration::from_secs(2),
        }
    }
}

/// A running API server.
#[derive(Debug)]
pub struct HttpHandle {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    server: JoinHandle<()>,
    rollup: JoinHandle<()>,
    db: Db,
}

impl HttpHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR` of the API and dashboard.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The HTTP layer's database access (tokens, search, stats), for tools and tests.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Stops serving: live streams end, in-flight requests finish.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.server.await;
        let _ = self.rollup.await;
        self.db.close().await;
    }
}

/// Shared by every request.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) core: Arc<Shared>,
    pub(crate) db: Db,
    pub(crate) cfg: HttpConfig,
    pub(crate) cancel: CancellationToken,
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
    /// The node port as bound (the configured one may be 0).
    pub(crate) node_port: u16,
}

/// Serves the API (and the dashboard) for `core` until [`HttpHandle::shutdown`].
pub async fn start(core: &CoreHandle, cfg: HttpConfig) -> Result<HttpHandle, HttpError> {
    let shared = core.shared.clone();
    // A configured GeoIP database that cannot be read stops the start: the operator asked
    // for the map, so a typo must not silently drop it.
    let geo = match &shared.cfg.geoip {
        Some(path) => Some(Arc::new(geo::GeoIp::open(path)?)),
        None => None,
    };
    let db = Db::open(&shared.cfg.store_url(), shared.cfg.database_schema.as_deref())
        .await?
        .with_geoip(geo);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| HttpError::Bind { addr: cfg.listen, source })?;
    let local_addr =
        listener.local_addr().map_err(|source| HttpError::Bind { addr: cfg.listen, source })?;
    if !local_addr.ip().is_loopback() {
        tracing::warn!(
            %local_addr,
            "the API listens beyond loopback over PLAIN HTTP: tokens cross the network in clear; \
             put a TLS reverse proxy in front"
        );
    }
    let cancel = CancellationToken::new();
    let state = Arc::new(AppState {
        core: shared,
        db: db.clone(),
        streams: Arc::new(tokio::sync::Semaphore::new(cfg.max_streams.max(1))),
        cfg: cfg.clone(),
        cancel: cancel.clone(),
        node_port: core.local_addr().port(),
    });
    let router = api::router(state.clone());
    let stop = cancel.clone();
    let server = tokio::spawn(async move {
        let res = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "API server failed");
        }
    });
    let rollup = tokio::spawn(db::rollup_loop(db.clone(), cfg.rollup_interval, cancel.clone()));
    tracing::info!(%local_addr, "API and dashboard listening");
    Ok(HttpHandle { local_addr, cancel, server, rollup, db })
}

/// Creates an API token for `name` with `role` without a running Core (what
/// `apiary core user add NAME --role ROLE` does); returns the token, shown once.
pub async fn add_user_offline(
    cfg: &crate::CoreConfig,
    name: &str,
    role: Role,
) -> Result<String, HttpError> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| HttpError::Invalid(format!("data directory: {e}")))?;
    // The Core's own tables must exist before ours refer to `events`.
    let store = crate::store::open(&cfg.store_url(), cfg.database_schema.as_deref()).await?;
    let db = Db::open(&cfg.store_url(), cfg.database_schema.as_deref()).await?;
    let token = db.create_token(name, role, false).await?;
    store
        .audit("cli", "token.add", &format!("{name} ({})", role.as_str()), crate::now_micros())
        .await?;
    db.close().await;
    Ok(token)
}
