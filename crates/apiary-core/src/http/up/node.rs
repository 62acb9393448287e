//! The local node of `apiary up`: a HoneyBee v2 node in-process that registers with the Core
//! over TLS with TOTP, heartbeats, forwards its pot's events as `ApiaryEvent`s (deduplicated
//! by id in the store, so a resend after a reconnect is harmless) and answers pot commands by
//! really stopping, starting and inspecting its pot.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apiary_event::{Emit, Event, SharedEmit};
use apiary_pot::{ListenerInfo, Pot, PotConfig, PotError, PotHandle, PotStats, ServiceConfig};
use apiary_proto::wire::{decode_core_message, encode_node_message};
use apiary_proto::{
    CoreMessage, Frame, FrameDecoder, NodeCommandType, NodeEvent, NodeEventKind, NodeMessage,
    NodeRegistration, NodeStatus, NodeStatusUpdate, NodeType, PotStatus, PotStatusUpdate,
    TotpSecret, UnitStyle,
};
use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Events buffered between the pot and the Core connection; beyond it they are counted and
/// dropped (the pot must never wait for the network).
const EVENT_QUEUE: usize = 65_536;
/// Events written per write.
const EVENT_BATCH: usize = 512;
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// Counters of the local node.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Events written to the Core.
    pub events_forwarded: AtomicU64,
    /// Events dropped because the queue to the Core was full.
    pub events_dropped: AtomicU64,
    /// Successful registrations.
    pub registrations: AtomicU64,
    /// Commands received.
    pub commands: AtomicU64,
}

struct ChannelEmit {
    tx: mpsc::Sender<Event>,
    stats: Arc<NodeStats>,
}

impl Emit for ChannelEmit {
    fn emit(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(crate) struct LocalNodeConfig {
    pub(crate) core_addr: std::net::SocketAddr,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) name: String,
    pub(crate) node_id: i64,
    pub(crate) secret: String,
    pub(crate) heartbeat: Duration,
    pub(crate) pot_cfg: PotConfig,
    pub(crate) stats: Arc<NodeStats>,
}

pub(crate) struct LocalNode {
    cfg: LocalNodeConfig,
    emit: SharedEmit,
    rx: mpsc::Receiver<Event>,
    /// Read from the queue but not yet written (resent after a reconnect).
    unsent: Vec<Event>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    rd: ReadHalf<Box<dyn Io>>,
    wr: WriteHalf<Box<dyn Io>>,
    buf: BytesMut,
    dec: FrameDecoder,
}

/// The pot as the node runs it: stopped (`None`) or running.
struct PotSlot {
    handle: Option<PotHandle>,
    services: Vec<ServiceConfig>,
}

fn line(msg: &NodeMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_node_message(msg, UnitStyle::EmptyObject, &mut out);
    out
}

impl LocalNode {
    pub(crate) fn new(cfg: LocalNodeConfig) -> Self {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let emit: SharedEmit = Arc::new(ChannelEmit { tx, stats: cfg.stats.clone() });
        Self { cfg, emit, rx, unsent: Vec::new() }
    }

    /// Binds and starts the pot.
    pub(crate) fn bind_pot(
        &self,
        services: &[ServiceConfig],
    ) -> Result<(PotHandle, Vec<ListenerInfo>), PotError> {
        let pot = Pot::bind(&self.cfg.name, &self.cfg.pot_cfg, services, self.emit.clone())?;
        let listeners = pot.listeners();
        let handle = pot.start().map_err(|e| PotError::Service {
            service: self.cfg.pot_cfg.name.clone(),
            message: format!("cannot start: {e}"),
        })?;
        Ok((handle, listeners))
    }

