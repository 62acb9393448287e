//! The node server: accept, TLS, registration, then one reader loop, one writer task and one
//! command dispatcher per node.
//!
//! Architecture Invariant: no lock is held across socket I/O or a store call. The registry maps a
//! node id to a channel into that node's writer task; whoever wants to talk to a node sends on
//! the channel (HoneyBee's Core held its registry lock while awaiting the socket, so commands
//! stalled until the node next spoke).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_event::{Event, Timestamp};
use apiary_proto::wire::{decode_node_message, encode_core_message};
use apiary_proto::{
    ApiaryAck, CoreMessage, Frame, FrameDecoder, FrameError, NodeCommand, NodeCommandType,
    NodeEventKind, NodeMessage, NodeRegistration, PotStatus, RegistrationAck, UnitStyle, convert,
};
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, oneshot};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{CoreConfig, NodeTransport};
use crate::enroll::{AuthOutcome, authenticate};
use crate::store::{CommandStatus, ConnInfo, NodeRecord, PotRecord, Store, StoredEvent};
use crate::{now_micros, unix_secs};

/// Most recent rejections kept for operators (the audit log has them all).
const REJECTIONS_KEPT: usize = 256;
/// Commands awaiting an answer per connection, at most.
const OUTSTANDING_KEPT: usize = 256;
/// Outbound messages buffered per node.
const WRITER_QUEUE: usize = 64;

/// Counters of the node server.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// TCP connections accepted.
    pub(crate) connections: AtomicU64,
    /// Registrations accepted.
    pub(crate) registered: AtomicU64,
    /// Registrations refused.
    pub(crate) rejected: AtomicU64,
    /// Messages decoded after registration.
    pub(crate) messages: AtomicU64,
    /// Messages that were not JSON or not an envelope, or had bad fields.
    pub(crate) malformed: AtomicU64,
    /// Messages of an unknown type.
    pub(crate) unknown: AtomicU64,
    /// Envelopes whose version was not 2.
    pub(crate) other_version: AtomicU64,
    /// Connections closed because a message exceeded the cap.
    pub(crate) oversize: AtomicU64,
    /// Nodes disconnected for missing heartbeats.
    pub(crate) timed_out: AtomicU64,
    /// Events received from nodes.
    pub(crate) events_received: AtomicU64,
    /// Events newly stored.
    pub(crate) events_stored: AtomicU64,
    /// Events already stored (same id).
    pub(crate) events_duplicate: AtomicU64,
    /// Events lost because the store failed.
    pub(crate) events_dropped: AtomicU64,
    /// Commands written to nodes.
    pub(crate) commands_sent: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub connections: u64,
    pub registered: u64,
    pub rejected: u64,
    pub messages: u64,
    pub malformed: u64,
    pub unknown: u64,
    pub other_version: u64,
    pub oversize: u64,
    pub timed_out: u64,
    pub events_received: u64,
    pub events_stored: u64,
    pub events_duplicate: u64,
    pub events_dropped: u64,
    pub commands_sent: u64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            connections: g(&self.connections),
            registered: g(&self.registered),
            rejected: g(&self.rejected),
            messages: g(&self.messages),
            malformed: g(&self.malformed),
            unknown: g(&self.unknown),
            other_version: g(&self.other_version),
            oversize: g(&self.oversize),
            timed_out: g(&self.timed_out),
            events_received: g(&self.events_received),
            events_stored: g(&self.events_stored),
            events_duplicate: g(&self.events_duplicate),
            events_dropped: g(&self.events_dropped),
            commands_sent: g(&self.commands_sent),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Why something a node sent was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// When (microseconds).
    pub time: i64,
    /// The TCP peer.
    pub peer: String,
    /// The node name, when known.
    pub node: Option<String>,
    /// Whether the connection was closed for it.
    pub closed: bool,
    /// The reason.
    pub reason: String,
}

