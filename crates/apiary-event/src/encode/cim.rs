//! Splunk Common Information Model names (flat), as HoneyPy's Splunk logger sent them
//! (`date_time`, `session_id`, `dest_ip`, `src_ip`, `data`, `bytes`, `data_hash`) plus the CIM
//! Authentication, Web, Network Resolution and Network Traffic fields apiary knows.

use serde_json::{Map, Value};

use crate::Event;

/// The flat CIM record of `event`.
pub fn to_value(event: &Event) -> Value {
    let mut m = Map::new();
    let mut ts = String::with_capacity(32);
    event.time.write_rfc3339(&mut ts, "Z");
    m.insert("date_time".into(), ts.into());
    m.insert("event_id".into(), event.id.to_string().into());
    m.insert("event".into(), super::honeypy::event_word(&event.kind).into());
    m.insert("signature".into(), event.kind.as_str().into());
    m.insert("vendor_product".into(), "apiary".into());
    m.insert("dvc".into(), event.node.as_ref().into());
    if let Some(s) = &event.service {
        m.insert("service".into(), s.as_ref().into());
    }
    if let Some(p) = &event.protocol {
        m.insert("app".into(), p.as_ref().into());
    }
    if let Some(t) = event.transport {
        m.insert("protocol".into(), t.as_str().to_ascii_uppercase().into());
        m.insert("transport".into(), t.as_str().into());
    }
    if let Some(ip) = event.src_ip {
        m.insert("src_ip".into(), ip.to_string().into());
        m.insert("src".into(), ip.to_string().into());
    }
    if let Some(p) = event.src_port {
        m.insert("src_port".into(), p.into());
    }
    if let Some(ip) = event.dst_ip {
        m.insert("dest_ip".into(), ip.to_string().into());
        m.insert("dest".into(), ip.to_string().into());
    }
    if let Some(p) = event.dst_port {
        m.insert("dest_port".into(), p.into());
    }
    if let Some(s) = event.session {
        m.insert("session_id".into(), s.to_string().into());
    }
    if let Some(msg) = &event.message {
        m.insert("message".into(), msg.clone().into());
    }
    if let Some(p) = &event.payload {
        m.insert("data".into(), crate::data::hex(&p.data).into());
        m.insert("bytes".into(), p.len.into());
        m.insert("data_hash".into(), p.sha256_hex().into());
    }
    if let Some(c) = &event.close {
        m.insert("duration".into(), (c.duration_ms as f64 / 1000.0).into());
        m.insert("bytes_in".into(), c.bytes_in.into());
        m.insert("bytes_out".into(), c.bytes_out.into());
    }
    if let Some(a) = &event.auth {
        if let Some(u) = &a.username {
            m.insert("user".into(), u.clone().into());
        }
        if let Some(p) = &a.password {
            m.insert("password".into(), p.clone().into());
        }
        m.insert("action".into(), if a.success { "success" } else { "failure" }.into());
        m.insert(
            "authentication_method".into(),
            serde_json::to_value(a.method).unwrap_or_default(),
        );
    }
    if let Some(c) = &event.command {
        m.insert("process".into(), c.input.clone().into());
    }
    if let Some(h) = &event.http {
        m.insert("http_method".into(), h.method.clone().into());
        m.insert("uri_path".into(), h.target.clone().into());
        if let Some(ua) = &h.user_agent {
            m.insert("http_user_agent".into(), ua.clone().into());
        }
        if let Some(host) = &h.host {
            m.insert("site".into(), host.clone().into());
        }
        if let Some(s) = h.status {
            m.insert("status".into(), s.into());
        }
    }
    if let Some(d) = &event.dns {
        m.insert("query".into(), d.qname.clone().into());
        m.insert("record_type".into(), d.qtype.clone().into());
    }
    if let Some(d) = &event.download {
        m.insert("url".into(), d.url.clone().into());
        if let Some(h) = &d.sha256 {
            m.insert("file_hash".into(), h.clone().into());
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Kind, Payload};

    #[test]
    fn flat_cim_names() {
        let mut e = Event::new(Kind::SESSION_RX, Arc::from("edge"));
        e.dst_ip = Some("192.0.2.1".parse().unwrap());
        e.payload = Some(Payload::new(b"ab", 10));
        let v = to_value(&e);
        assert_eq!(v["dest_ip"], "192.0.2.1");
        assert_eq!(v["event"], "RX");
        assert_eq!(v["data"], "6162");
        assert_eq!(v["bytes"], 2);
    }
}
