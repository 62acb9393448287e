//! The [`Event`] type: one record shape for everything apiary observes.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Auth, Close, Command, Dns, Download, Flow, Http, Kind, Payload, PotInfo, Timestamp, Tls,
};

/// The transport an event was seen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP for IPv4.
    Icmp,
    /// ICMP for IPv6.
    Icmpv6,
}

impl Transport {
    /// Lower-case name (`tcp`, `udp`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Icmpv6 => "icmpv6",
        }
    }
}

/// One observation: a connection, bytes, a login attempt, a flow record, a node's status...
///
/// Common fields say who, where and when; the optional typed blocks (`payload`, `auth`, ...)
/// say what, depending on `kind`. Names are shared (`Arc<str>`) because a listener stamps the
/// same node and service on every event it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id (UUIDv7); sinks deduplicate on it.
    pub id: Uuid,
    /// When it happened, UTC with microseconds.
    pub time: Timestamp,
    /// What happened (`session.open`, `auth.attempt`, ...).
    pub kind: Kind,
    /// Name of the node (sensor host) that saw it.
    pub node: Arc<str>,
    /// The pot (service set, sensor or external honeypot) that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pot: Option<Arc<str>>,
    /// The service name from the configuration (`Telnet`, `web`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Arc<str>>,
    /// The application protocol spoken (`telnet`, `http`, `echo`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Arc<str>>,
    /// The transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// The remote (attacker) address, or the packet source for sensor records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<IpAddr>,
    /// The remote port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// The local (honeypot) address, or the packet destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<IpAddr>,
    /// The local port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// The session (connection, UDP peer or flow) this event belongs to (UUIDv7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Uuid>,
    /// A human-readable note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Bytes received or sent (`session.rx`, `session.tx`, uploads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// Session summary (`session.close`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<Box<Close>>,
    /// Credentials (`auth.attempt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Box<Auth>>,
    /// A command line (`command.input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Box<Command>>,
    /// An HTTP request (`http.request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<Http>>,
    /// A DNS question (`dns.query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Box<Dns>>,
    /// A download or upload (`download.attempt`, `file.upload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Box<Download>>,
    /// A flow record (`flow.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<Box<Flow>>,
    /// TLS details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<Tls>>,
    /// What an external pot said (`pot.event`, `pot.status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pot_info: Option<Box<PotInfo>>,
    /// Free-form fields from plugins and external pots; never used for apiary's own data.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    /// A new event of `kind` stamped now, with a fresh id and nothing else set.
    pub fn new(kind: Kind, node: Arc<str>) -> Self {
        Self::at(kind, node, Timestamp::now(), crate::new_id())
    }

    /// A new event with a given time and id (replays, tests).
    pub fn at(kind: Kind, node: Arc<str>, time: Timestamp, id: Uuid) -> Self {
        Self {
            id,
            time,
            kind,
            node,
            pot: None,
            service: None,
            protocol: None,
            transport: None,
            src_ip: None,
            src_port: None,
            dst_ip: None,
            dst_port: None,
            session: None,
            message: None,
            payload: None,
            close: None,
            auth: None,
            command: None,
            http: None,
            dns: None,
            download: None,
            flow: None,
            tls: None,
            pot_info: None,
            fields: serde_json::Map::new(),
        }
    }

    /// Whether this is a marked test event from `apiary loggers test`.
    pub fn is_test(&self) -> bool {
        self.kind == Kind::TEST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_stays_small() {
        // Listeners keep many events in flight; big inline blocks belong behind a Box.
        assert!(std::mem::size_of::<Event>() <= 384, "{}", std::mem::size_of::<Event>());
    }
}