/// What connections hand the ingest task: events, and barriers that fire once every event
/// queued before them is committed (the answer to a node's `ApiarySync`).
// Events are nearly every item; boxing them would add an allocation per event.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Ingest {
    /// An event to store.
    Event(StoredEvent),
    /// Fires `true` when everything before it is stored, `false` if some of it was lost.
    Barrier(oneshot::Sender<bool>),
}

struct Live {
    conn: u64,
    wake: Arc<Notify>,
}

/// State shared by every task of the server.
pub(crate) struct Shared {
    pub(crate) cfg: CoreConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) stats: Stats,
    pub(crate) live_events: broadcast::Sender<Arc<Event>>,
    pub(crate) cancel: CancellationToken,
    ingest: mpsc::Sender<Ingest>,
    registry: Mutex<HashMap<i64, Live>>,
    rejections: Mutex<VecDeque<Rejection>>,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("listen", &self.cfg.listen).finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(
        cfg: CoreConfig,
        store: Arc<dyn Store>,
        ingest: mpsc::Sender<Ingest>,
        live_events: broadcast::Sender<Arc<Event>>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            cfg,
            store,
            stats: Stats::default(),
            live_events,
            cancel,
            ingest,
            registry: Mutex::new(HashMap::new()),
            rejections: Mutex::new(VecDeque::new()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Wakes a node's dispatcher if the node is connected.
    pub(crate) fn wake(&self, node_id: i64) {
        let wake = self.registry.lock().ok().and_then(|r| r.get(&node_id).map(|l| l.wake.clone()));
        if let Some(w) = wake {
            w.notify_one();
        }
    }

    /// Ids of connected nodes.
    pub(crate) fn connected(&self) -> Vec<i64> {
        let mut ids: Vec<i64> =
            self.registry.lock().map(|r| r.keys().copied().collect()).unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn rejections(&self) -> Vec<Rejection> {
        self.rejections.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }

    fn record_rejection(&self, peer: SocketAddr, node: Option<&str>, closed: bool, reason: &str) {
        if let Ok(mut r) = self.rejections.lock() {
            if r.len() >= REJECTIONS_KEPT {
                r.pop_front();
            }
            r.push_back(Rejection {
                time: now_micros(),
                peer: peer.to_string(),
                node: node.map(str::to_owned),
                closed,
                reason: reason.to_owned(),
            });
        }
    }

    async fn emit(&self, node_id: i64, event: Event) {
        bump(&self.stats.events_received);
        // Waiting here is the back-pressure: a slow store slows the node's reads, not memory.
        let _ =
            self.ingest.send(Ingest::Event(StoredEvent { node_id: Some(node_id), event })).await;
    }

    /// Answers a node's `ApiarySync` once everything it sent before is committed. The wait runs
    /// in its own task so the reader goes on reading.
    async fn sync(&self, seq: u64, replies: mpsc::Sender<Bytes>) {
        let (done_tx, done_rx) = oneshot::channel();
        let queued = self.ingest.send(Ingest::Barrier(done_tx)).await.is_ok();
        tokio::spawn(async move {
            let ok = queued && done_rx.await.unwrap_or(false);
            let mut line = Vec::with_capacity(64);
            let ack = CoreMessage::ApiaryAck(ApiaryAck { seq, ok });
            encode_core_message(&ack, UnitStyle::EmptyObject, &mut line);
            let _ = replies.send(Bytes::from(line)).await;
        });
    }
}

/// Any byte stream a node connection can run on (TCP or TLS over TCP).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Accepts connections until cancelled.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(shared.cfg.max_connections.max(1)));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (tcp, peer) = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => { backoff = Duration::from_millis(10); x }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        bump(&shared.stats.connections);
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tracker.spawn(async move {
            handle(shared, tcp, peer, acceptor).await;
            drop(permit);
        });
    }
}

struct Reader {
    rd: ReadHalf<Box<dyn Io>>,
    buf: BytesMut,
    dec: FrameDecoder,
}

enum ReadError {
    Frame(FrameError),
    Io,
}

