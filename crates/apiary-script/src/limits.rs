//! Resource limits for one scripted session or one packet-plugin call.

use std::time::Duration;

/// Limits applied to scripts; the defaults suit a honeypot facing hostile peers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Lua: bytes of memory a session's state may use on top of the bare sandbox.
    pub memory: usize,
    /// Lua: VM instructions a whole session may execute.
    pub instructions: u64,
    /// Lua: VM instructions allowed between two waits (`rx`, `sleep`), so one session cannot
    /// hold a runtime thread for long.
    pub instructions_per_slice: u64,
    /// Longest single `sleep` a script may ask for; longer requests are cut to this.
    pub max_sleep: Duration,
    /// Bytes a script may queue with `tx` between two waits.
    pub max_tx_pending: usize,
    /// Python: how long the worker may go without answering a ping before it is restarted.
    pub worker_ping_timeout: Duration,
    /// UDP: how many per-peer tables are kept (least recently used evicted first).
    pub max_peers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 8 << 20,
            instructions: 200_000_000,
            instructions_per_slice: 20_000_000,
            max_sleep: Duration::from_secs(60),
            max_tx_pending: 1 << 20,
            worker_ping_timeout: Duration::from_secs(10),
            max_peers: 4096,
        }
    }
}
