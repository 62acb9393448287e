//! Python service scripts: one worker process per plugin multiplexes many sessions (an asyncio
//! task each). A supervisor thread restarts a worker that exits; a watchdog kills one that
//! stops answering pings (a plugin blocking its event loop). Sessions of a dead worker end with
//! an error; the Rust side only ever awaits channels, so nothing here can stall the runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc as tmpsc, oneshot};

use super::{Proc, frame, loaded_reply, spawn};
use crate::{DatagramOutcome, Limits, Output, ScriptError, SessionEnd, SessionInfo, SessionIo};

const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames waiting for the worker's stdin; when full, new requests fail instead of piling up.
const WRITE_QUEUE: usize = 4096;

/// A message for one session from the worker, or the news that the worker died.
#[derive(Debug)]
enum Msg {
    Frame(Value),
    Gone(String),
}

type DgramReply = Result<Value, ScriptError>;

struct Shared {
    python: String,
    path: PathBuf,
    load: Mutex<Value>,
    output: Output,
    limits: Limits,
    sessions: Mutex<HashMap<u64, tmpsc::UnboundedSender<Msg>>>,
    dgrams: Mutex<HashMap<u64, oneshot::Sender<DgramReply>>>,
    next_id: AtomicU64,
    writer: Mutex<Option<SyncSender<Vec<u8>>>>,
    child: Mutex<Option<Child>>,
    last_pong: Mutex<Instant>,
    stop: AtomicBool,
    has_handle: AtomicBool,
    has_datagram: AtomicBool,
    restarts: AtomicU64,
}

impl Shared {
    fn send(&self, v: &Value) -> Result<(), ScriptError> {
        let guard = self.writer.lock().map_err(|_| ScriptError::Worker("poisoned".into()))?;
        let Some(w) = guard.as_ref() else {
            return Err(ScriptError::Worker("the worker is not running".into()));
        };
        match w.try_send(frame::encode(v)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err(ScriptError::Worker("the worker is overloaded".into()))
            }
            Err(TrySendError::Disconnected(_)) => {
                Err(ScriptError::Worker("the worker is not running".into()))
            }
        }
    }

    fn fail_all(&self, reason: &str) {
        let sessions: Vec<_> = match self.sessions.lock() {
            Ok(mut m) => m.drain().map(|(_, tx)| tx).collect(),
            Err(_) => Vec::new(),
        };
        for tx in sessions {
            let _ = tx.send(Msg::Gone(reason.to_string()));
        }
        let dgrams: Vec<_> = match self.dgrams.lock() {
            Ok(mut m) => m.drain().map(|(_, tx)| tx).collect(),
            Err(_) => Vec::new(),
        };
        for tx in dgrams {
            let _ = tx.send(Err(ScriptError::Worker(reason.to_string())));
        }
    }
}

/// One life of the worker process: its reader and writer threads.
struct Generation {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

fn start_generation(shared: &Arc<Shared>) -> Result<Generation, ScriptError> {
    let Proc { mut child, mut stdin, mut stdout } = spawn(&shared.python)?;
    let (wtx, wrx) = mpsc::sync_channel::<Vec<u8>>(WRITE_QUEUE);
    let writer = std::thread::Builder::new().name("py-svc-writer".into()).spawn(move || {
        for bytes in wrx {
            if frame::write_to(&mut stdin, &bytes).is_err() {
                break;
            }
        }
    });
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ScriptError::Worker(format!("cannot start a thread: {e}")));
        }
    };
    let (ltx, lrx) = mpsc::channel();
    let sh = shared.clone();
    let reader = std::thread::Builder::new()
        .name("py-svc-reader".into())
        .spawn(move || read_loop(&mut stdout, &sh, ltx));
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ScriptError::Worker(format!("cannot start a thread: {e}")));
        }
    };
    let load = shared.load.lock().map(|l| l.clone()).unwrap_or(Value::Null);
    let _ = wtx.send(frame::encode(&load));
    let checked = match lrx.recv_timeout(LOAD_TIMEOUT) {
        Ok(reply) => loaded_reply(&shared.path, &reply).map(|()| reply),
        Err(_) => Err(ScriptError::Worker("the worker did not load the plugin".into())),
    };
    let reply = match checked {
        Ok(r) => r,
        Err(e) => {
            drop(wtx);
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            let _ = writer.join();
            return Err(e);
        }
    };
    let flag = |k: &str| reply.get(k).and_then(Value::as_bool).unwrap_or(false);
    shared.has_handle.store(flag("handle"), Ordering::Relaxed);
    shared.has_datagram.store(flag("datagram"), Ordering::Relaxed);
    if let Ok(mut p) = shared.last_pong.lock() {
        *p = Instant::now();
    }
    if let Ok(mut c) = shared.child.lock() {
        *c = Some(child);
    }
    if let Ok(mut w) = shared.writer.lock() {
        *w = Some(wtx);
    }
    Ok(Generation { reader, writer })
}

