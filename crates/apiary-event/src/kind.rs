//! Event kinds: documented dotted names such as `session.open` or `auth.attempt`.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What an event records, as a dotted lower-case name (`area.action`).
///
/// A string rather than an enum so that scripted plugins and external honeypots can name their
/// own kinds; the well-known ones are constants here and documented in `docs/events.md`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(Cow<'static, str>);

impl Kind {
    /// A TCP connection was accepted, or the first datagram of a UDP peer arrived.
    pub const SESSION_OPEN: Self = Self::from_static("session.open");
    /// Bytes received from the peer (one read, HoneyPy's `RX`).
    pub const SESSION_RX: Self = Self::from_static("session.rx");
    /// Bytes sent to the peer (HoneyPy's `TX`).
    pub const SESSION_TX: Self = Self::from_static("session.tx");
    /// A session ended; carries duration and byte counts.
    pub const SESSION_CLOSE: Self = Self::from_static("session.close");
    /// A connection was refused by a limit before any service code ran.
    pub const SESSION_REFUSED: Self = Self::from_static("session.refused");
    /// A login attempt with the credentials the peer offered.
    pub const AUTH_ATTEMPT: Self = Self::from_static("auth.attempt");
    /// A command line typed into a fake shell or sent to a fake server.
    pub const COMMAND_INPUT: Self = Self::from_static("command.input");
    /// A parsed HTTP request.
    pub const HTTP_REQUEST: Self = Self::from_static("http.request");
    /// A DNS query.
    pub const DNS_QUERY: Self = Self::from_static("dns.query");
    /// A URL the attacker tried to download (recorded, never fetched by default).
    pub const DOWNLOAD_ATTEMPT: Self = Self::from_static("download.attempt");
    /// A file the attacker uploaded (captured with size and hash).
    pub const FILE_UPLOAD: Self = Self::from_static("file.upload");
    /// Input the service could not parse; kept as evidence.
    pub const PROTOCOL_ERROR: Self = Self::from_static("protocol.error");
    /// A new flow seen by the sensor (PokieStream `NEW`).
    pub const FLOW_NEW: Self = Self::from_static("flow.new");
    /// The responder answered (PokieStream `ESTABLISHED`).
    pub const FLOW_ESTABLISHED: Self = Self::from_static("flow.established");
    /// A flow closed with FIN (PokieStream `CLOSE`).
    pub const FLOW_CLOSE: Self = Self::from_static("flow.close");
    /// A flow reset with RST (PokieStream `ABORT`).
    pub const FLOW_ABORT: Self = Self::from_static("flow.abort");
    /// A flow timed out (PokieStream `EXPIRED`).
    pub const FLOW_EXPIRED: Self = Self::from_static("flow.expired");
    /// An ICMP message seen by the sensor.
    pub const FLOW_ICMP: Self = Self::from_static("flow.icmp");
    /// A node's status changed (HoneyBee `NodeStatusUpdate`).
    pub const NODE_STATUS: Self = Self::from_static("node.status");
    /// A pot's status changed (HoneyBee `PotStatusUpdate`).
    pub const POT_STATUS: Self = Self::from_static("pot.status");
    /// An event forwarded from an external honeypot (HoneyBee `PotEvent`, Cowrie JSON).
    pub const POT_EVENT: Self = Self::from_static("pot.event");
    /// A marked test event sent by `apiary loggers test`.
    pub const TEST: Self = Self::from_static("test");

    /// A kind from a static name.
    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// A kind from any name, for plugins and external events.
    pub fn new(name: impl Into<String>) -> Self {
        Self(Cow::Owned(name.into()))
    }

    /// The dotted name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // Reuse the static name for well-known kinds so a decoded spool costs no allocation
        // per kind comparison later.
        Ok(match s.as_str() {
            "session.open" => Self::SESSION_OPEN,
            "session.rx" => Self::SESSION_RX,
            "session.tx" => Self::SESSION_TX,
            "session.close" => Self::SESSION_CLOSE,
            "auth.attempt" => Self::AUTH_ATTEMPT,
            "command.input" => Self::COMMAND_INPUT,
            "http.request" => Self::HTTP_REQUEST,
            _ => Self(Cow::Owned(s)),
        })
    }
}
