//! `external` pots: a program the operator names as an explicit argv (`config.argv`, a JSON
//! array of strings), allowed by the node's own `allow_programs`, run without a shell,
//! restarted with backoff when it exits, and told where to send events through the
//! environment (`APIARY_EVENT_PORT`, `HONEYBEE_EVENT_PORT`, `APIARY_POT_ID`). Other config
//! keys become `APIARY_CFG_<KEY>` variables: validated values, never pasted into files.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lines::{CappedLines, Line};

/// Output lines kept for `GetPotLogs`, and bytes per line.
const LOG_LINES: usize = 200;
const LOG_LINE: usize = 1024;
const MAX_ARGS: usize = 64;
const MAX_ARG: usize = 4096;
const MAX_ENV_VALUE: usize = 4096;
/// How long a stopping program gets after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// A checked command line.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    argv: Vec<String>,
    cwd: Option<PathBuf>,
    env: Vec<(String, String)>,
}

pub(crate) fn plan(config: &BTreeMap<String, String>, allowed: &[PathBuf]) -> Result<Plan, String> {
    let raw = config
        .get("argv")
        .ok_or("config.argv is required: a JSON array such as [\"/opt/cowrie/bin/cowrie\",\"start\",\"-n\"]")?;
    let argv: Vec<String> = serde_json::from_str(raw)
        .map_err(|e| format!("config.argv: not a JSON array of strings: {e}"))?;
    let Some(program) = argv.first() else {
        return Err("config.argv is empty".into());
    };
    if argv.len() > MAX_ARGS || argv.iter().any(|a| a.len() > MAX_ARG || a.contains('\0')) {
        return Err(format!(
            "config.argv: at most {MAX_ARGS} arguments of {MAX_ARG} bytes, no NUL"
        ));
    }
    let program = Path::new(program);
    if !program.is_absolute() {
        return Err("config.argv[0] must be an absolute path".into());
    }
    if !allowed.iter().any(|a| a == program) {
        return Err(format!(
            "{} is not in this node's allow_programs (the node's operator decides what may run)",
            program.display()
        ));
    }
    let cwd = match config.get("cwd") {
        Some(c) => {
            let p = PathBuf::from(c);
            if !p.is_absolute() || !p.is_dir() {
                return Err(format!("config.cwd {c:?} is not an existing absolute directory"));
            }
            Some(p)
        }
        None => None,
    };
    let mut env = Vec::new();
    for (k, v) in config {
        if k == "argv" || k == "cwd" {
            continue;
        }
        if v.len() > MAX_ENV_VALUE || v.chars().any(char::is_control) {
            return Err(format!(
                "config.{k}: at most {MAX_ENV_VALUE} bytes, no control characters"
            ));
        }
        env.push((format!("APIARY_CFG_{}", k.to_ascii_uppercase()), v.clone()));
    }
    Ok(Plan { argv, cwd, env })
}

#[derive(Default)]
struct Shared {
    pid: AtomicU32,
    alive: AtomicBool,
    starts: AtomicU64,
    logs: Mutex<VecDeque<String>>,
    last_exit: Mutex<Option<String>>,
}

impl Shared {
    fn note_start(&self, c: &Child) {
        self.starts.fetch_add(1, Ordering::Relaxed);
        self.pid.store(c.id().unwrap_or(0), Ordering::Relaxed);
        self.alive.store(true, Ordering::Relaxed);
    }

    fn log(&self, line: String) {
        if let Ok(mut l) = self.logs.lock() {
            if l.len() >= LOG_LINES {
                l.pop_front();
            }
            l.push_back(super::cap(line, LOG_LINE));
        }
    }
}

