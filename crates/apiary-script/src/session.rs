//! The interface between a scripted service and the honeypot runtime that owns the connection.

use bytes::Bytes;
use serde_json::{Map, Value};

/// Facts about one connection (TCP) or one peer (UDP) that scripts can read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// Peer address as text (`203.0.113.5`, `2001:db8::1`).
    pub remote_host: String,
    /// Peer port.
    pub remote_port: u16,
    /// Our port the peer reached.
    pub local_port: u16,
    /// The session id events of this connection carry (the pot's UUIDv7).
    pub session_id: String,
    /// The service name from the config (`hashcount`).
    pub service: String,
}

/// One connection as the honeypot runtime exposes it to a script.
///
/// The runtime owns caps and timeouts: `rx` returns `None` on EOF, on its idle timeout or when
/// the connection is gone, and each chunk is already size-capped.
#[async_trait::async_trait]
pub trait SessionIo: Send {
    /// The next chunk from the peer; `None` on EOF, timeout or a closed connection.
    async fn rx(&mut self) -> Option<Bytes>;
    /// Sends bytes to the peer.
    async fn tx(&mut self, data: &[u8]) -> std::io::Result<()>;
    /// Emits an event of `kind` (e.g. `auth.attempt`, `plugin.error`) with these fields.
    fn log(&mut self, kind: &str, fields: Map<String, Value>);
    /// Facts about this connection.
    fn info(&self) -> &SessionInfo;
}

/// How a TCP session ended when the script did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The handler returned.
    Returned,
    /// The script called `close()`.
    Closed,
    /// The peer went away (EOF read twice, or a send failed).
    PeerGone,
}

/// What a UDP script produced for one datagram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatagramOutcome {
    /// Replies to send to the peer, in order.
    pub replies: Vec<Bytes>,
    /// Events the script logged, in order: kind and fields.
    pub logs: Vec<(String, Map<String, Value>)>,
}
