//! Elastic Common Schema (ECS 8) field names, nested as ECS documents are, for SIEMs that
//! expect one schema (Elasticsearch, OpenSearch, Elastic Agent pipelines).
//!
//! Fields ECS has no name for live under `apiary.*` (session id, payload, password).

use serde_json::{Map, Value, json};

use crate::Event;

fn put(m: &mut Map<String, Value>, path: &str, v: Value) {
    let mut cur = m;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_owned(), v);
            return;
        }
        let entry = cur.entry(p.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        cur = next;
    }
}

/// ECS category of a kind (`event.category`).
fn category(kind: &str) -> &'static str {
    match kind.split('.').next().unwrap_or_default() {
        "auth" => "authentication",
        "flow" | "session" | "dns" => "network",
        "http" => "web",
        "command" => "process",
        "download" | "file" => "file",
        "node" | "pot" => "host",
        _ => "intrusion_detection",
    }
}

/// The ECS document of `event`.
pub fn to_value(event: &Event) -> Value {
    let mut m = Map::new();
    let mut ts = String::with_capacity(32);
    event.time.write_rfc3339(&mut ts, "Z");
    put(&mut m, "@timestamp", ts.into());
    put(&mut m, "ecs.version", "8.11.0".into());
    put(&mut m, "event.id", event.id.to_string().into());
    put(&mut m, "event.kind", "event".into());
    put(&mut m, "event.action", event.kind.as_str().into());
    put(&mut m, "event.category", json!([category(event.kind.as_str())]));
    put(&mut m, "event.dataset", "apiary.events".into());
    put(&mut m, "event.module", "apiary".into());
    put(&mut m, "observer.name", event.node.as_ref().into());
    put(&mut m, "observer.type", "honeypot".into());
    put(&mut m, "observer.product", "apiary".into());
    if let Some(p) = &event.pot {
        put(&mut m, "apiary.pot", p.as_ref().into());
    }
    if let Some(s) = &event.service {
        put(&mut m, "service.name", s.as_ref().into());
    }
    if let Some(p) = &event.protocol {
        put(&mut m, "network.protocol", p.as_ref().into());
    }
    if let Some(t) = event.transport {
        put(&mut m, "network.transport", t.as_str().into());
    }
    if let Some(ip) = event.src_ip {
        put(&mut m, "source.ip", ip.to_string().into());
    }
    if let Some(p) = event.src_port {
        put(&mut m, "source.port", p.into());
    }
    if let Some(ip) = event.dst_ip {
        put(&mut m, "destination.ip", ip.to_string().into());
    }
    if let Some(p) = event.dst_port {
        put(&mut m, "destination.port", p.into());
    }
    if let Some(s) = event.session {
        put(&mut m, "apiary.session", s.to_string().into());
    }
    if let Some(msg) = &event.message {
        put(&mut m, "message", msg.clone().into());
    }
    if let Some(p) = &event.payload {
        put(&mut m, "apiary.payload", serde_json::to_value(p).unwrap_or_default());
    }
    if let Some(c) = &event.close {
        put(&mut m, "event.duration", (c.duration_ms.saturating_mul(1_000_000)).into());
        put(&mut m, "source.bytes", c.bytes_in.into());
        put(&mut m, "destination.bytes", c.bytes_out.into());
        put(&mut m, "event.reason", c.reason.clone().into());
    }
    if let Some(a) = &event.auth {
        if let Some(u) = &a.username {
            put(&mut m, "user.name", u.clone().into());
        }
        if let Some(p) = &a.password {
            put(&mut m, "apiary.auth.password", p.clone().into());
        }
        put(&mut m, "event.outcome", if a.success { "success" } else { "failure" }.into());
        put(&mut m, "apiary.auth.method", serde_json::to_value(a.method).unwrap_or_default());
    }
    if let Some(c) = &event.command {
        put(&mut m, "process.command_line", c.input.clone().into());
    }
    if let Some(h) = &event.http {
        put(&mut m, "http.request.method", h.method.clone().into());
        put(&mut m, "url.original", h.target.clone().into());
        put(&mut m, "http.version", h.version.trim_start_matches("HTTP/").into());
        if let Some(host) = &h.host {
            put(&mut m, "url.domain", host.clone().into());
        }
        if let Some(ua) = &h.user_agent {
            put(&mut m, "user_agent.original", ua.clone().into());
        }
        if let Some(s) = h.status {
            put(&mut m, "http.response.status_code", s.into());
        }
    }
    if let Some(d) = &event.dns {
        put(&mut m, "dns.question.name", d.qname.clone().into());
        put(&mut m, "dns.question.type", d.qtype.clone().into());
        if let Some(id) = d.id {
            put(&mut m, "dns.id", id.to_string().into());
        }
    }
    if let Some(d) = &event.download {
        put(&mut m, "url.full", d.url.clone().into());
        if let Some(h) = &d.sha256 {
            put(&mut m, "file.hash.sha256", h.clone().into());
        }
        if let Some(s) = d.size {
            put(&mut m, "file.size", s.into());
        }
    }
    if let Some(f) = &event.flow {
        if let Some(c) = &f.community_id {
            put(&mut m, "network.community_id", c.clone().into());
        }
        put(&mut m, "network.iana_number", f.protocol_num.to_string().into());
        put(&mut m, "apiary.flow", serde_json::to_value(f).unwrap_or_default());
    }
    if let Some(t) = &event.tls
        && let Some(sni) = &t.sni
    {
        put(&mut m, "tls.client.server_name", sni.clone().into());
    }
    if !event.fields.is_empty() {
        put(&mut m, "apiary.fields", Value::Object(event.fields.clone()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Kind, Transport};

    #[test]
    fn nests_ecs_names() {
        let mut e = Event::new(Kind::SESSION_OPEN, Arc::from("edge"));
        e.src_ip = Some("203.0.113.7".parse().unwrap());
        e.src_port = Some(4000);
        e.transport = Some(Transport::Tcp);
        let v = to_value(&e);
        assert_eq!(v["source"]["ip"], "203.0.113.7");
        assert_eq!(v["source"]["port"], 4000);
        assert_eq!(v["event"]["action"], "session.open");
        assert_eq!(v["event"]["id"], e.id.to_string());
        assert_eq!(v["network"]["transport"], "tcp");
        assert_eq!(v["observer"]["name"], "edge");
    }
}
