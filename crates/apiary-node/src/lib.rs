//! apiary's node agent: connects to a Core (TLS verified by a CA file or a pinned
//! certificate), registers with a TOTP code or a one-time token, heartbeats, reconnects with
//! exponential backoff and jitter, runs pots on the Core's commands and forwards their events.
//!
//! Forwarding is a sink of the logger pipeline ([`apiary_sinks`]), so its disk spool keeps
//! events while the Core is away; a batch counts as delivered only when the Core confirms it
//! stored it (`ApiarySync` / `ApiaryAck`), and the Core's store keeps one copy per event id:
//! at-least-once on the wire, exactly once in the store.
//!
//! The binary calls [`Node::start`] with a [`NodeConfig`] (the `[node]` section) and keeps
//! the [`NodeHandle`].

mod client;
mod config;
mod conn;
mod forward;
mod pots;
mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_event::SharedEmit;
use apiary_proto::TotpSecret;
use apiary_sinks::{BatchConfig, Filter, Pipeline, SinkSpec, SpoolConfig};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use client::LinkStatus;
pub use config::NodeConfig;
pub use conn::pin_of_pem_file;
pub use pots::Reload;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is unusable.
    #[error("node configuration: {0}")]
    Config(String),
    /// TLS material could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The state directory could not be read or written.
    #[error("node state: {0}")]
    State(#[from] std::io::Error),
}

/// What the node needs besides its `[node]` section.
pub struct NodeOptions {
    /// The data directory (`state_dir` defaults to `<data_dir>/node`).
    pub data_dir: PathBuf,
    /// Local loggers that get the node's events too (the top-level `[[logger]]` tables).
    pub extra_sinks: Vec<SinkSpec>,
    /// Re-reads the configuration for the `UpdateConfig` command.
    pub reload: Option<Reload>,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("data_dir", &self.data_dir)
            .field("extra_sinks", &self.extra_sinks.len())
            .finish_non_exhaustive()
    }
}

/// The node agent.
#[derive(Debug)]
pub struct Node;

/// A running node.
pub struct NodeHandle {
    link: Arc<LinkStatus>,
    event_addr: Option<SocketAddr>,
    event_stats: Option<Arc<pots::events::SocketStats>>,
    state_dir: PathBuf,
    pipeline: Pipeline,
    pots_cancel: CancellationToken,
    client_cancel: CancellationToken,
    pots_task: JoinHandle<()>,
    client_task: JoinHandle<()>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("event_addr", &self.event_addr)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn read_secret_file(path: &Path) -> Result<String, NodeError> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > 4096 {
        return Err(NodeError::Config(format!(
            "{} is too large for a TOTP secret",
            path.display()
        )));
    }
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

impl Node {
    /// Checks the configuration, restores the saved identity and pots, and starts the Core
    /// session, the pot manager, the event socket and the forwarding pipeline.
    pub async fn start(cfg: NodeConfig, opts: NodeOptions) -> Result<NodeHandle, NodeError> {
        let errs = cfg.validate();
        if !errs.is_empty() {
            return Err(NodeError::Config(errs.join("; ")));
        }
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let state_dir = cfg.state_dir.clone().unwrap_or_else(|| opts.data_dir.join("node"));
        let state_file = state::StateFile::new(&state_dir)?;
        let state = state_file.load()?;
        let secret_text = match (&cfg.totp_secret, &cfg.totp_secret_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(p)) => Some(read_secret_file(p)?),
            (None, None) => None,
        };
        let secret = match secret_text {
            Some(s) => Some(
                TotpSecret::from_base32(&s)
                    .ok_or_else(|| NodeError::Config("the TOTP secret is not base32".into()))?,
            ),
            None => None,
        };
        if secret.is_none() && cfg.token.is_none() && state.totp_secret.is_none() {
            return Err(NodeError::Config(
                "no credential: set totp_secret, totp_secret_file or token (from `apiary core node add`)"
                    .into(),
            ));
        }
        let connector = conn::Connector::new(&cfg)?;
        let node_name: Arc<str> = Arc::from(cfg.name.as_str());