impl Reader {
    /// The next frame, or `None` at end of stream. Cancel-safe: bytes read stay buffered.
    async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).map_err(ReadError::Frame)? {
                return Ok(Some(f));
            }
            self.buf.reserve(8 * 1024);
            let n = self.rd.read_buf(&mut self.buf).await.map_err(|_| ReadError::Io)?;
            if n == 0 {
                return Ok(None);
            }
        }
    }
}

fn ack_line(node_id: i64, accepted: bool, message: String, totp_key: Option<String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    let ack = RegistrationAck {
        node_id: u64::try_from(node_id).unwrap_or(0),
        accepted,
        message: Some(message),
        totp_key,
    };
    encode_core_message(&CoreMessage::RegistrationAck(ack), UnitStyle::EmptyObject, &mut out);
    out
}

async fn reject(
    shared: &Shared,
    wr: &mut WriteHalf<Box<dyn Io>>,
    peer: SocketAddr,
    node: Option<&NodeRecord>,
    reason: &str,
) {
    bump(&shared.stats.rejected);
    warn!(%peer, node = node.map(|n| n.name.as_str()), reason, "registration rejected");
    shared.record_rejection(peer, node.map(|n| n.name.as_str()), true, reason);
    let detail = format!("peer {peer} node {:?}: {reason}", node.map(|n| n.name.as_str()));
    if let Err(e) =
        shared.store.audit("node-server", "registration.rejected", &detail, now_micros()).await
    {
        warn!(error = %e, "audit write failed");
    }
    let line = ack_line(node.map_or(0, |n| n.id), false, reason.to_owned(), None);
    let _ = timeout(Duration::from_secs(2), async {
        wr.write_all(&line).await?;
        wr.flush().await?;
        wr.shutdown().await
    })
    .await;
}

/// The connection's byte stream and, under TLS, the SHA-256 of the client certificate the node
/// presented (verified against the Core CA by the handshake).
async fn open_stream(
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    deadline: Instant,
) -> Option<(Box<dyn Io>, Option<String>)> {
    let tls = match (shared.cfg.transport, &acceptor) {
        (NodeTransport::Plain, _) | (_, None) => false,
        (NodeTransport::Tls, Some(_)) => true,
        (NodeTransport::Both, Some(_)) => {
            let mut first = [0u8; 1];
            match timeout_at(deadline, tcp.peek(&mut first)).await {
                Ok(Ok(1)) => first[0] == 0x16,
                _ => return None,
            }
        }
    };
    if !tls {
        return Some((Box::new(tcp), None));
    }
    let acceptor = acceptor?;
    match timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => {
            let cert = s.get_ref().1.peer_certificates().and_then(|c| c.first());
            let fingerprint = cert.map(|c| crate::tls::cert_sha256(c.as_ref()));
            Some((Box::new(s), fingerprint))
        }
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            shared.record_rejection(peer, None, true, &format!("TLS handshake failed: {e}"));
            None
        }
        Err(_) => {
            shared.record_rejection(peer, None, true, "TLS handshake timed out");
            None
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
) {
    let deadline = Instant::now() + shared.cfg.registration_timeout;
    let Some((io, client_cert)) = open_stream(&shared, tcp, peer, acceptor, deadline).await else {
        return;
    };
    let (rd, mut wr) = tokio::io::split(io);
    let mut reader = Reader {
        rd,
        buf: BytesMut::with_capacity(8 * 1024),
        dec: FrameDecoder::new(shared.cfg.max_message),
    };

    let secs = shared.cfg.registration_timeout.as_secs_f32();
    let reg = match timeout_at(deadline, reader.next()).await {
        Err(_) => Err(format!("no NodeRegistration within {secs} s")),
        Ok(Ok(None)) => return,
        Ok(Err(ReadError::Io)) => return,
        Ok(Err(ReadError::Frame(e))) => {
            bump(&shared.stats.oversize);
            Err(e.to_string())
        }
        Ok(Ok(Some(Frame::Garbage { .. }))) => {
            Err("malformed JSON: expected a NodeRegistration envelope".into())
        }
        Ok(Ok(Some(Frame::Value(bytes)))) => match decode_node_message(&bytes) {
            Ok(inbound) => match inbound.message {
                NodeMessage::NodeRegistration(r) => Ok((r, inbound.style_hint)),
                other => {
                    Err(format!("first message must be NodeRegistration, got {}", other.name()))
                }
            },
            Err(e) => Err(e.to_string()),
        },
    };
    let (reg, _) = match reg {
        Ok(r) => r,
        Err(reason) => return reject(&shared, &mut wr, peer, None, &reason).await,
    };

    let outcome =
        match authenticate(shared.store.as_ref(), shared.cfg.enrollment, &reg, unix_secs()).await {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "store failed during registration");
                return reject(&shared, &mut wr, peer, None, "internal error, retry later").await;
            }
        };
    let (node, issued) = match outcome {
        AuthOutcome::Accepted { node, issued } => (node, issued),
        AuthOutcome::Rejected { node, reason } => {
            return reject(&shared, &mut wr, peer, node.as_ref(), &reason).await;
        }
    };
    if shared.cfg.mtls
        && let Err(reason) = check_client_cert(&shared, &node, client_cert.as_deref()).await
    {
        return reject(&shared, &mut wr, peer, Some(&node), &reason).await;
    }

    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Bytes>(WRITER_QUEUE);
    let wake = Arc::new(Notify::new());
    let duplicate = {
        let Ok(mut reg_map) = shared.registry.lock() else { return };
        match reg_map.entry(node.id) {
            std::collections::hash_map::Entry::Occupied(_) => true,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Live { conn, wake: wake.clone() });
                false
            }
        }
    };
    if duplicate {
        let reason = format!("node {:?} is already connected", node.name);
        return reject(&shared, &mut wr, peer, Some(&node), &reason).await;
    }

    run_session(shared.clone(), node.clone(), reg, issued, peer, conn, reader, wr, tx, rx, wake)
        .await;

    // Deregister only our own entry: a later connection may already own the id.
    if let Ok(mut reg_map) = shared.registry.lock()
        && reg_map.get(&node.id).is_some_and(|l| l.conn == conn)
    {
        reg_map.remove(&node.id);
    }
    if let Err(e) = shared.store.node_offline(node.id, now_micros()).await {
        warn!(error = %e, "store failed marking a node offline");
    }
    info!(node = %node.name, id = node.id, %peer, "node disconnected");
}