fn read_loop(stdout: &mut impl std::io::Read, shared: &Shared, loaded: mpsc::Sender<Value>) {
    let mut loaded = Some(loaded);
    while let Ok(msg) = frame::read_from(stdout) {
        let t = msg.get("t").and_then(Value::as_str).unwrap_or("");
        match t {
            "out" => {
                if let Some(s) = msg.get("s").and_then(Value::as_str) {
                    shared.output.write(s.as_bytes());
                }
            }
            "pong" => {
                if let Ok(mut p) = shared.last_pong.lock() {
                    *p = Instant::now();
                }
            }
            "loaded" => match loaded.take() {
                Some(tx) => {
                    let _ = tx.send(msg);
                }
                None => match loaded_reply(&shared.path, &msg) {
                    Ok(()) => {
                        tracing::info!(path = %shared.path.display(), "python plugin reloaded")
                    }
                    Err(e) => {
                        tracing::error!("python plugin reload failed, keeping the old code: {e}")
                    }
                },
            },
            "dgram_done" => {
                let id = msg.get("id").and_then(Value::as_u64).unwrap_or(u64::MAX);
                let tx = shared.dgrams.lock().ok().and_then(|mut m| m.remove(&id));
                if let Some(tx) = tx {
                    let _ = tx.send(Ok(msg));
                }
            }
            "rxreq" | "tx" | "log" | "end" => {
                let sid = msg.get("sid").and_then(Value::as_u64).unwrap_or(u64::MAX);
                let tx = shared.sessions.lock().ok().and_then(|mut m| {
                    if t == "end" { m.remove(&sid) } else { m.get(&sid).cloned() }
                });
                if let Some(tx) = tx {
                    let _ = tx.send(Msg::Frame(msg));
                }
            }
            _ => {}
        }
    }
}