    /// Stays connected to the Core (reconnecting with backoff) until `cancel`.
    pub(crate) async fn run(
        mut self,
        pot: PotHandle,
        services: Vec<ServiceConfig>,
        cancel: CancellationToken,
    ) {
        let mut slot = PotSlot { handle: Some(pot), services };
        let mut backoff = Duration::from_millis(500);
        while !cancel.is_cancelled() {
            match self.session(&mut slot, &cancel).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "local node lost the Core");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        if let Some(h) = slot.handle.take() {
            h.shutdown(Duration::from_secs(2)).await;
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let tcp = timeout(IO_TIMEOUT, TcpStream::connect(self.cfg.core_addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let io: Box<dyn Io> = match &self.cfg.ca {
            Some(ca) => Box::new(
                timeout(IO_TIMEOUT, tls_connect(tcp, ca)).await.map_err(|_| "TLS timed out")??,
            ),
            None => Box::new(tcp),
        };
        let (rd, wr) = tokio::io::split(io);
        Ok(Conn { rd, wr, buf: BytesMut::new(), dec: FrameDecoder::default() })
    }

    /// Connects and registers; tries the next TOTP step when the current one was used by a
    /// previous run within the same 30 s (the Core refuses replays).
    async fn register(&self) -> Result<Conn, String> {
        let secret = TotpSecret::from_base32(&self.cfg.secret)
            .ok_or("the local node's secret is unreadable")?;
        let mut last = String::new();
        for offset in [0u64, 30] {
            let mut conn = self.connect().await?;
            let now = crate::unix_secs() + offset;
            let reg = NodeMessage::NodeRegistration(NodeRegistration {
                node_id: u64::try_from(self.cfg.node_id).unwrap_or(0),
                node_name: self.cfg.name.clone(),
                address: "127.0.0.1".into(),
                port: 0,
                node_type: NodeType::Full,
                totp_code: Some(secret.code_at(now)),
            });
            write(&mut conn, &line(&reg)).await?;
            match read_message(&mut conn).await? {
                CoreMessage::RegistrationAck(ack) if ack.accepted => {
                    self.cfg.stats.registrations.fetch_add(1, Ordering::Relaxed);
                    return Ok(conn);
                }
                CoreMessage::RegistrationAck(ack) => last = ack.message.unwrap_or_default(),
                other => last = format!("unexpected {other:?}"),
            }
        }
        Err(format!("registration refused: {last}"))
    }

    async fn session(
        &mut self,
        slot: &mut PotSlot,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        let mut conn = self.register().await?;
        let id = u64::try_from(self.cfg.node_id).unwrap_or(0);
        write(&mut conn, &line(&status(id))).await?;
        write(&mut conn, &line(&self.pot_status(slot, None))).await?;
        let mut hb = tokio::time::interval(self.cfg.heartbeat);
        hb.tick().await;
        loop {
            if !self.unsent.is_empty() {
                let mut out = Vec::with_capacity(self.unsent.len() * 400);
                for e in &self.unsent {
                    out.extend_from_slice(&line(&NodeMessage::ApiaryEvent(Box::new(e.clone()))));
                }
                write(&mut conn, &out).await?;
                let n = self.unsent.len() as u64;
                self.cfg.stats.events_forwarded.fetch_add(n, Ordering::Relaxed);
                self.unsent.clear();
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = write(&mut conn, &line(&NodeMessage::NodeDrop)).await;
                    let _ = conn.wr.shutdown().await;
                    return Ok(());
                }
                _ = hb.tick() => write(&mut conn, &line(&status(id))).await?,
                n = self.rx.recv_many(&mut self.unsent, EVENT_BATCH) => {
                    if n == 0 {
                        return Err("event queue closed".into());
                    }
                }
                r = conn.rd.read_buf(&mut conn.buf) => {
                    match r {
                        Ok(0) => return Err("the Core closed the connection".into()),
                        Ok(_) => {}
                        Err(e) => return Err(format!("read: {e}")),
                    }
                    while let Some(frame) = conn.dec.decode(&mut conn.buf).map_err(|e| e.to_string())? {
                        let Frame::Value(bytes) = frame else { continue };
                        let Ok(msg) = decode_core_message(&bytes) else { continue };
                        if let CoreMessage::NodeCommand(c) = msg.message {
                            self.cfg.stats.commands.fetch_add(1, Ordering::Relaxed);
                            let replies = self.command(slot, c.command).await;
                            for r in replies {
                                write(&mut conn, &line(&r)).await?;
                            }
                        }
                    }
                }
            }
        }
    }

    fn pot_status(&self, slot: &PotSlot, message: Option<String>) -> NodeMessage {
        let status = if slot.handle.is_some() { PotStatus::Running } else { PotStatus::Stopped };
        self.pot_msg(status, message)
    }

    fn pot_msg(&self, status: PotStatus, message: Option<String>) -> NodeMessage {
        NodeMessage::PotStatusUpdate(PotStatusUpdate {
            node_id: u64::try_from(self.cfg.node_id).unwrap_or(0),
            pot_id: self.cfg.pot_cfg.name.clone(),
            pot_type: "honeypot".into(),
            status,
            message,
        })
    }

    fn describe(&self, slot: &PotSlot) -> String {
        match &slot.handle {
            Some(h) => {
                let l: Vec<String> = h
                    .listeners()
                    .iter()
                    .map(|l| format!("{} {}/{}", l.service, l.transport.as_str(), l.addr))
                    .collect();
                format!("running: {}", l.join(", "))
            }
            None => "stopped".into(),
        }
    }

    async fn start_pot(&self, slot: &mut PotSlot) -> Result<(), String> {
        if slot.handle.is_none() {
            let (h, _) = self.bind_pot(&slot.services).map_err(|e| e.to_string())?;
            slot.handle = Some(h);
        }
        Ok(())
    }

    async fn stop_pot(slot: &mut PotSlot) {
        if let Some(h) = slot.handle.take() {
            h.shutdown(Duration::from_secs(2)).await;
        }
    }

    /// Carries out a command; returns the messages that answer it.
    async fn command(&self, slot: &mut PotSlot, cmd: NodeCommandType) -> Vec<NodeMessage> {
        let id = u64::try_from(self.cfg.node_id).unwrap_or(0);
        let ours = |p: &str| p == self.cfg.pot_cfg.name;
        let failed = |p: &str, m: String| {
            NodeMessage::PotStatusUpdate(PotStatusUpdate {
                node_id: id,
                pot_id: p.to_owned(),
                pot_type: String::new(),
                status: PotStatus::Failed,
                message: Some(m),
            })
        };
        match cmd {
            NodeCommandType::GetInstalledPots => vec![self.pot_status(slot, Some(self.describe(slot)))],
            NodeCommandType::GetPotStatus(p) | NodeCommandType::GetPotInfo(p) if ours(&p) => {
                vec![self.pot_status(slot, Some(self.describe(slot)))]
            }
            NodeCommandType::GetPotMetrics(p) if ours(&p) => {
                let m = match &slot.handle {
                    Some(h) => {
                        let s = h.stats();
                        format!(
                            "accepted {}, refused {}, open sessions {}, datagrams {}, events forwarded {}, dropped {}",
                            PotStats::get(&s.accepted),
                            PotStats::get(&s.refused),
                            PotStats::get(&s.open_sessions),
                            PotStats::get(&s.datagrams),
                            self.cfg.stats.events_forwarded.load(Ordering::Relaxed),
                            self.cfg.stats.events_dropped.load(Ordering::Relaxed),
                        )
                    }
                    None => "stopped".into(),
                };
                vec![self.pot_status(slot, Some(m))]
            }
            NodeCommandType::GetPotLogs(p) if ours(&p) => vec![self.pot_status(
                slot,
                Some("the built-in pot keeps no separate log: its events are in the Core's store".into()),
            )],
            NodeCommandType::DeployPot(p) if ours(&p) => match self.start_pot(slot).await {
                Ok(()) => vec![self.pot_status(slot, Some(self.describe(slot)))],
                Err(e) => vec![failed(&p, e)],
            },
            NodeCommandType::StopPot(p) if ours(&p) => {
                Self::stop_pot(slot).await;
                vec![self.pot_status(slot, Some("stopped".into()))]
            }
            NodeCommandType::RestartPot(p) if ours(&p) => {
                Self::stop_pot(slot).await;
                match self.start_pot(slot).await {
                    Ok(()) => vec![self.pot_status(slot, Some(format!("restarted; {}", self.describe(slot))))],
                    Err(e) => vec![failed(&p, e)],
                }
            }
            NodeCommandType::Restart => {
                Self::stop_pot(slot).await;
                let mut out = Vec::new();
                if let Err(e) = self.start_pot(slot).await {
                    out.push(failed(&self.cfg.pot_cfg.name, e));
                }
                out.push(status(id));
                out
            }
            NodeCommandType::UpdateConfig => vec![NodeMessage::NodeEvent(NodeEvent {
                kind: NodeEventKind::Started,
                message: Some("configuration unchanged: apiary up has no configuration file".into()),
                description: None,
                flat: false,
            })],
            NodeCommandType::InstallPot(p) => vec![failed(
                &p.pot_id,
                "the local node of apiary up runs its one built-in pot; use apiary node to install others".into(),
            )],
            NodeCommandType::RemovePot(p) if ours(&p) => vec![failed(
                &p,
                "the built-in pot cannot be removed; StopPot stops it".into(),
            )],
            other => {
                let p = other.pot_id().unwrap_or_default().to_owned();
                vec![failed(&p, format!("no pot {p:?} on this node"))]
            }
        }
    }
}

fn status(id: u64) -> NodeMessage {
    NodeMessage::NodeStatusUpdate(NodeStatusUpdate { node_id: id, status: NodeStatus::Running })
}

async fn write(conn: &mut Conn, bytes: &[u8]) -> Result<(), String> {
    timeout(IO_TIMEOUT, async {
        conn.wr.write_all(bytes).await?;
        conn.wr.flush().await
    })
    .await
    .map_err(|_| "write timed out".to_string())?
    .map_err(|e| format!("write: {e}"))
}

async fn read_message(conn: &mut Conn) -> Result<CoreMessage, String> {
    timeout(IO_TIMEOUT, async {
        loop {
            if let Some(Frame::Value(v)) =
                conn.dec.decode(&mut conn.buf).map_err(|e| e.to_string())?
            {
                return decode_core_message(&v).map(|m| m.message).map_err(|e| e.to_string());
            }
            conn.buf.reserve(4096);
            match conn.rd.read_buf(&mut conn.buf).await {
                Ok(0) => return Err("the Core closed the connection".to_string()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    })
    .await
    .map_err(|_| "no answer from the Core".to_string())?
}

async fn tls_connect(
    tcp: TcpStream,
    ca: &std::path::Path,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    crate::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).map_err(|e| format!("CA {}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("CA {}: {e}", ca.display()))?;
        roots.add(cert).map_err(|e| format!("CA {}: {e}", ca.display()))?;
    }
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = ServerName::try_from("honeybee-manager").map_err(|e| e.to_string())?;
    connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))
}