/// Mutual TLS: the certificate the node presented must be the one issued to this node id, so a
/// node holding a valid certificate still cannot register as another.
async fn check_client_cert(
    shared: &Shared,
    node: &NodeRecord,
    presented: Option<&str>,
) -> Result<(), String> {
    let Some(presented) = presented else {
        return Err(format!(
            "this Core requires a client certificate (mtls) and none was presented; give node \
             {:?} the client_cert and client_key issued at enrollment",
            node.name
        ));
    };
    match shared.store.node_cert(node.id).await {
        Ok(Some(bound)) if bound.sha256 == presented => {
            // The handshake lets a genuine certificate through whatever the time (see
            // `tls::client_verifier`); its window is checked here, where the node can be told.
            let now = now_micros() / 1_000_000;
            let fix = format!("issue a new one with `apiary core node cert {}`", node.name);
            match (bound.not_before, bound.not_after) {
                (Some(nb), _) if now < nb => Err(format!(
                    "the client certificate of node {:?} is not valid yet (valid from {}; check \
                     the clocks, or {fix})",
                    node.name,
                    utc(nb)
                )),
                (_, Some(na)) if now > na => Err(format!(
                    "the client certificate of node {:?} expired at {}; {fix}",
                    node.name,
                    utc(na)
                )),
                _ => Ok(()),
            }
        }
        Ok(Some(_)) => Err(format!(
            "the client certificate presented was not issued to node {:?} (id {})",
            node.name, node.id
        )),
        Ok(None) => Err(format!(
            "no client certificate was issued to node {:?}; run `apiary core node cert {}`",
            node.name, node.name
        )),
        Err(e) => {
            warn!(error = %e, "store failed checking a client certificate");
            Err("internal error, retry later".into())
        }
    }
}

