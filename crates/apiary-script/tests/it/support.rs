//! Test doubles: a `SessionIo` that feeds chunks and records what the script sent and logged.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apiary_script::{Limits, Output, ServiceOptions, SessionInfo, SessionIo};
use bytes::Bytes;
use serde_json::{Map, Value};

/// Feeds `chunks` to `rx()` then reports EOF; records every `tx` and `log`.
pub(crate) struct TestIo {
    pub(crate) chunks: VecDeque<Bytes>,
    pub(crate) sent: Vec<Vec<u8>>,
    pub(crate) logs: Vec<(String, Map<String, Value>)>,
    pub(crate) info: SessionInfo,
    /// Fail sends after this many (a peer that went away).
    pub(crate) fail_tx_after: Option<usize>,
}

impl TestIo {
    pub(crate) fn new(chunks: &[&[u8]]) -> Self {
        Self {
            chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
            sent: Vec::new(),
            logs: Vec::new(),
            info: SessionInfo {
                remote_host: "203.0.113.7".into(),
                remote_port: 40123,
                local_port: 4096,
                session_id: "0198c6f0-0000-7000-8000-000000000001".into(),
                service: "hashcount".into(),
            },
            fail_tx_after: None,
        }
    }

    pub(crate) fn log_kinds(&self) -> Vec<&str> {
        self.logs.iter().map(|(k, _)| k.as_str()).collect()
    }

    pub(crate) fn error_log(&self) -> Option<&Map<String, Value>> {
        self.logs.iter().find(|(k, _)| k == "plugin.error").map(|(_, f)| f)
    }
}

#[async_trait::async_trait]
impl SessionIo for TestIo {
    async fn rx(&mut self) -> Option<Bytes> {
        self.chunks.pop_front()
    }

    async fn tx(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.fail_tx_after.is_some_and(|n| self.sent.len() >= n) {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone"));
        }
        self.sent.push(data.to_vec());
        Ok(())
    }

    fn log(&mut self, kind: &str, fields: Map<String, Value>) {
        self.logs.push((kind.to_string(), fields));
    }

    fn info(&self) -> &SessionInfo {
        &self.info
    }
}

/// The repository's `plugins/` directory.
pub(crate) fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins")
}

/// Writes `source` to `name` in a fresh temporary directory.
pub(crate) fn script(name: &str, source: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, source).unwrap();
    (dir, path)
}

/// Options for tests: output captured, reload checked on every session.
pub(crate) fn options() -> ServiceOptions {
    ServiceOptions {
        limits: Limits::default(),
        output: Output::buffer().0,
        python: "python3".into(),
        reload_check: Duration::ZERO,
        ..ServiceOptions::default()
    }
}

/// Hex MD5 of `s`, computed independently of the plugin host.
pub(crate) fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