fn supervise(shared: Arc<Shared>, mut generation: Generation) {
    loop {
        let _ = generation.reader.join();
        if let Ok(mut w) = shared.writer.lock() {
            *w = None;
        }
        let _ = generation.writer.join();
        let status = shared.child.lock().ok().and_then(|mut c| c.take()).map(|mut c| c.wait());
        let reason = match status {
            Some(Ok(s)) => format!("python worker exited ({s})"),
            _ => "python worker exited".to_string(),
        };
        shared.fail_all(&reason);
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        tracing::error!(path = %shared.path.display(), "{reason}; restarting it");
        shared.restarts.fetch_add(1, Ordering::Relaxed);
        let mut backoff = Duration::from_millis(100);
        generation = loop {
            std::thread::park_timeout(backoff);
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            match start_generation(&shared) {
                Ok(g) => break g,
                Err(e) => {
                    tracing::error!("python worker restart failed: {e}");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
    }
}

fn watchdog(shared: Arc<Shared>) {
    let timeout = shared.limits.worker_ping_timeout.max(Duration::from_millis(100));
    let every = timeout / 4;
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(every);
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        n += 1;
        if shared.send(&json!({"t": "ping", "n": n})).is_err() {
            continue;
        }
        let silent = shared.last_pong.lock().map(|p| p.elapsed()).unwrap_or_default();
        if silent > timeout {
            if let Ok(mut c) = shared.child.lock()
                && let Some(child) = c.as_mut()
            {
                tracing::error!(
                    path = %shared.path.display(),
                    "python worker did not answer for {silent:?} (a plugin is blocking); killing it"
                );
                let _ = child.kill();
            }
            if let Ok(mut p) = shared.last_pong.lock() {
                *p = Instant::now();
            }
        }
    }
}

/// A Python service plugin with its worker.
pub(crate) struct PyService {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyService").field("path", &self.shared.path).finish()
    }
}

impl PyService {
    /// Starts the worker and loads the plugin; blocks until the plugin is imported.
    pub(crate) fn start(
        path: &Path,
        python: &str,
        limits: &Limits,
        output: Output,
    ) -> Result<Self, ScriptError> {
        let load = json!({
            "t": "load",
            "path": path.to_string_lossy(),
            "hook": "service",
            "max_peers": limits.max_peers,
        });
        let shared = Arc::new(Shared {
            python: python.to_string(),
            path: path.to_path_buf(),
            load: Mutex::new(load),
            output,
            limits: limits.clone(),
            sessions: Mutex::new(HashMap::new()),
            dgrams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            writer: Mutex::new(None),
            child: Mutex::new(None),
            last_pong: Mutex::new(Instant::now()),
            stop: AtomicBool::new(false),
            has_handle: AtomicBool::new(false),
            has_datagram: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
        });
        let generation = start_generation(&shared)?;
        let mut threads = Vec::new();
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("py-svc-supervisor".into())
            .spawn(move || supervise(sh, generation))
            .and_then(|s| {
                threads.push(s);
                let sh = shared.clone();
                std::thread::Builder::new()
                    .name("py-svc-watchdog".into())
                    .spawn(move || watchdog(sh))
            });
        let service = Self { shared, threads };
        match spawned {
            Ok(w) => {
                let mut service = service;
                service.threads.push(w);
                Ok(service)
            }
            Err(e) => Err(ScriptError::Worker(format!("cannot start a thread: {e}"))),
        }
    }

    pub(crate) fn has_handle(&self) -> bool {
        self.shared.has_handle.load(Ordering::Relaxed)
    }

    pub(crate) fn has_datagram(&self) -> bool {
        self.shared.has_datagram.load(Ordering::Relaxed)
    }

    /// Times the worker was restarted.
    pub(crate) fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Asks the worker to import the file again; failures keep the old code and are logged.
    pub(crate) fn reload(&self) -> Result<(), ScriptError> {
        let load = self.shared.load.lock().map(|l| l.clone()).unwrap_or(Value::Null);
        self.shared.send(&load)
    }

    /// Runs one TCP session in the worker.
    pub(crate) async fn run_session(
        &self,
        io: &mut dyn SessionIo,
    ) -> Result<SessionEnd, ScriptError> {
        let sid = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = tmpsc::unbounded_channel();
        if let Ok(mut m) = self.shared.sessions.lock() {
            m.insert(sid, tx);
        }
        let mut guard = SessionGuard { shared: &self.shared, sid, armed: true };
        let info = io.info();
        self.shared.send(&json!({
            "t": "open",
            "sid": sid,
            "info": info_json(info),
        }))?;
        loop {
            let msg = match rx.recv().await {
                Some(Msg::Frame(v)) => v,
                Some(Msg::Gone(reason)) => {
                    guard.armed = false;
                    return Err(ScriptError::Worker(reason));
                }
                None => {
                    guard.armed = false;
                    return Err(ScriptError::Worker("the worker went away".into()));
                }
            };
            match msg.get("t").and_then(Value::as_str).unwrap_or("") {
                "rxreq" => {
                    let d = io.rx().await.map(|b| Value::String(B64.encode(&b)));
                    self.shared.send(&json!({"t": "rx", "sid": sid, "d": d}))?;
                }
                "tx" => {
                    let data = msg
                        .get("d")
                        .and_then(Value::as_str)
                        .and_then(|s| B64.decode(s).ok())
                        .unwrap_or_default();
                    let ok = io.tx(&data).await.is_ok();
                    self.shared.send(&json!({"t": "txd", "sid": sid, "ok": ok}))?;
                }
                "log" => {
                    let kind = msg.get("k").and_then(Value::as_str).unwrap_or("plugin.log");
                    let fields = match msg.get("f") {
                        Some(Value::Object(m)) => m.clone(),
                        _ => Map::new(),
                    };
                    io.log(kind, fields);
                }
                "end" => {
                    guard.armed = false;
                    return match msg.get("how").and_then(Value::as_str).unwrap_or("") {
                        "closed" => Ok(SessionEnd::Closed),
                        "peer_gone" => Ok(SessionEnd::PeerGone),
                        "error" => Err(ScriptError::Runtime(
                            msg.get("error").and_then(Value::as_str).unwrap_or("error").to_string(),
                        )),
                        _ => Ok(SessionEnd::Returned),
                    };
                }
                _ => {}
            }
        }
    }

    /// Runs `datagram(conn, data)` in the worker.
    pub(crate) async fn datagram(
        &self,
        info: &SessionInfo,
        data: &[u8],
    ) -> Result<DatagramOutcome, ScriptError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.shared.dgrams.lock() {
            m.insert(id, tx);
        }
        let sent = self.shared.send(&json!({
            "t": "dgram",
            "id": id,
            "info": info_json(info),
            "d": B64.encode(data),
        }));
        let waited = match sent {
            Ok(()) => tokio::time::timeout(self.shared.limits.worker_ping_timeout, rx).await,
            Err(e) => Ok(Ok(Err(e))),
        };
        if let Ok(mut m) = self.shared.dgrams.lock() {
            m.remove(&id);
        }
        let reply = match waited {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(ScriptError::Worker("the worker went away".into())),
            Err(_) => return Err(ScriptError::Worker("no answer for the datagram in time".into())),
        };
        if let Some(e) = reply.get("e").and_then(Value::as_str) {
            return Err(ScriptError::Runtime(e.to_string()));
        }
        let mut out = DatagramOutcome::default();
        for r in reply.get("r").and_then(Value::as_array).into_iter().flatten() {
            if let Some(b) = r.as_str().and_then(|s| B64.decode(s).ok()) {
                out.replies.push(Bytes::from(b));
            }
        }
        for l in reply.get("l").and_then(Value::as_array).into_iter().flatten() {
            let kind = l.get(0).and_then(Value::as_str).unwrap_or("plugin.log").to_string();
            let fields = match l.get(1) {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            out.logs.push((kind, fields));
        }
        Ok(out)
    }
}

impl Drop for PyService {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Ok(mut w) = self.shared.writer.lock() {
            *w = None;
        }
        if let Ok(mut c) = self.shared.child.lock()
            && let Some(child) = c.as_mut()
        {
            let _ = child.kill();
        }
        for t in self.threads.drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn info_json(info: &SessionInfo) -> Value {
    json!({
        "remote_host": info.remote_host,
        "remote_port": info.remote_port,
        "local_port": info.local_port,
        "session_id": info.session_id,
        "service": info.service,
    })
}

/// Unregisters a session and cancels its task in the worker if the Rust side gives up first
/// (the runtime's timeout dropped the future, or a send failed).
struct SessionGuard<'a> {
    shared: &'a Shared,
    sid: u64,
    armed: bool,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.shared.sessions.lock() {
            m.remove(&self.sid);
        }
        if self.armed {
            let _ = self.shared.send(&json!({"t": "cancel", "sid": self.sid}));
        }
    }
}
