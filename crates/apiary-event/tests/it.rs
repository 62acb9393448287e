//! Golden tests of the native JSON encoding: the field names and shapes are a contract.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_event::{
    Auth, AuthMethod, Close, Event, Flow, FlowState, Kind, Payload, Timestamp, Transport, encode,
    new_id_at,
};

fn base(kind: Kind) -> Event {
    let t = Timestamp::from_micros(1_700_000_000_123_456);
    let mut e = Event::at(kind, Arc::from("edge-1"), t, new_id_at(t, [1; 10]));
    e.pot = Some(Arc::from("default"));
    e.service = Some(Arc::from("Telnet"));
    e.protocol = Some(Arc::from("telnet"));
    e.transport = Some(Transport::Tcp);
    e.src_ip = Some("203.0.113.7".parse().unwrap());
    e.src_port = Some(51_000);
    e.dst_ip = Some("2001:db8::1".parse().unwrap());
    e.dst_port = Some(23);
    e.session = Some(new_id_at(t, [2; 10]));
    e
}

fn check(name: &str, event: &Event) {
    let mut line = Vec::new();
    encode::json_line(event, &mut line);
    let path = format!("{}/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("APIARY_BLESS").is_some() {
        std::fs::write(&path, &line).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(String::from_utf8_lossy(&line), want, "golden {name} (APIARY_BLESS=1 rewrites)");
    let back = encode::from_json(&line).unwrap();
    assert_eq!(&back, event, "round trip of {name}");
}

#[test]
fn golden_session_rx() {
    let mut e = base(Kind::SESSION_RX);
    e.payload = Some(Payload::new(b"root\r\n", 4096));
    check("session_rx", &e);
}

#[test]
fn golden_session_close() {
    let mut e = base(Kind::SESSION_CLOSE);
    e.close = Some(Box::new(Close {
        duration_ms: 1500,
        bytes_in: 12,
        bytes_out: 300,
        reason: "peer".into(),
    }));
    check("session_close", &e);
}

#[test]
fn golden_auth_attempt() {
    let mut e = base(Kind::AUTH_ATTEMPT);
    e.auth = Some(Box::new(Auth {
        method: AuthMethod::Password,
        username: Some("root".into()),
        password: Some("123456".into()),
        success: false,
        extra: BTreeMap::new(),
    }));
    check("auth_attempt", &e);
}

#[test]
fn golden_flow_new() {
    let mut e = base(Kind::FLOW_NEW);
    e.service = None;
    e.protocol = None;
    e.transport = Some(Transport::Udp);
    let mut flow = Flow { state: Some(FlowState::New), protocol_num: 17, ..Flow::default() };
    flow.payload.insert("dns".into(), "example.com".into());
    e.flow = Some(Box::new(flow));
    check("flow_new", &e);
}

#[test]
fn unknown_fields_are_ignored_and_minimal_events_decode() {
    let line = br#"{"id":"018bcfe5-687b-7101-8101-010101010101","time":"2023-11-14T22:13:20Z","kind":"custom.thing","node":"n","future_field":[1,2]}"#;
    let e = encode::from_json(line).unwrap();
    assert_eq!(e.kind.as_str(), "custom.thing");
    assert_eq!(e.src_ip, None);
}
