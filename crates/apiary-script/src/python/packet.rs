//! Python packet receivers: records go to the worker in batches over its stdin with a small
//! window of batches in flight; a worker that dies is restarted and its in-flight records are
//! counted as lost.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, ChildStdin};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Proc, frame, loaded_reply, spawn};
use crate::packet::{BatchReport, PacketOptions, Queue, RECORD_KEYS, Record, Shared};
use crate::{Output, ScriptError};

/// Batches sent but not yet acknowledged; bounds the memory the worker's pipe can hold.
const WINDOW: usize = 4;
/// How long a plugin's top-level code may take to import.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct InflightState {
    batches: VecDeque<(u64, u64)>,
    dead: bool,
}

#[derive(Default)]
struct Inflight {
    state: Mutex<InflightState>,
    cv: Condvar,
}

/// One life of the worker process.
struct Generation {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<JoinHandle<()>>,
    inflight: Arc<Inflight>,
}

impl Generation {
    fn start(
        python: &str,
        load: &Value,
        path: &Path,
        output: &Output,
        shared: &Arc<Shared>,
    ) -> Result<(bool, Self), ScriptError> {
        let Proc { child, mut stdin, mut stdout } = spawn(python)?;
        let inflight = Arc::new(Inflight::default());
        let (loaded_tx, loaded_rx) = mpsc::channel();
        let (inf, out, sh) = (inflight.clone(), output.clone(), shared.clone());
        let reader = std::thread::Builder::new()
            .name("py-packet-reader".into())
            .spawn(move || read_loop(&mut stdout, &inf, &out, &sh, &loaded_tx))
            .map_err(|e| ScriptError::Worker(format!("cannot start a reader thread: {e}")))?;
        let mut generation = Self { child, stdin: None, reader: Some(reader), inflight };
        if let Err(e) = frame::write_to(&mut stdin, &frame::encode(load)) {
            generation.kill();
            return Err(ScriptError::Worker(format!("cannot reach the worker: {e}")));
        }
        generation.stdin = Some(stdin);
        let reply = match loaded_rx.recv_timeout(LOAD_TIMEOUT) {
            Ok(r) => r,
            Err(_) => {
                generation.kill();
                return Err(ScriptError::Worker("the worker did not load the plugin".into()));
            }
        };
        if let Err(e) = loaded_reply(path, &reply) {
            generation.kill();
            return Err(e);
        }
        let bulk = reply.get("bulk").and_then(Value::as_bool).unwrap_or(false);
        Ok((bulk, generation))
    }

    fn is_dead(&self) -> bool {
        self.inflight.state.lock().map(|s| s.dead).unwrap_or(true)
    }

    /// Waits for room in the window; `false` if the worker died meanwhile.
    fn wait_for_room(&self) -> bool {
        let Ok(mut s) = self.inflight.state.lock() else { return false };
        while !s.dead && s.batches.len() >= WINDOW {
            s = match self.inflight.cv.wait(s) {
                Ok(s) => s,
                Err(_) => return false,
            };
        }
        !s.dead
    }

    fn send(&mut self, seq: u64, chunk: &[Record]) -> bool {
        if let Ok(mut s) = self.inflight.state.lock() {
            s.batches.push_back((seq, chunk.len() as u64));
        }
        let bytes = encode_batch(seq, chunk);
        let ok = match self.stdin.as_mut() {
            Some(w) => frame::write_to(w, &bytes).is_ok(),
            None => false,
        };
        if !ok {
            self.mark_dead();
        }
        ok
    }

    fn mark_dead(&self) {
        if let Ok(mut s) = self.inflight.state.lock() {
            s.dead = true;
        }
        self.inflight.cv.notify_all();
    }

    /// Waits until every batch is acknowledged (or the worker died).
    fn drain(&self) {
        let Ok(mut s) = self.inflight.state.lock() else { return };
        while !s.dead && !s.batches.is_empty() {
            s = match self.inflight.cv.wait(s) {
                Ok(s) => s,
                Err(_) => return,
            };
        }
    }

    /// Records still in flight, which a dead worker took with it.
    fn take_lost(&self) -> u64 {
        match self.inflight.state.lock() {
            Ok(mut s) => s.batches.drain(..).map(|(_, n)| n).sum(),
            Err(_) => 0,
        }
    }

