//! HoneyPy's canonical logger record (`date`, `time`, `date_time`, `millisecond`, `session`,
//! `protocol`, `event`, `local_host`, ..., `data`, `bytes`, `data_hash`), for consumers built
//! around HoneyPy's file, Elasticsearch, Logstash or RabbitMQ loggers.
//!
//! `data` is the recorded payload as lower-case hex, as HoneyPy wrote it. HoneyPy's `bytes`
//! was the length of that hex string and `data_hash` the MD5 of the hex string; with
//! `hex_compat` those quirks are reproduced, otherwise `bytes` is the real byte count and
//! `data_hash` the MD5 of the recorded bytes.

use md5::{Digest as _, Md5};
use serde_json::{Map, Value};

use crate::data::hex;
use crate::{Event, Kind};

/// HoneyPy's event word for a kind: `CONNECT`, `RX`, `TX`, `TEST` or `INFO`.
pub fn event_word(kind: &Kind) -> &'static str {
    match kind.as_str() {
        "session.open" => "CONNECT",
        "session.rx" => "RX",
        "session.tx" => "TX",
        "test" => "TEST",
        _ => "INFO",
    }
}

/// The HoneyPy record of `event`.
pub fn to_value(event: &Event, hex_compat: bool) -> Value {
    let (y, mo, d, h, mi, s, us) = event.time.to_parts();
    let mut iso = String::with_capacity(32);
    event.time.write_rfc3339(&mut iso, "Z");
    let mut m = Map::new();
    m.insert("date".into(), format!("{y:04}-{mo:02}-{d:02}").into());
    m.insert("time".into(), format!("{h:02}:{mi:02}:{s:02}").into());
    m.insert("date_time".into(), iso.into());
    m.insert("millisecond".into(), format!("{:03}", us / 1000).into());
    m.insert("session".into(), event.session.map(|s| s.to_string()).unwrap_or_default().into());
    m.insert(
        "protocol".into(),
        event.transport.map(|t| t.as_str().to_ascii_uppercase()).unwrap_or_default().into(),
    );
    m.insert("event".into(), event_word(&event.kind).into());
    m.insert("local_host".into(), event.dst_ip.map(|i| i.to_string()).unwrap_or_default().into());
    m.insert("local_port".into(), event.dst_port.map(|p| p.to_string()).unwrap_or_default().into());
    m.insert("service".into(), event.service.as_deref().unwrap_or_default().into());
    m.insert("remote_host".into(), event.src_ip.map(|i| i.to_string()).unwrap_or_default().into());
    m.insert(
        "remote_port".into(),
        event.src_port.map(|p| p.to_string()).unwrap_or_default().into(),
    );
    let raw: &[u8] = event.payload.as_ref().map(|p| &p.data[..]).unwrap_or_default();
    let data = hex(raw);
    let (bytes, hash) = if hex_compat {
        (data.len() as u64, hex(&Md5::digest(data.as_bytes())))
    } else {
        (event.payload.as_ref().map_or(0, |p| p.len), hex(&Md5::digest(raw)))
    };
    m.insert("bytes".into(), bytes.into());
    m.insert("data_hash".into(), if raw.is_empty() { String::new() } else { hash }.into());
    m.insert("data".into(), data.into());
    if let Some(msg) = &event.message {
        m.insert("message".into(), msg.clone().into());
    }
    m.insert("id".into(), event.id.to_string().into());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Payload, Timestamp, Transport};

    #[test]
    fn reproduces_honeypy_hex_quirks_on_request() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        let mut e = Event::at(Kind::SESSION_RX, Arc::from("n"), t, crate::new_id_at(t, [0; 10]));
        e.transport = Some(Transport::Tcp);
        e.payload = Some(Payload::new(b"hi", 64));
        let v = to_value(&e, true);
        assert_eq!(v["event"], "RX");
        assert_eq!(v["protocol"], "TCP");
        assert_eq!(v["date"], "2023-11-14");
        assert_eq!(v["time"], "22:13:20");
        assert_eq!(v["millisecond"], "123");
        assert_eq!(v["data"], "6869");
        assert_eq!(v["bytes"], 4);
        // MD5("6869")
        assert_eq!(v["data_hash"], "15f28fbc8c6e099a1e98b8a555d72374");
        let v = to_value(&e, false);
        assert_eq!(v["bytes"], 2);
        // MD5("hi")
        assert_eq!(v["data_hash"], "49f68a5c8493ec2c0bf489821c21fc3b");
    }
}
