//! The native JSON encoding written by hand into a caller's buffer: the JSONL, NATS and
//! PostgreSQL hot path.
//!
//! The output is byte-for-byte what `serde_json::to_writer(out, event)` writes (the golden
//! tests and `matches_serde_for_every_block` pin that), but without serde's per-field dispatch
//! and without a single allocation for the common kinds: ids, times, addresses and payloads
//! are formatted straight into `out`. The rare boxed blocks (`auth`, `http`, `flow`, ...) and
//! the free-form `fields` still go through serde, whose impls for them allocate nothing either.

use std::io::Write as _;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use uuid::Uuid;

use crate::{Event, Payload};

/// Appends the native JSON of `event` (no newline).
pub fn write(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    uuid(out, &event.id);
    out.extend_from_slice(b",\"time\":\"");
    event.time.write_rfc3339_bytes(out);
    out.extend_from_slice(b"\",\"kind\":");
    string(out, event.kind.as_str());
    out.extend_from_slice(b",\"node\":");
    string(out, &event.node);
    if let Some(v) = &event.pot {
        out.extend_from_slice(b",\"pot\":");
        string(out, v);
    }
    if let Some(v) = &event.service {
        out.extend_from_slice(b",\"service\":");
        string(out, v);
    }
    if let Some(v) = &event.protocol {
        out.extend_from_slice(b",\"protocol\":");
        string(out, v);
    }
    if let Some(v) = event.transport {
        out.extend_from_slice(b",\"transport\":\"");
        out.extend_from_slice(v.as_str().as_bytes());
        out.push(b'"');
    }
    if let Some(v) = event.src_ip {
        out.extend_from_slice(b",\"src_ip\":");
        ip(out, v);
    }
    if let Some(v) = event.src_port {
        out.extend_from_slice(b",\"src_port\":");
        int(out, v);
    }
    if let Some(v) = event.dst_ip {
        out.extend_from_slice(b",\"dst_ip\":");
        ip(out, v);
    }
    if let Some(v) = event.dst_port {
        out.extend_from_slice(b",\"dst_port\":");
        int(out, v);
    }
    if let Some(v) = &event.session {
        out.extend_from_slice(b",\"session\":");
        uuid(out, v);
    }
    if let Some(v) = &event.message {
        out.extend_from_slice(b",\"message\":");
        string(out, v);
    }
    if let Some(v) = &event.payload {
        out.extend_from_slice(b",\"payload\":");
        payload(out, v);
    }
    block(out, "close", event.close.as_deref());
    block(out, "auth", event.auth.as_deref());
    block(out, "command", event.command.as_deref());
    block(out, "http", event.http.as_deref());
    block(out, "dns", event.dns.as_deref());
    block(out, "download", event.download.as_deref());
    block(out, "flow", event.flow.as_deref());
    block(out, "tls", event.tls.as_deref());
    block(out, "pot_info", event.pot_info.as_deref());
    if !event.fields.is_empty() {
        out.extend_from_slice(b",\"fields\":");
        serde(out, &event.fields);
    }
    out.push(b'}');
}

fn block<T: Serialize>(out: &mut Vec<u8>, name: &str, v: Option<&T>) {
    if let Some(v) = v {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        serde(out, v);
    }
}

fn serde<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing into a Vec cannot fail, and none of the event's Serialize impls returns an error
    // (every map key is a string).
    let _ = serde_json::to_writer(&mut *out, v);
}

fn uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buf = Uuid::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

fn ip(out: &mut Vec<u8>, addr: IpAddr) {
    out.push(b'"');
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            int(out, a);
            out.push(b'.');
            int(out, b);
            out.push(b'.');
            int(out, c);
            out.push(b'.');
            int(out, d);
        }
        // IPv6 text has zero compression and embedded-IPv4 rules; std's Display has them right.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
    out.push(b'"');
}

fn payload(out: &mut Vec<u8>, p: &Payload) {
    out.extend_from_slice(b"{\"len\":");
    int(out, p.len);
    out.extend_from_slice(b",\"sha256\":\"");
    crate::data::hex_into(&p.sha256, out);
    out.extend_from_slice(b"\",\"b64\":\"");
    let start = out.len();
    out.resize(start + base64::encoded_len(p.data.len(), true).unwrap_or(0), 0);
    if let Some(tail) = out.get_mut(start..) {
        // The tail was sized by encoded_len, so this cannot run out of room.
        let written = B64.encode_slice(&p.data, tail).unwrap_or(0);
        out.truncate(start + written);
    }
    out.push(b'"');
    if p.truncated() {
        out.extend_from_slice(b",\"truncated\":true");
    }
    out.push(b'}');
}