/// Unix seconds as RFC 3339 UTC, for messages.
fn utc(secs: i64) -> String {
    apiary_event::Timestamp::from_micros(secs.saturating_mul(1_000_000)).to_string()
}

/// Commands written and not yet answered, oldest first.
type Outstanding = Arc<Mutex<VecDeque<(i64, NodeCommandType)>>>;

#[allow(clippy::too_many_arguments)]
async fn run_session(
    shared: Arc<Shared>,
    node: NodeRecord,
    reg: NodeRegistration,
    issued: Option<String>,
    peer: SocketAddr,
    conn: u64,
    mut reader: Reader,
    wr: WriteHalf<Box<dyn Io>>,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    wake: Arc<Notify>,
) {
    let name: Arc<str> = Arc::from(node.name.as_str());
    let info = ConnInfo {
        claimed_id: reg.node_id,
        address: reg.address.clone(),
        port: reg.port,
        node_type: reg.node_type.as_str().to_owned(),
        peer: peer.to_string(),
    };
    let now = now_micros();
    let store = &shared.store;
    let setup = async {
        store.node_connected(node.id, &info, now).await?;
        store.requeue_sent_commands(node.id).await
    };
    if let Err(e) = setup.await {
        warn!(error = %e, "store failed during registration");
        return;
    }
    bump(&shared.stats.registered);
    info!(node = %name, id = node.id, %peer, conn, "node registered");

    let session = shared.cancel.child_token();
    let writer = tokio::spawn(write_loop(wr, rx, shared.cfg.write_timeout, session.clone()));
    let ack = ack_line(node.id, true, "Registration successful".into(), issued);
    if tx.send(Bytes::from(ack)).await.is_err() {
        session.cancel();
        return;
    }

    // Unit style: the operator's override, else the empty object until the node shows serde.
    let forced = node.unit_style.as_deref().and_then(UnitStyle::parse);
    let bare = Arc::new(AtomicBool::new(forced == Some(UnitStyle::BareString)));
    let ready = Arc::new(Notify::new());
    let outstanding: Outstanding = Arc::new(Mutex::new(VecDeque::new()));
    let dispatcher = tokio::spawn(dispatch(
        shared.clone(),
        node.id,
        tx.clone(),
        wake,
        ready.clone(),
        outstanding.clone(),
        bare.clone(),
        session.clone(),
    ));
    // Kept for `ApiaryAck` replies; dropped with the session.
    let replies = tx;

    let mut last_status: Option<String> = None;
    let offline_after = shared.cfg.offline_after();
    loop {
        let next = tokio::select! {
            _ = session.cancelled() => break,
            r = timeout(offline_after, reader.next()) => r,
        };
        let frame = match next {
            Err(_) => {
                bump(&shared.stats.timed_out);
                warn!(node = %name, "missed heartbeats, marking offline");
                shared.record_rejection(peer, Some(&name), true, "missed heartbeats");
                break;
            }
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) | Ok(Err(ReadError::Io)) => break,
            Ok(Err(ReadError::Frame(e))) => {
                bump(&shared.stats.oversize);
                warn!(node = %name, error = %e, "closing connection");
                shared.record_rejection(peer, Some(&name), true, &e.to_string());
                break;
            }
        };
        let bytes = match frame {
            Frame::Value(b) => b,
            Frame::Garbage { len } => {
                bump(&shared.stats.malformed);
                let reason = format!("malformed JSON: skipped a {len}-byte line");
                debug!(node = %name, reason);
                shared.record_rejection(peer, Some(&name), false, &reason);
                continue;
            }
        };
        let inbound = match decode_node_message(&bytes) {
            Ok(i) => i,
            Err(e) => {
                // The documented rule: log, count, answer nothing, keep the connection.
                let counter = match e {
                    apiary_proto::DecodeError::UnknownMessage(_) => &shared.stats.unknown,
                    _ => &shared.stats.malformed,
                };
                bump(counter);
                debug!(node = %name, error = %e, "message refused");
                shared.record_rejection(peer, Some(&name), false, &e.to_string());
                continue;
            }
        };
        bump(&shared.stats.messages);
        if inbound.version != Some(apiary_proto::PROTOCOL_VERSION) {
            bump(&shared.stats.other_version);
        }
        if forced.is_none()
            && let Some(style) = inbound.style_hint
        {
            bare.store(style == UnitStyle::BareString, Ordering::Relaxed);
        }
        let now = Timestamp::now();
        match inbound.message {
            NodeMessage::NodeRegistration(_) => {
                bump(&shared.stats.malformed);
                shared.record_rejection(
                    peer,
                    Some(&name),
                    false,
                    "already registered; extra NodeRegistration ignored",
                );
            }
            NodeMessage::NodeStatusUpdate(s) => {
                let status = s.status.as_str().to_owned();
                if let Err(e) = shared.store.node_heartbeat(node.id, &status, now.as_micros()).await
                {
                    warn!(error = %e, "store failed recording a heartbeat");
                }
                if last_status.is_none() {
                    ready.notify_one();
                }
                if last_status.as_deref() != Some(status.as_str()) {
                    shared.emit(node.id, convert::node_status(&s, &name, now)).await;
                    last_status = Some(status);
                }
                resolve(
                    &shared,
                    &outstanding,
                    |c| matches!(c, NodeCommandType::Restart),
                    CommandStatus::Done,
                    Some(s.status.as_str()),
                )
                .await;
            }
            NodeMessage::NodeEvent(ev) => {
                let failed = ev.kind == NodeEventKind::Error;
                let text = ev.text().unwrap_or(ev.kind.as_str()).to_owned();
                shared.emit(node.id, convert::node_event(&ev, &name, now)).await;
                if failed {
                    resolve(&shared, &outstanding, |_| true, CommandStatus::Failed, Some(&text))
                        .await;
                } else {
                    resolve(
                        &shared,
                        &outstanding,
                        |c| {
                            matches!(
                                c,
                                NodeCommandType::Restart
                                    | NodeCommandType::UpdateConfig
                                    | NodeCommandType::GetInstalledPots
                            )
                        },
                        CommandStatus::Done,
                        Some(&text),
                    )
                    .await;
                }
            }
            NodeMessage::NodeDrop => {
                info!(node = %name, "node said goodbye");
                break;
            }
            NodeMessage::PotStatusUpdate(p) => {
                if p.is_event_carrier() {
                    shared.emit(node.id, convert::pot_status(&p, &name, now)).await;
                    continue;
                }
                let pot = PotRecord {
                    node_id: node.id,
                    pot_id: p.pot_id.clone(),
                    pot_type: p.pot_type.clone(),
                    status: p.status.as_str().to_owned(),
                    message: p.message.clone(),
                    updated: now.as_micros(),
                };
                if let Err(e) = shared.store.upsert_pot(&pot).await {
                    warn!(error = %e, "store failed recording a pot");
                }
                shared.emit(node.id, convert::pot_status(&p, &name, now)).await;
                let status = if p.status == PotStatus::Failed {
                    CommandStatus::Failed
                } else {
                    CommandStatus::Done
                };
                let text = format!(
                    "{}{}",
                    p.status,
                    p.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                );
                let pot_id = p.pot_id.clone();
                resolve(
                    &shared,
                    &outstanding,
                    move |c| {
                        c.pot_id() == Some(pot_id.as_str())
                            || matches!(c, NodeCommandType::GetInstalledPots)
                    },
                    status,
                    Some(&text),
                )
                .await;
            }
            NodeMessage::PotEvent(p) => {
                shared.emit(node.id, convert::pot_event_owned(p, &name, now)).await;
            }
            NodeMessage::ApiaryEvent(mut e) => {
                // The connection's identity wins over what the event claims.
                e.node = name.clone();
                shared.emit(node.id, *e).await;
            }
            NodeMessage::ApiarySync(sync) => {
                shared.sync(sync.seq, replies.clone()).await;
            }
            _ => {
                bump(&shared.stats.unknown);
            }
        }
    }
    session.cancel();
    let _ = dispatcher.await;
    let _ = writer.await;
}