    fn kill(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// Closes stdin so the worker finishes and exits by itself.
    fn close(&mut self) {
        self.stdin = None;
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn read_loop(
    stdout: &mut impl std::io::Read,
    inflight: &Inflight,
    output: &Output,
    shared: &Shared,
    loaded: &mpsc::Sender<Value>,
) {
    while let Ok(msg) = frame::read_from(stdout) {
        match msg.get("t").and_then(Value::as_str) {
            Some("out") => {
                if let Some(s) = msg.get("s").and_then(Value::as_str) {
                    output.write(s.as_bytes());
                }
            }
            Some("done") => {
                let seq = msg.get("seq").and_then(Value::as_u64).unwrap_or(u64::MAX);
                let n = msg.get("n").and_then(Value::as_u64).unwrap_or(0);
                let failed = msg.get("failed").and_then(Value::as_u64).unwrap_or(0).min(n);
                let errors = msg
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
                let report = BatchReport { delivered: n - failed, failed, errors };
                shared.record(&report);
                if let Ok(mut s) = inflight.state.lock() {
                    s.batches.retain(|(q, _)| *q != seq);
                }
                inflight.cv.notify_all();
            }
            Some("loaded") => {
                let _ = loaded.send(msg);
            }
            _ => {}
        }
    }
    if let Ok(mut s) = inflight.state.lock() {
        s.dead = true;
    }
    inflight.cv.notify_all();
}

/// Writes `{"t":"batch","seq":N,"recs":[[ten values], ...]}` without building a JSON tree:
/// each record becomes an array of its values in [`RECORD_KEYS`] order.
fn encode_batch(seq: u64, recs: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + recs.len() * 192);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(format!("{{\"t\":\"batch\",\"seq\":{seq},\"recs\":[").as_bytes());
    for (i, rec) in recs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        rec.write_json_values(&mut out);
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
    let n = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&n.to_be_bytes());
    out
}

/// Starts the worker, loads the plugin and the feeder thread; returns whether it is bulk.
pub(crate) fn start(
    path: &Path,
    opts: &PacketOptions,
    queue: &Queue,
) -> Result<(bool, Vec<JoinHandle<()>>), ScriptError> {
    let load = json!({
        "t": "load",
        "path": path.to_string_lossy(),
        "hook": "packet",
        "keys": RECORD_KEYS,
        "pass_config": opts.pass_config,
        "config": opts.config,
    });
    let (bulk, generation) =
        Generation::start(&opts.python, &load, path, &opts.output, &queue.shared)?;
    let (python, output, path, queue) =
        (opts.python.clone(), opts.output.clone(), path.to_path_buf(), queue.clone());
    let feeder = std::thread::Builder::new()
        .name("py-packet-feeder".into())
        .spawn(move || feed(generation, &python, &load, &path, &output, &queue))
        .map_err(|e| ScriptError::Worker(format!("cannot start the feeder thread: {e}")))?;
    Ok((bulk, vec![feeder]))
}

fn feed(
    mut generation: Generation,
    python: &str,
    load: &Value,
    path: &Path,
    output: &Output,
    queue: &Queue,
) {
    let mut seq = 0u64;
    let mut backoff = Duration::from_millis(100);
    let max = queue.batch_size();
    while let Some(batch) = queue.next_batch() {
        for chunk in batch.chunks(max) {
            if generation.is_dead() {
                let lost = generation.take_lost();
                queue.shared.lose(lost);
                generation.kill();
                tracing::error!(lost, "python packet worker died; restarting it");
                std::thread::sleep(backoff);
                match Generation::start(python, load, path, output, &queue.shared) {
                    Ok((_, g)) => {
                        generation = g;
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        tracing::error!("python packet worker restart failed: {e}");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        queue.shared.lose(chunk.len() as u64);
                        continue;
                    }
                }
            }
            if !generation.wait_for_room() {
                queue.shared.lose(chunk.len() as u64);
                continue;
            }
            seq += 1;
            generation.send(seq, chunk);
        }
    }
    generation.drain();
    queue.shared.lose(generation.take_lost());
    generation.close();
}