/// Which bytes serde_json escapes, and how: 0 passes through, `u` is `\u00XX`, anything else
/// is the letter after the backslash.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[usize::from(b)];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if esc == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        } else {
            out.push(b'\\');
            out.push(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::{
        Auth, AuthMethod, Close, Command, Dns, Download, Flow, FlowState, Http, Kind, PotInfo,
        Timestamp, Tls, Transport, new_id_at,
    };

    fn serde_bytes(e: &Event) -> Vec<u8> {
        serde_json::to_vec(e).unwrap()
    }

    fn mine(e: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        write(e, &mut out);
        out
    }

    #[test]
    fn escapes_every_byte_like_serde() {
        let all: String = (0u8..128).map(char::from).chain("é€😀\u{7f}".chars()).collect();
        let mut out = Vec::new();
        string(&mut out, &all);
        assert_eq!(out, serde_json::to_vec(&all).unwrap());
    }

    #[test]
    fn minimal_event_matches_serde() {
        let e = Event::at(Kind::new("x\"y"), Arc::from("n\n"), Timestamp::EPOCH, Uuid::nil());
        assert_eq!(
            String::from_utf8(mine(&e)).unwrap(),
            String::from_utf8(serde_bytes(&e)).unwrap()
        );
    }

    #[test]
    fn matches_serde_for_every_block() {
        let t = Timestamp::from_micros(-62_135_596_800_000_001);
        let mut e = Event::at(Kind::SESSION_RX, Arc::from("edge\u{1}"), t, new_id_at(t, [9; 10]));
        e.pot = Some(Arc::from("p\\"));
        e.service = Some(Arc::from("web"));
        e.protocol = Some(Arc::from("http"));
        e.transport = Some(Transport::Icmpv6);
        e.src_ip = Some("::ffff:192.0.2.1".parse().unwrap());
        e.src_port = Some(0);
        e.dst_ip = Some("255.255.255.255".parse().unwrap());
        e.dst_port = Some(65_535);
        e.session = Some(Uuid::max());
        e.message = Some("tab\there \"quoted\" \u{0}".into());
        e.payload = Some(Payload::new(&[0xff, 0, 1, 2, 3, 4, 5], 5));
        e.close = Some(Box::new(Close {
            duration_ms: u64::MAX,
            bytes_in: 1,
            bytes_out: 2,
            reason: "peer".into(),
        }));
        let mut extra = BTreeMap::new();
        extra.insert("salt".into(), "\u{1f}".into());
        e.auth = Some(Box::new(Auth {
            method: AuthMethod::Hashed,
            username: Some("root".into()),
            password: None,
            success: true,
            extra,
        }));
        e.command = Some(Box::new(Command {
            input: "ls -la".into(),
            interpreter: Some("shell".into()),
            known: Some(false),
        }));
        e.http = Some(Box::new(Http {
            method: "POST".into(),
            target: "/a?b=c".into(),
            version: "HTTP/1.1".into(),
            host: Some("h".into()),
            user_agent: None,
            headers: vec![("Host".into(), "h".into())],
            body: Some(Payload::new(b"a=1", 2)),
            status: Some(404),
        }));
        e.dns = Some(Box::new(Dns { qname: "example.com".into(), qtype: "A".into(), id: Some(7) }));
        e.download =
            Some(Box::new(Download { url: "http://x/".into(), sha256: None, size: Some(3) }));
        e.flow = Some(Box::new(Flow {
            state: Some(FlowState::Abort),
            protocol_num: 6,
            ..Flow::default()
        }));
        e.tls =
            Some(Box::new(Tls { sni: Some("s".into()), version: None, alpn: vec!["h2".into()] }));
        e.pot_info = Some(Box::new(PotInfo {
            pot_type: Some("cowrie".into()),
            raw: Some(serde_json::json!({"eventid": "cowrie.login", "n": 1.5})),
            ..PotInfo::default()
        }));
        e.fields.insert("seq".into(), 1.into());
        assert_eq!(
            String::from_utf8(mine(&e)).unwrap(),
            String::from_utf8(serde_bytes(&e)).unwrap()
        );

        // And every optional block absent again, one at a time.
        let full = e;
        for i in 0..19 {
            let mut e = full.clone();
            match i {
                0 => e.pot = None,
                1 => e.service = None,
                2 => e.protocol = None,
                3 => e.transport = None,
                4 => e.src_ip = Some("10.0.0.1".parse().unwrap()),
                5 => e.src_port = None,
                6 => e.dst_ip = None,
                7 => e.session = None,
                8 => e.message = None,
                9 => e.payload = Some(Payload::new(b"", 0)),
                10 => e.close = None,
                11 => e.auth = None,
                12 => e.command = None,
                13 => e.http = None,
                14 => e.dns = None,
                15 => e.download = None,
                16 => e.flow = None,
                17 => e.tls = None,
                _ => e.fields.clear(),
            }
            assert_eq!(mine(&e), serde_bytes(&e), "variant {i}");
        }
    }

    #[test]
    fn appends_to_what_is_already_there() {
        let e = Event::at(Kind::TEST, Arc::from("n"), Timestamp::EPOCH, Uuid::nil());
        let mut out = b"prefix".to_vec();
        write(&e, &mut out);
        assert!(out.starts_with(b"prefix{\"id\":"));
        assert_eq!(&out[6..], &serde_bytes(&e)[..]);
    }
}