/// Marks the oldest outstanding command matching `pred` as answered.
async fn resolve(
    shared: &Shared,
    outstanding: &Outstanding,
    pred: impl Fn(&NodeCommandType) -> bool,
    status: CommandStatus,
    result: Option<&str>,
) {
    let hit = outstanding.lock().ok().and_then(|mut q| {
        let i = q.iter().position(|(_, c)| pred(c))?;
        q.remove(i)
    });
    if let Some((id, _)) = hit
        && let Err(e) = shared.store.finish_command(id, status, result, now_micros()).await
    {
        warn!(error = %e, "store failed finishing a command");
    }
}

async fn write_loop(
    mut wr: WriteHalf<Box<dyn Io>>,
    mut rx: mpsc::Receiver<Bytes>,
    write_timeout: Duration,
    session: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = session.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        let ok = timeout(write_timeout, async {
            wr.write_all(&msg).await?;
            wr.flush().await
        })
        .await;
        if !matches!(ok, Ok(Ok(()))) {
            session.cancel();
            break;
        }
    }
    let _ = timeout(Duration::from_secs(1), wr.shutdown()).await;
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    shared: Arc<Shared>,
    node_id: i64,
    tx: mpsc::Sender<Bytes>,
    wake: Arc<Notify>,
    ready: Arc<Notify>,
    outstanding: Outstanding,
    bare: Arc<AtomicBool>,
    session: CancellationToken,
) {
    // Rule 5: nothing queued goes out before the node's first status update.
    tokio::select! {
        _ = ready.notified() => {}
        _ = session.cancelled() => return,
    }
    loop {
        let next = shared.store.next_pending_command(node_id).await;
        match next {
            Ok(Some(cmd)) => {
                let style = if bare.load(Ordering::Relaxed) {
                    UnitStyle::BareString
                } else {
                    UnitStyle::EmptyObject
                };
                let msg = CoreMessage::NodeCommand(NodeCommand {
                    node_id: u64::try_from(node_id).unwrap_or(0),
                    command: cmd.command.clone(),
                });
                let mut line = Vec::with_capacity(128);
                encode_core_message(&msg, style, &mut line);
                if let Err(e) = shared.store.mark_command_sent(cmd.id, now_micros()).await {
                    warn!(error = %e, "store failed marking a command sent");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                if tx.send(Bytes::from(line)).await.is_err() {
                    return;
                }
                bump(&shared.stats.commands_sent);
                if let Ok(mut q) = outstanding.lock() {
                    if q.len() >= OUTSTANDING_KEPT {
                        q.pop_front();
                    }
                    q.push_back((cmd.id, cmd.command));
                }
                // One at a time, paced, so a node reading one recv() per message keeps up.
                tokio::select! {
                    _ = tokio::time::sleep(shared.cfg.command_gap) => {}
                    _ = session.cancelled() => return,
                }
            }
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = session.cancelled() => return,
                }
            }
            Err(e) => {
                warn!(error = %e, "store failed reading the command queue");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = session.cancelled() => return,
                }
            }
        }
    }
}