/// A supervised program.
pub(crate) struct Run {
    program: String,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

pub(crate) fn start(
    plan: &Plan,
    pot_id: &str,
    event_port: u16,
    work_dir: &Path,
) -> Result<Run, String> {
    let dir = plan.cwd.clone().unwrap_or_else(|| work_dir.join(pot_id));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut cmd = Command::new(plan.argv.first().map(String::as_str).unwrap_or_default());
    cmd.args(plan.argv.iter().skip(1))
        .current_dir(&dir)
        // A clean environment: the node's own variables (credentials) stay with the node.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", &dir)
        .env("APIARY_EVENT_PORT", event_port.to_string())
        .env("HONEYBEE_EVENT_PORT", event_port.to_string())
        .env("APIARY_POT_ID", pot_id)
        .envs(plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let shared = Arc::new(Shared::default());
    let cancel = CancellationToken::new();
    // The first spawn happens here so a missing program is reported to the command at once.
    let child = cmd.spawn().map_err(|e| format!("starting {}: {e}", plan.argv.join(" ")))?;
    shared.note_start(&child);
    let task = tokio::spawn(supervise(cmd, child, shared.clone(), cancel.clone()));
    Ok(Run { program: plan.argv.first().cloned().unwrap_or_default(), shared, cancel, task })
}

fn pipe_lines<R: AsyncRead + Unpin + Send + 'static>(r: R, shared: Arc<Shared>, tag: &'static str) {
    tokio::spawn(async move {
        let mut lines = CappedLines::new(r, LOG_LINE * 8);
        while let Some(l) = lines.next().await {
            match l {
                Line::Text(l) => shared.log(format!("{tag}: {l}")),
                Line::TooLong => shared.log(format!("{tag}: (line too long, skipped)")),
            }
        }
    });
}

async fn supervise(mut cmd: Command, first: Child, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut child = Some(first);
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut c = match child.take() {
            Some(c) => c,
            None => match cmd.spawn() {
                Ok(c) => {
                    shared.note_start(&c);
                    c
                }
                Err(e) => {
                    shared.log(format!("apiary: cannot start: {e}"));
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            },
        };
        if let Some(out) = c.stdout.take() {
            pipe_lines(out, shared.clone(), "stdout");
        }
        if let Some(err) = c.stderr.take() {
            pipe_lines(err, shared.clone(), "stderr");
        }
        let began = tokio::time::Instant::now();
        let status = tokio::select! {
            s = c.wait() => s,
            _ = cancel.cancelled() => {
                terminate(&mut c).await;
                shared.alive.store(false, Ordering::Relaxed);
                return;
            }
        };
        shared.alive.store(false, Ordering::Relaxed);
        let what = match status {
            Ok(s) => format!("exited: {s}"),
            Err(e) => format!("wait failed: {e}"),
        };
        shared.log(format!("apiary: {what}; restarting in {backoff:?}"));
        if let Ok(mut l) = shared.last_exit.lock() {
            *l = Some(what);
        }
        if began.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// SIGTERM to the program's process group, then SIGKILL after a grace period.
async fn terminate(c: &mut Child) {
    if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals the process group we created for the
        // child (process_group(0)); it touches no memory.
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        if tokio::time::timeout(TERM_GRACE, c.wait()).await.is_ok() {
            return;
        }
    }
    let _ = c.kill().await;
}

impl Run {
    pub(crate) fn alive(&self) -> bool {
        // Between restarts the pot still counts as running: the supervisor owns it.
        !self.task.is_finished()
    }

    pub(crate) fn describe(&self) -> String {
        let pid = self.shared.pid.load(Ordering::Relaxed);
        if self.shared.alive.load(Ordering::Relaxed) {
            format!("{} running, pid {pid}", self.program)
        } else {
            let last =
                self.shared.last_exit.lock().ok().and_then(|l| l.clone()).unwrap_or_default();
            format!("{} restarting ({last})", self.program)
        }
    }

    pub(crate) fn logs(&self) -> VecDeque<String> {
        self.shared.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub(crate) fn metrics(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("pid".into(), self.shared.pid.load(Ordering::Relaxed).into());
        m.insert("alive".into(), self.shared.alive.load(Ordering::Relaxed).into());
        m.insert("starts".into(), self.shared.starts.load(Ordering::Relaxed).into());
        m
    }

    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(TERM_GRACE + Duration::from_secs(2), self.task).await;
    }
}
