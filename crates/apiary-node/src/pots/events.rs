//! The event socket on 127.0.0.1 (HoneyBee's 9100): external pots write one JSON object per
//! line; each becomes a `pot.event`. Lines are capped, connections are capped and time out
//! when idle, and a line that is not a JSON object is skipped and counted.
//!
//! Any local process can write here (as with HoneyBee); events are attributed to the pot named
//! by `apiary_pot_id` / `honeybee_honeypot_id` / `sensor` when that names a running external
//! pot, else to the only running external pot, else to `unknown`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_event::{SharedEmit, Timestamp};
use apiary_proto::PotEvent;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::lines::{CappedLines, Line};

const MAX_CONNECTIONS: usize = 64;
const IDLE: Duration = Duration::from_secs(600);

/// Running external pots, for attribution.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExternalRegistry(Arc<Mutex<Vec<String>>>);

impl ExternalRegistry {
    pub(crate) fn add(&self, id: &str) {
        if let Ok(mut v) = self.0.lock()
            && !v.iter().any(|x| x == id)
        {
            v.push(id.to_owned());
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|x| x != id);
        }
    }

    fn attribute(&self, obj: &Map<String, Value>) -> String {
        let Ok(v) = self.0.lock() else { return "unknown".into() };
        for key in ["apiary_pot_id", "honeybee_honeypot_id", "sensor"] {
            if let Some(name) = obj.get(key).and_then(Value::as_str)
                && v.iter().any(|x| x == name)
            {
                return name.to_owned();
            }
        }
        match v.as_slice() {
            [only] => only.clone(),
            _ => "unknown".into(),
        }
    }
}

/// Counters of the event socket.
#[derive(Debug, Default)]
pub(crate) struct SocketStats {
    pub(crate) lines: AtomicU64,
    pub(crate) skipped: AtomicU64,
}

/// The bound socket.
pub(crate) struct EventSocket {
    pub(crate) addr: SocketAddr,
    pub(crate) stats: Arc<SocketStats>,
}

/// Binds 127.0.0.1:`port`; 9100 means the first free port of 9100 to 9199, as HoneyBee does.
pub(crate) async fn bind(port: u16) -> std::io::Result<TcpListener> {
    if port != 9100 {
        return TcpListener::bind(("127.0.0.1", port)).await;
    }
    let mut last = None;
    for p in 9100..=9199u16 {
        match TcpListener::bind(("127.0.0.1", p)).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port in 9100-9199")))
}

impl EventSocket {
    /// Serves `listener` until `cancel`.
    pub(crate) fn serve(
        listener: TcpListener,
        node: Arc<str>,
        emit: SharedEmit,
        registry: ExternalRegistry,
        max_line: usize,
        cancel: CancellationToken,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let stats = Arc::new(SocketStats::default());
        let st = stats.clone();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (sock, _) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "event socket accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (node, emit, registry, st, cancel) =
                    (node.clone(), emit.clone(), registry.clone(), st.clone(), cancel.clone());
                tokio::spawn(async move {
                    let mut lines = CappedLines::new(sock, max_line);
                    loop {
                        let next = tokio::select! {
                            _ = cancel.cancelled() => break,
                            n = tokio::time::timeout(IDLE, lines.next()) => n,
                        };
                        match next {
                            Err(_) | Ok(None) => break,
                            Ok(Some(Line::Text(line))) => {
                                if handle_line(&line, &node, &emit, &registry) {
                                    st.lines.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    st.skipped.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Ok(Some(Line::TooLong)) => {
                                st.skipped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        Ok(Self { addr, stats })
    }
}

/// Turns one line into a `pot.event`; false when it is not a JSON object.
fn handle_line(
    line: &str,
    node: &Arc<str>,
    emit: &SharedEmit,
    registry: &ExternalRegistry,
) -> bool {
    let line = line.trim();
    if line.is_empty() {
        return true;
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    let pot_id = registry.attribute(&obj);
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let ev = PotEvent {
        pot_id,
        event: text("eventid").or_else(|| text("event_type")).or_else(|| text("event")),
        message: text("message"),
        pot_type: text("honeybee_honeypot_type"),
        data: Some(obj),
        ..PotEvent::default()
    };
    // Receive time: a pot's clock is not trusted for ordering.
    emit.emit(apiary_proto::convert::pot_event(&ev, node, Timestamp::now()));
    true
}