/// Barriers waiting for batches to commit, and which batches have.
struct Barriers {
    /// (batches that must be committed, the barrier, events dropped when it was queued).
    waiting: VecDeque<(u64, oneshot::Sender<bool>, u64)>,
    /// Batches finished out of order, above the watermark.
    finished: BTreeSet<u64>,
    /// Every batch numbered below this is finished.
    watermark: u64,
}

impl Barriers {
    fn finish(&mut self, batch: u64, dropped_now: u64) {
        self.finished.insert(batch);
        while self.finished.remove(&self.watermark) {
            self.watermark += 1;
        }
        self.fire(dropped_now);
    }

    fn fire(&mut self, dropped_now: u64) {
        while self.waiting.front().is_some_and(|(needs, _, _)| *needs <= self.watermark) {
            if let Some((_, tx, dropped_then)) = self.waiting.pop_front() {
                // Events are only ever dropped when the store keeps failing at shutdown; any
                // drop since the barrier was queued may have been one of its events.
                let _ = tx.send(dropped_now == dropped_then);
            }
        }
    }
}

/// Moves events from connections to the store in batches and on to live subscribers.
///
/// Batches are numbered; a barrier waits for every batch up to the one holding the events
/// queued before it. SQLite writes one batch at a time, but two are in flight: the second's
/// rows (their JSON bodies) are built while the first is written, then it waits for the
/// writer; built after the write instead, they left the writer idle a fifth of the time.
/// PostgreSQL takes several at once. Event order across batches does not matter (ids
/// deduplicate, queries sort by time).
pub(crate) async fn ingest(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Ingest>,
    stop: CancellationToken,
) {
    let batch = shared.cfg.batch_for(shared.store.backend());
    let parallel = if shared.store.backend() == "postgres" { 4 } else { 2 };
    let mut in_flight: tokio::task::JoinSet<u64> = tokio::task::JoinSet::new();
    let mut barriers =
        Barriers { waiting: VecDeque::new(), finished: BTreeSet::new(), watermark: 0 };
    let mut next_batch: u64 = 0;
    let dropped = |s: &Shared| s.stats.events_dropped.load(Ordering::Relaxed);
    let mut items: Vec<Ingest> = Vec::with_capacity(batch);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut items, batch) => n,
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok(b) = done {
                    barriers.finish(b, dropped(&shared));
                }
                continue;
            }
            _ = stop.cancelled() => {
                // Drain what is already queued, then stop.
                while let Ok(i) = rx.try_recv() {
                    items.push(i);
                }
                usize::MAX
            }
        };
        let stopping = n == usize::MAX;
        if n == 0 {
            break;
        }
        let mut events = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            match item {
                Ingest::Event(e) => events.push(e),
                Ingest::Barrier(tx) => {
                    let needs = if events.is_empty() { next_batch } else { next_batch + 1 };
                    barriers.waiting.push_back((needs, tx, dropped(&shared)));
                }
            }
        }
        if !events.is_empty() {
            while in_flight.len() >= parallel {
                if let Some(Ok(b)) = in_flight.join_next().await {
                    barriers.finish(b, dropped(&shared));
                }
            }
            let number = next_batch;
            next_batch += 1;
            let shared = shared.clone();
            let stop = stop.clone();
            in_flight.spawn(async move {
                store_batch(&shared, events, &stop).await;
                number
            });
        }
        barriers.fire(dropped(&shared));
        if stopping {
            break;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        if let Ok(b) = done {
            barriers.finish(b, dropped(&shared));
        }
    }
}