        let (forward_tx, forward_rx) = mpsc::channel(4);
        let mut specs = vec![SinkSpec {
            name: "core".into(),
            sink: Box::new(forward::CoreSink {
                tx: forward_tx,
                ack_timeout: Duration::from_secs(60),
            }),
            filter: Filter::default(),
            batch: BatchConfig {
                queue: 131_072,
                max_events: cfg.batch,
                linger: Duration::from_millis(5),
                send_timeout: Duration::from_secs(90),
                slow_after: Duration::from_secs(2),
                max_backoff: Duration::from_secs(5),
            },
            spool: SpoolConfig {
                dir: Some(state_dir.join("spool")),
                max_bytes: cfg.spool_max_bytes,
                sync_interval: Duration::from_secs(1),
            },
            rate_limit: None,
        }];
        specs.extend(opts.extra_sinks);
        let pipeline = Pipeline::start(specs);
        let emit: SharedEmit = Arc::new(pipeline.emitter());

        let pots_cancel = CancellationToken::new();
        let client_cancel = CancellationToken::new();
        let externals = pots::ExternalRegistry::default();
        let (event_addr, event_stats) = match pots::events::bind(cfg.event_port).await {
            Ok(l) => {
                let s = pots::EventSocket::serve(
                    l,
                    node_name.clone(),
                    emit.clone(),
                    externals.clone(),
                    cfg.max_event_line,
                    pots_cancel.clone(),
                )?;
                (Some(s.addr), Some(s.stats))
            }
            Err(e) => {
                tracing::warn!(port = cfg.event_port, error = %e, "event socket not listening; external pots cannot run");
                (None, None)
            }
        };

        let state = Arc::new(Mutex::new(state));
        let link = Arc::new(LinkStatus::default());
        let (cmd_tx, mut cmd_rx) = mpsc::channel(256);
        let (report_tx, report_rx) = mpsc::channel(1024);
        let mut manager = pots::Pots::new(
            pots::PotEnv {
                node: node_name.clone(),
                emit,
                allow_programs: cfg.allow_programs.clone(),
                event_port: event_addr.map(|a| a.port()),
                externals,
                work_dir: state_dir.join("pots"),
            },
            state.clone(),
            state_file.clone(),
            opts.reload,
            link.clone(),
        );
        let pc = pots_cancel.clone();
        let pots_task = tokio::spawn(async move {
            manager.restore().await;
            loop {
                let cmd = tokio::select! {
                    _ = pc.cancelled() => break,
                    c = cmd_rx.recv() => match c { Some(c) => c, None => break },
                };
                for report in manager.handle(cmd).await {
                    if report_tx.try_send(report).is_err() {
                        tracing::warn!("report queue full; a command result was not sent");
                    }
                }
            }
            manager.shutdown().await;
        });

        let client = client::Client {
            name: cfg.name.clone(),
            connector,
            heartbeat: cfg.heartbeat,
            connect_timeout: cfg.connect_timeout,
            reconnect_min: cfg.reconnect_min,
            reconnect_max: cfg.reconnect_max,
            event_port: event_addr.map_or(0, |a| a.port()),
            secret,
            token: cfg.token.clone(),
            state,
            state_file,
            forward_rx,
            commands: cmd_tx,
            reports: report_rx,
            status: link.clone(),
            cancel: client_cancel.clone(),
        };
        let client_task = tokio::spawn(client.run());
        Ok(NodeHandle {
            link,
            event_addr,
            event_stats,
            state_dir,
            pipeline,
            pots_cancel,
            client_cancel,
            pots_task,
            client_task,
        })
    }
}

impl NodeHandle {
    /// The link to the Core.
    pub fn link(&self) -> &LinkStatus {
        &self.link
    }

    /// Where external pots send events (127.0.0.1), if the socket is listening.
    pub fn event_addr(&self) -> Option<SocketAddr> {
        self.event_addr
    }

    /// Lines the event socket took as events, and lines it skipped (not JSON objects, too
    /// long).
    pub fn event_socket_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.event_stats
            .as_ref()
            .map_or((0, 0), |s| (s.lines.load(Relaxed), s.skipped.load(Relaxed)))
    }

    /// Where the node keeps its identity, pots and spool.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Counters of the forwarding pipeline (`core` first, then local loggers).
    pub fn pipeline_stats(&self) -> Vec<(String, apiary_sinks::StatsSnapshot)> {
        self.pipeline.stats()
    }

    /// Stops the pots (their last events are queued), gives the pipeline `grace` to deliver
    /// (what it cannot stays in the spool for the next start), then says goodbye to the Core.
    pub async fn shutdown(self, grace: Duration) -> Vec<(String, apiary_sinks::StatsSnapshot)> {
        self.pots_cancel.cancel();
        let _ = self.pots_task.await;
        let stats = self.pipeline.shutdown(grace).await;
        self.client_cancel.cancel();
        let _ = self.client_task.await;
        stats
    }
}
