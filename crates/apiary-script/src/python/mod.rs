//! Python plugins, run in a `python3` worker process (no embedded interpreter): a crash or a
//! blocking plugin can never take the daemon down, and any python3 on PATH works.

pub mod frame;
pub(crate) mod packet;
pub(crate) mod service;

use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

use crate::ScriptError;

/// The worker program, run with `python3 -c`.
pub(crate) const WORKER: &str = include_str!("worker.py");

/// A started worker process and its pipes.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) stdin: ChildStdin,
    pub(crate) stdout: ChildStdout,
}

/// Starts a worker; stderr is inherited so Python's own warnings reach the operator.
pub(crate) fn spawn(python: &str) -> Result<Proc, ScriptError> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(WORKER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| ScriptError::Worker(format!("cannot start {python}: {e}")))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ScriptError::Worker("worker pipes missing".into()));
    };
    Ok(Proc { child, stdin, stdout })
}

/// Turns a worker's `loaded` reply into the plugin's entry points or a load error.
pub(crate) fn loaded_reply(path: &Path, reply: &Value) -> Result<(), ScriptError> {
    if reply.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    let message =
        reply.get("error").and_then(Value::as_str).unwrap_or("plugin failed to load").to_string();
    let line = reply.get("line").and_then(Value::as_u64).and_then(|l| u32::try_from(l).ok());
    match reply.get("kind").and_then(Value::as_str) {
        Some("syntax") => Err(ScriptError::Syntax { path: path.to_path_buf(), line, message }),
        _ => {
            let message = match line {
                Some(l) => format!("line {l}: {message}"),
                None => message,
            };
            Err(ScriptError::Invalid { path: path.to_path_buf(), message })
        }
    }
}

/// Validates a Python plugin for `hook` ("service" or "packet") by importing it in a
/// short-lived worker, as `apiary config check` needs.
pub(crate) fn check(python: &str, hook: &str, path: &Path) -> Result<Value, ScriptError> {
    let out = Command::new(python)
        .arg("-c")
        .arg(WORKER)
        .arg("--check")
        .arg(hook)
        .arg(path)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| ScriptError::Worker(format!("cannot start {python}: {e}")))?;
    let (reply, _) = frame::parse(&out.stdout)
        .map_err(|e| ScriptError::Worker(format!("no answer from the checker ({e})")))?;
    loaded_reply(path, &reply)?;
    Ok(reply)
}