/// Stores one batch. A failing store is retried with backoff for as long as the Core runs
/// (connections wait meanwhile, which slows nodes down instead of losing their events); only
/// once the Core is stopping are events given up, counted as dropped.
async fn store_batch(shared: &Shared, mut buf: Vec<StoredEvent>, stop: &CancellationToken) {
    if buf.is_empty() {
        return;
    }
    let total = buf.len() as u64;
    let mut backoff = Duration::from_millis(200);
    let mut tries_at_stop = 0;
    let result = loop {
        match shared.store.insert_events(&buf).await {
            Ok(new) => break Ok(new),
            Err(e) => {
                if stop.is_cancelled() {
                    tries_at_stop += 1;
                    if tries_at_stop >= 2 {
                        break Err(e);
                    }
                }
                warn!(error = %e, retry_in = ?backoff, "event insert failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    match result {
        Ok(new) => {
            shared.stats.events_stored.fetch_add(new, Ordering::Relaxed);
            shared.stats.events_duplicate.fetch_add(total.saturating_sub(new), Ordering::Relaxed);
        }
        Err(e) => {
            tracing::error!(error = %e, lost = total, "events lost: the store refused them");
            shared.stats.events_dropped.fetch_add(total, Ordering::Relaxed);
        }
    }
    if shared.live_events.receiver_count() > 0 {
        for se in buf.drain(..) {
            let _ = shared.live_events.send(Arc::new(se.event));
        }
    }
}
