//! What nodes report, turned into apiary [`Event`]s (`pot.event`, `pot.status`, `node.status`).
//!
//! The node's own claims (its `node_id`) are never trusted: the caller passes the name the Core
//! knows the connection by. Attack details are lifted out of the pot's `data`/`metadata` into
//! the typed blocks (`src_ip`, `auth`, `command`, `download`) when present; the original record
//! is kept in `pot_info.raw`.

use std::net::IpAddr;
use std::sync::Arc;

use apiary_event::{Auth, AuthMethod, Command, Download, Event, Kind, PotInfo, Timestamp};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::wire::{NodeEvent, NodeStatusUpdate, PotEvent, PotStatusUpdate};

/// Longest text kept from a node-supplied string field, in bytes.
const MAX_TEXT: usize = 4096;

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(clip(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn port(v: Option<&Value>) -> Option<u16> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn ip(v: Option<&Value>) -> Option<IpAddr> {
    v?.as_str()?.trim().parse().ok()
}

fn non_empty(s: &str) -> Option<Arc<str>> {
    if s.is_empty() { None } else { Some(Arc::from(clip(s))) }
}

/// A `pot.event` from a `PotEvent`. `received` is used when the event carries no usable time.
pub fn pot_event(ev: &PotEvent, node: &Arc<str>, received: Timestamp) -> Event {
    let raw = ev.data.clone().or_else(|| ev.metadata.clone());
    pot_event_with(ev, raw, node, received)
}

/// [`pot_event`] for a `PotEvent` the caller no longer needs (the Core's node server): its
/// `data` (or `metadata`) map moves into the event instead of being copied.
pub fn pot_event_owned(mut ev: PotEvent, node: &Arc<str>, received: Timestamp) -> Event {
    // The conversion looks fields up in `data` and `metadata`, so the map moves out after.
    let mut e = pot_event_with(&ev, None, node, received);
    let raw = ev.data.take().or_else(|| ev.metadata.take());
    if let Some(info) = e.pot_info.as_mut() {
        info.raw = raw.map(Value::Object);
    }
    e
}

fn pot_event_with(
    ev: &PotEvent,
    raw: Option<Map<String, Value>>,
    node: &Arc<str>,
    received: Timestamp,
) -> Event {
    let time = ev.timestamp.map_or(received, |t| t.timestamp());
    let id = ev
        .field("event_id")
        .or_else(|| ev.field("uuid"))
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(apiary_event::new_id);
    let mut e = Event::at(Kind::POT_EVENT, node.clone(), time, id);
    e.pot = non_empty(&ev.pot_id);
    let name = ev.name().map(clip);
    e.src_ip = ip(ev.field("src_ip")).or_else(|| ip(ev.field("source_ip")));
    e.src_port = port(ev.field("src_port"));
    e.dst_ip = ip(ev.field("dst_ip"));
    e.dst_port = port(ev.field("dst_port"));
    e.protocol = text(ev.field("protocol")).map(Arc::from);
    e.message = ev.message.as_deref().map(clip).or_else(|| text(ev.field("message")));
    let username = text(ev.field("username"));
    let password = text(ev.field("password"));
    if username.is_some() || password.is_some() {
        let lname = name.as_deref().unwrap_or_default().to_ascii_lowercase();
        let success = lname.contains("success")
            || matches!(ev.field("success"), Some(Value::Bool(true)))
            || ev.field("success").and_then(Value::as_str) == Some("true");
        e.auth = Some(Box::new(Auth {
            method: AuthMethod::Password,
            username,
            password,
            success,
            extra: Default::default(),
        }));
    }
    if let Some(input) = text(ev.field("input")) {
        e.command = Some(Box::new(Command { input, interpreter: None, known: None }));
    }
    if let Some(url) = text(ev.field("url")) {
        e.download = Some(Box::new(Download { url, sha256: text(ev.field("shasum")), size: None }));
    }
    let raw = raw.map(Value::Object);
    e.pot_info = Some(Box::new(PotInfo {
        pot_type: ev.pot_type.as_deref().map(clip).or_else(|| text(ev.field("pot_type"))),
        event_type: name,
        status: None,
        raw,
    }));
    e
}

/// A `pot.status` from a `PotStatusUpdate`, or a `pot.event` when its status is empty or
/// unknown (the Go node's forwarded attack events travel that way).
pub fn pot_status(s: &PotStatusUpdate, node: &Arc<str>, received: Timestamp) -> Event {
    let kind = if s.is_event_carrier() { Kind::POT_EVENT } else { Kind::POT_STATUS };
    let mut e = Event::at(kind, node.clone(), received, apiary_event::new_id());
    e.pot = non_empty(&s.pot_id);
    e.message = s.message.as_deref().map(clip);
    let status = s.status.as_str();
    e.pot_info = Some(Box::new(PotInfo {
        pot_type: (!s.pot_type.is_empty()).then(|| clip(&s.pot_type)),
        event_type: None,
        status: (!status.is_empty()).then(|| clip(status)),
        raw: None,
    }));
    e
}

/// A `node.status` from a heartbeat.
pub fn node_status(s: &NodeStatusUpdate, node: &Arc<str>, received: Timestamp) -> Event {
    let mut e = Event::at(Kind::NODE_STATUS, node.clone(), received, apiary_event::new_id());
    e.message = Some(format!("status {}", clip(s.status.as_str())));
    e.fields.insert("status".into(), clip(s.status.as_str()).into());
    e
}

/// A `node.status` from a life-cycle event (`Started`, `Stopped`, `Alarm`, `Error`).
pub fn node_event(ev: &NodeEvent, node: &Arc<str>, received: Timestamp) -> Event {
    let mut e = Event::at(Kind::NODE_STATUS, node.clone(), received, apiary_event::new_id());
    e.message = ev.text().map(clip);
    e.fields.insert("node_event".into(), clip(ev.kind.as_str()).into());
    e
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::wire::{NodeMessage, decode_node_message};

    fn node() -> Arc<str> {
        Arc::from("edge-1")
    }

    fn pot(line: &str) -> PotEvent {
        match decode_node_message(line.as_bytes()).unwrap().message {
            NodeMessage::PotEvent(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docs_shape_login_fills_auth_and_source() {
        let p = pot(
            r#"{"version":2,"message":{"PotEvent":{"node_id":12345,"pot_id":"cowrie-01","pot_type":"cowrie","event_type":"cowrie.login.success","timestamp":"2024-01-15T10:30:00Z","data":{"username":"root","password":"123456","src_ip":"192.168.1.100","src_port":54321,"dst_port":22,"session":"abc123"}}}}"#,
        );
        let e = pot_event(&p, &node(), Timestamp::EPOCH);
        assert_eq!(e.kind, Kind::POT_EVENT);
        assert_eq!(e.time.to_string(), "2024-01-15T10:30:00.000000Z");
        assert_eq!(e.pot.as_deref(), Some("cowrie-01"));
        assert_eq!(e.src_ip, Some("192.168.1.100".parse().unwrap()));
        assert_eq!(e.src_port, Some(54321));
        assert_eq!(e.dst_port, Some(22));
        let auth = e.auth.unwrap();
        assert_eq!(auth.username.as_deref(), Some("root"));
        assert_eq!(auth.password.as_deref(), Some("123456"));
        assert!(auth.success);
        let info = e.pot_info.unwrap();
        assert_eq!(info.event_type.as_deref(), Some("cowrie.login.success"));
        assert_eq!(info.pot_type.as_deref(), Some("cowrie"));
        assert_eq!(info.raw.unwrap()["session"], "abc123");
    }

    #[test]
    fn go_shape_command_and_download() {
        let p = pot(
            r#"{"version":2,"message":{"PotEvent":{"node_id":7,"pot_id":"c1","event":"cowrie.command.input","message":"CMD: wget http://x/y","metadata":{"src_ip":"10.0.0.9","src_port":"4444","input":"wget http://x/y","url":"http://x/y"},"timestamp":1700000000}}}"#,
        );
        let e = pot_event(&p, &node(), Timestamp::EPOCH);
        assert_eq!(e.time.as_secs(), 1_700_000_000);
        assert_eq!(e.src_port, Some(4444));
        assert_eq!(e.command.unwrap().input, "wget http://x/y");
        assert_eq!(e.download.unwrap().url, "http://x/y");
        assert_eq!(e.message.as_deref(), Some("CMD: wget http://x/y"));
        assert!(e.auth.is_none());
    }

    /// The owned conversion (the Core's) gives the same event as the borrowed one, for both
    /// shapes (`data`, `metadata`), the id aside (neither line carries one).
    #[test]
    fn owned_conversion_matches_borrowed() {
        for line in [
            r#"{"version":2,"message":{"PotEvent":{"pot_id":"c","event_type":"cowrie.login.failed","data":{"username":"u","password":"p","src_ip":"10.0.0.1","input":"ls"}}}}"#,
            r#"{"version":2,"message":{"PotEvent":{"pot_id":"c","event":"x","metadata":{"src_ip":"10.0.0.2","src_port":"1","url":"http://x/"}}}}"#,
        ] {
            let p = pot(line);
            let a = pot_event(&p, &node(), Timestamp::EPOCH);
            let mut b = pot_event_owned(p, &node(), Timestamp::EPOCH);
            b.id = a.id;
            assert_eq!(a, b, "{line}");
            assert!(a.pot_info.as_ref().unwrap().raw.is_some());
        }
    }

    #[test]
    fn explicit_event_id_is_kept_for_dedup() {
        let p = pot(
            r#"{"version":2,"message":{"PotEvent":{"pot_id":"c1","event_type":"x","data":{"event_id":"018bcfe5-687b-7000-8000-000000000001"}}}}"#,
        );
        let a = pot_event(&p, &node(), Timestamp::EPOCH);
        let b = pot_event(&p, &node(), Timestamp::EPOCH);
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.to_string(), "018bcfe5-687b-7000-8000-000000000001");
    }

    #[test]
    fn status_carrier_becomes_pot_event() {
        let line = r#"{"version":2,"message":{"PotStatusUpdate":{"node_id":1,"pot_id":"c1","pot_type":"","status":"","message":"login attempt [root/admin] failed"}}}"#;
        let NodeMessage::PotStatusUpdate(s) = decode_node_message(line.as_bytes()).unwrap().message
        else {
            panic!()
        };
        let e = pot_status(&s, &node(), Timestamp::EPOCH);
        assert_eq!(e.kind, Kind::POT_EVENT);
        assert_eq!(e.message.as_deref(), Some("login attempt [root/admin] failed"));
        let line = r#"{"version":2,"message":{"PotStatusUpdate":{"node_id":1,"pot_id":"c1","pot_type":"cowrie","status":"Running","message":"started"}}}"#;
        let NodeMessage::PotStatusUpdate(s) = decode_node_message(line.as_bytes()).unwrap().message
        else {
            panic!()
        };
        let e = pot_status(&s, &node(), Timestamp::EPOCH);
        assert_eq!(e.kind, Kind::POT_STATUS);
        assert_eq!(e.pot_info.unwrap().status.as_deref(), Some("Running"));
    }

    #[test]
    fn long_text_is_clipped_on_a_char_boundary() {
        let s = "é".repeat(MAX_TEXT);
        let c = clip(&s);
        assert!(c.len() <= MAX_TEXT);
        assert!(s.starts_with(&c));
    }
}
