//! The Core session: connect, register (TOTP code or one-time token), heartbeat, take commands,
//! write pot reports and forwarded batches; on any failure wait (exponential backoff with
//! jitter) and start again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apiary_proto::totp::STEP_SECS;
use apiary_proto::wire::encode_node_message;
use apiary_proto::{
    ApiarySync, CoreMessage, NodeCommandType, NodeMessage, NodeRegistration, NodeStatus,
    NodeStatusUpdate, NodeType, TotpSecret, UnitStyle,
};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::conn::{Connector, Lines, write_all};
use crate::forward::ForwardReq;
use crate::state::{State, StateFile};

const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the node knows about its link to the Core.
#[derive(Debug, Default)]
pub struct LinkStatus {
    connected: AtomicBool,
    node_id: AtomicU64,
    registrations: AtomicU64,
    events_acked: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl LinkStatus {
    /// Whether a registered session is up now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    /// The Core-assigned id (0 before the first accepted registration).
    pub fn node_id(&self) -> u64 {
        self.node_id.load(Ordering::Relaxed)
    }
    /// Accepted registrations since start.
    pub fn registrations(&self) -> u64 {
        self.registrations.load(Ordering::Relaxed)
    }
    /// Events the Core confirmed stored.
    pub fn events_acked(&self) -> u64 {
        self.events_acked.load(Ordering::Relaxed)
    }
    /// Why the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
    fn fail(&self, why: &str) {
        let mut why = why.to_owned();
        // Under TLS 1.3 a refused client certificate shows only as an alert after the
        // handshake; name the likely cause instead of leaving the operator with "DecryptError".
        const CERT_ALERTS: [&str; 6] = [
            "DecryptError",
            "BadCertificate",
            "UnknownCA",
            "CertificateRequired",
            "CertificateUnknown",
            "AccessDenied",
        ];
        if why.contains("received fatal alert") && CERT_ALERTS.iter().any(|a| why.contains(a)) {
            why.push_str(
                " (the Core refused this node's TLS client certificate: with mtls on the Core, \
                 client_cert must be the one this Core issued to the node)",
            );
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(why);
        }
    }
}

/// How this registration proves the node's identity.
enum Credential {
    Code { code: String, step: u64 },
    Token(String),
}

/// Everything the session loop needs.
pub(crate) struct Client {
    pub(crate) name: String,
    pub(crate) connector: Connector,
    pub(crate) heartbeat: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) event_port: u16,
    pub(crate) secret: Option<TotpSecret>,
    pub(crate) token: Option<String>,
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) state_file: StateFile,
    pub(crate) forward_rx: mpsc::Receiver<ForwardReq>,
    pub(crate) commands: mpsc::Sender<NodeCommandType>,
    pub(crate) reports: mpsc::Receiver<NodeMessage>,
    pub(crate) status: Arc<LinkStatus>,
    pub(crate) cancel: CancellationToken,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn line(msg: &NodeMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_node_message(msg, UnitStyle::EmptyObject, &mut out);
    out
}

enum Ended {
    /// The node is stopping.
    Stop,
    /// The session failed; `registered` says whether it got as far as an accepted ack.
    Failed { why: String, registered: bool },
}

impl Client {
    /// Runs until cancelled.
    pub(crate) async fn run(mut self) {
        let mut attempt: u32 = 0;
        loop {
            let ended = self.session().await;
            self.status.connected.store(false, Ordering::Relaxed);
            match ended {
                Ended::Stop => return,
                Ended::Failed { why, registered } => {
                    warn!(core = %self.connector.target(), reason = %why, "Core session ended");
                    self.status.fail(&why);
                    if registered {
                        attempt = 0;
                    }
                }
            }
            let wait = self.backoff(attempt);
            attempt = attempt.saturating_add(1);
            debug!(?wait, "reconnecting after a pause");
            if !self.idle(wait).await {
                return;
            }
        }
    }

