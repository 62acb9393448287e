//! PokieStream's `packet_log` view of a flow event: exactly its ten keys, `None`/null where a
//! field does not apply, and its timestamp format (`YYYY-MM-DDTHH:MM:SS.ffffff`, no zone).
//!
//! Used for the sensor's `packet_log` JSON lines and to hand records to PokieStream plugins
//! unchanged (Python dict, Lua table).

use std::io::Write as _;

use serde_json::{Map, Value};

use crate::{Event, FlowState, Transport};

/// The ten keys, in PokieStream's order.
pub const KEYS: [&str; 10] = [
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "protocol_num",
    "protocol_name",
    "state",
    "timestamp",
    "session_id",
    "payload",
];

/// PokieStream's protocol name for a transport.
pub fn protocol_name(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
        Transport::Icmp => "ICMP",
        Transport::Icmpv6 => "ICMPv6",
    }
}

/// PokieStream's state name.
pub fn state_name(s: FlowState) -> &'static str {
    match s {
        FlowState::New => "NEW",
        FlowState::Established => "ESTABLISHED",
        FlowState::Close => "CLOSE",
        FlowState::Abort => "ABORT",
        FlowState::Expired => "EXPIRED",
    }
}

/// PokieStream's timestamp text of `event` (UTC, microseconds, no zone suffix).
pub fn timestamp(event: &Event) -> String {
    let mut s = String::with_capacity(26);
    event.time.write_rfc3339(&mut s, "");
    s
}

/// The record as a JSON object with exactly the ten keys, or `None` when `event` is not a
/// flow record (no `flow` block).
pub fn to_value(event: &Event) -> Option<Value> {
    let flow = event.flow.as_deref()?;
    let mut m = Map::with_capacity(10);
    let ip =
        |ip: Option<std::net::IpAddr>| ip.map_or(Value::Null, |i| Value::String(i.to_string()));
    let port = |p: Option<u16>| p.map_or(Value::Null, Value::from);
    m.insert("src_ip".into(), ip(event.src_ip));
    m.insert("dst_ip".into(), ip(event.dst_ip));
    m.insert("src_port".into(), port(event.src_port));
    m.insert("dst_port".into(), port(event.dst_port));
    m.insert("protocol_num".into(), Value::from(flow.protocol_num));
    m.insert(
        "protocol_name".into(),
        event.transport.map_or(Value::Null, |t| Value::from(protocol_name(t))),
    );
    m.insert("state".into(), flow.state.map_or(Value::Null, |s| Value::from(state_name(s))));
    m.insert("timestamp".into(), Value::String(timestamp(event)));
    m.insert(
        "session_id".into(),
        event.session.map_or(Value::Null, |u| Value::String(u.hyphenated().to_string())),
    );
    let payload = if flow.payload.is_empty() {
        Value::Null
    } else {
        Value::Object(
            flow.payload.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect(),
        )
    };
    m.insert("payload".into(), payload);
    Some(Value::Object(m))
}

/// Appends the record as one JSON line with the ten keys in order; writes nothing for an
/// event without a `flow` block. Hand-written because the sensor writes millions a second.
pub fn json_line(event: &Event, out: &mut Vec<u8>) {
    let Some(flow) = event.flow.as_deref() else { return };
    out.extend_from_slice(b"{\"src_ip\":");
    write_ip(out, event.src_ip);
    out.extend_from_slice(b",\"dst_ip\":");
    write_ip(out, event.dst_ip);
    out.extend_from_slice(b",\"src_port\":");
    write_port(out, event.src_port);
    out.extend_from_slice(b",\"dst_port\":");
    write_port(out, event.dst_port);
    out.extend_from_slice(b",\"protocol_num\":");
    let _ = write!(out, "{}", flow.protocol_num);
    out.extend_from_slice(b",\"protocol_name\":");
    match event.transport {
        Some(t) => {
            out.push(b'"');
            out.extend_from_slice(protocol_name(t).as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"state\":");
    match flow.state {
        Some(s) => {
            out.push(b'"');
            out.extend_from_slice(state_name(s).as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"timestamp\":\"");
    let mut ts = String::with_capacity(26);
    event.time.write_rfc3339(&mut ts, "");
    out.extend_from_slice(ts.as_bytes());
    out.extend_from_slice(b"\",\"session_id\":");
    match event.session {
        Some(u) => {
            let mut buf = [0u8; 36];
            out.push(b'"');
            out.extend_from_slice(u.hyphenated().encode_lower(&mut buf).as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"payload\":");
    // A map of strings always serialises; null covers both "no payload" and the impossible error.
    if flow.payload.is_empty() || serde_json::to_writer(&mut *out, &flow.payload).is_err() {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b"}\n");
}

fn write_ip(out: &mut Vec<u8>, ip: Option<std::net::IpAddr>) {
    match ip {
        Some(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn write_port(out: &mut Vec<u8>, p: Option<u16>) {
    match p {
        Some(p) => {
            let _ = write!(out, "{p}");
        }
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Flow, Kind, Timestamp};
    use std::sync::Arc;

    fn flow_event() -> Event {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        let mut e = Event::at(Kind::FLOW_NEW, Arc::from("n"), t, crate::new_id_at(t, [1; 10]));
        e.transport = Some(Transport::Udp);
        e.src_ip = Some("203.0.113.7".parse().unwrap());
        e.src_port = Some(51000);
        e.dst_ip = Some("2001:db8::1".parse().unwrap());
        e.dst_port = Some(53);
        e.session = Some(crate::new_id_at(t, [2; 10]));
        let mut flow = Flow { state: Some(FlowState::New), protocol_num: 17, ..Flow::default() };
        flow.payload.insert("dns".into(), "ex\"ample.com".into());
        e.flow = Some(Box::new(flow));
        e
    }

    #[test]
    fn line_and_value_agree_and_have_ten_keys() {
        let e = flow_event();
        let mut line = Vec::new();
        json_line(&e, &mut line);
        let text = std::str::from_utf8(&line).unwrap();
        assert_eq!(
            text,
            "{\"src_ip\":\"203.0.113.7\",\"dst_ip\":\"2001:db8::1\",\"src_port\":51000,\"dst_port\":53,\
             \"protocol_num\":17,\"protocol_name\":\"UDP\",\"state\":\"NEW\",\
             \"timestamp\":\"2023-11-14T22:13:20.123456\",\
             \"session_id\":\"018bcfe5-687b-7202-8202-020202020202\",\"payload\":{\"dns\":\"ex\\\"ample.com\"}}\n"
        );
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(Some(parsed.clone()), to_value(&e));
        let keys: Vec<&String> = parsed.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 10);
    }

    #[test]
    fn icmp_has_nulls_and_non_flow_events_write_nothing() {
        let mut e = flow_event();
        e.src_port = None;
        e.dst_port = None;
        e.session = None;
        e.transport = Some(Transport::Icmp);
        e.flow = Some(Box::new(Flow { protocol_num: 1, ..Flow::default() }));
        let v = to_value(&e).unwrap();
        for k in ["src_port", "dst_port", "state", "session_id", "payload"] {
            assert!(v[k].is_null(), "{k}");
        }
        assert_eq!(v["protocol_name"], "ICMP");
        e.flow = None;
        let mut out = Vec::new();
        json_line(&e, &mut out);
        assert!(out.is_empty());
        assert!(to_value(&e).is_none());
    }
}