    /// Exponential backoff with "equal jitter": half fixed, half random.
    fn backoff(&self, attempt: u32) -> Duration {
        let base =
            self.reconnect_min.saturating_mul(1u32 << attempt.min(16)).min(self.reconnect_max);
        let half = base / 2;
        let jitter =
            rand::rng().random_range(0..=half.as_millis().min(u128::from(u64::MAX)) as u64);
        half + Duration::from_millis(jitter)
    }

    /// Waits `d` while refusing forward requests at once (the pipeline spools them); false if
    /// the node is stopping.
    async fn idle(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => return true,
                r = self.forward_rx.recv() => if r.is_none() { return false },
            }
        }
    }

    fn credential(&self) -> Result<Credential, String> {
        let (issued, last) = {
            let st = self.state.lock().map_err(|_| "state lock poisoned".to_owned())?;
            (st.totp_secret.clone(), st.last_step)
        };
        let secret = issued.as_deref().and_then(TotpSecret::from_base32).or(self.secret.clone());
        if let Some(secret) = secret {
            let now = unix_now() / STEP_SECS;
            // The Core accepts now ± 1 and refuses any step at or before the last one used, so
            // a quick reconnect uses the next step instead of waiting for the clock.
            let step = last
                .map_or(now.saturating_sub(1), |l| l.saturating_add(1).max(now.saturating_sub(1)));
            if step > now + 1 {
                return Err(format!(
                    "TOTP steps up to {} already used; waiting for the clock",
                    step - 1
                ));
            }
            return Ok(Credential::Code {
                code: format!("{:06}", secret.code_at_step(step)),
                step,
            });
        }
        match &self.token {
            Some(t) => Ok(Credential::Token(t.clone())),
            None => Err("no TOTP secret and no enrollment token configured".into()),
        }
    }

    fn save_state(&self, f: impl FnOnce(&mut State)) {
        let snapshot = match self.state.lock() {
            Ok(mut st) => {
                f(&mut st);
                st.clone()
            }
            Err(_) => return,
        };
        if let Err(e) = self.state_file.save(&snapshot) {
            warn!(file = %self.state_file.path().display(), error = %e, "cannot save node state");
        }
    }

    async fn session(&mut self) -> Ended {
        let failed = |why: String| Ended::Failed { why, registered: false };
        let cred = match self.credential() {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let io = tokio::select! {
            _ = self.cancel.cancelled() => return Ended::Stop,
            r = timeout(self.connect_timeout, self.connector.connect()) => match r {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => return failed(e),
                Err(_) => return failed(format!("no connection within {:?}", self.connect_timeout)),
            },
        };
        let (rd, mut wr) = tokio::io::split(io);
        let mut lines = Lines::new(rd);

        let claimed = {
            let id = self.state.lock().map(|s| s.node_id).unwrap_or(0);
            if id == 0 { rand::rng().random_range(1u64 << 32..u64::MAX) } else { id }
        };
        let code = match &cred {
            Credential::Code { code, .. } => code.clone(),
            Credential::Token(t) => t.clone(),
        };
        let reg = NodeMessage::NodeRegistration(NodeRegistration {
            node_id: claimed,
            node_name: self.name.clone(),
            address: "127.0.0.1".into(),
            port: self.event_port,
            node_type: NodeType::Full,
            totp_code: Some(code),
        });
        if let Err(e) = write_all(&mut wr, &line(&reg), WRITE_TIMEOUT).await {
            return failed(e);
        }
        let ack = match timeout(self.connect_timeout, lines.next()).await {
            Ok(Ok(Some(CoreMessage::RegistrationAck(a)))) => a,
            Ok(Ok(Some(_))) => return failed("the Core spoke before acknowledging".into()),
            Ok(Ok(None)) => return failed("the Core closed the connection".into()),
            Ok(Err(e)) => return failed(e),
            Err(_) => return failed("no RegistrationAck in time".into()),
        };
        if !ack.accepted {
            let reason = ack.message.unwrap_or_default();
            if let Credential::Code { step, .. } = cred
                && reason.contains("already used")
            {
                // Someone (most likely our previous run) used this step: skip past it.
                self.save_state(|s| s.last_step = Some(s.last_step.unwrap_or(0).max(step)));
            }
            return failed(format!("registration refused: {reason}"));
        }
        let node_id = ack.node_id;
        let issued = ack.totp_key.clone().filter(|k| TotpSecret::from_base32(k).is_some());
        self.save_state(|s| {
            s.node_id = node_id;
            if let Credential::Code { step, .. } = cred {
                s.last_step = Some(step);
            }
            if let Some(k) = issued {
                s.totp_secret = Some(k);
                // A new secret starts a new sequence of steps.
                s.last_step = None;
            }
        });
        self.status.node_id.store(node_id, Ordering::Relaxed);
        self.status.registrations.fetch_add(1, Ordering::Relaxed);
        self.status.connected.store(true, Ordering::Relaxed);
        info!(core = %self.connector.target(), node_id, "registered with the Core");

        let beat =
            |status| line(&NodeMessage::NodeStatusUpdate(NodeStatusUpdate { node_id, status }));
        // The first status update is what releases the Core's queued commands.
        if let Err(e) = write_all(&mut wr, &beat(NodeStatus::Running), WRITE_TIMEOUT).await {
            return Ended::Failed { why: e, registered: true };
        }

        let (msg_tx, mut msg_rx) = mpsc::channel::<Result<CoreMessage, String>>(64);
        let reader = tokio::spawn(async move {
            loop {
                let r = match lines.next().await {
                    Ok(Some(m)) => Ok(m),
                    Ok(None) => Err("the Core closed the connection".to_owned()),
                    Err(e) => Err(e),
                };
                let end = r.is_err();
                if msg_tx.send(r).await.is_err() || end {
                    return;
                }
            }
        });

        let mut pending: HashMap<u64, (oneshot::Sender<bool>, usize)> = HashMap::new();
        let mut seq: u64 = 0;
        let mut hb = tokio::time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    let mut bye = beat(NodeStatus::Stopped);
                    bye.extend_from_slice(&line(&NodeMessage::NodeDrop));
                    let _ = write_all(&mut wr, &bye, Duration::from_secs(2)).await;
                    reader.abort();
                    return Ended::Stop;
                }
                m = msg_rx.recv() => match m {
                    Some(Ok(CoreMessage::NodeCommand(c))) => {
                        debug!(command = c.command.name(), "command from the Core");
                        if self.commands.send(c.command).await.is_err() {
                            break "the pot manager stopped".to_owned();
                        }
                    }
                    Some(Ok(CoreMessage::ApiaryAck(a))) => {
                        if let Some((tx, n)) = pending.remove(&a.seq) {
                            if a.ok {
                                self.status.events_acked.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            let _ = tx.send(a.ok);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e,
                    None => break "reader stopped".to_owned(),
                },
                _ = hb.tick() => {
                    if let Err(e) = write_all(&mut wr, &beat(NodeStatus::Running), WRITE_TIMEOUT).await {
                        break e;
                    }
                }
                Some(report) = self.reports.recv() => {
                    if let Err(e) = write_all(&mut wr, &line(&report), WRITE_TIMEOUT).await {
                        break e;
                    }
                }
                Some(mut req) = self.forward_rx.recv() => {
                    seq += 1;
                    req.lines.extend_from_slice(&line(&NodeMessage::ApiarySync(ApiarySync { seq })));
                    if let Err(e) = write_all(&mut wr, &req.lines, WRITE_TIMEOUT).await {
                        break e;
                    }
                    pending.insert(seq, (req.reply, req.count));
                }
            }
        };
        reader.abort();
        // Dropping `pending` fails every batch still waiting: the pipeline keeps and resends.
        drop(pending);
        Ended::Failed { why, registered: true }
    }
}
