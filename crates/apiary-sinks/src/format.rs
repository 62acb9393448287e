//! Output formats and field selection shared by every sink that writes JSON documents.

use apiary_event::{Event, encode};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The record layout a sink writes (`format = "..."`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// apiary's native event JSON (`docs/events.md`).
    #[default]
    Json,
    /// Elastic Common Schema names, nested.
    Ecs,
    /// Splunk CIM names, flat.
    Cim,
    /// HoneyPy's canonical logger record.
    Honeypy,
}

/// Turns events into documents: a format plus an optional list of fields to keep.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    /// The layout.
    pub format: Format,
    /// Dotted paths to keep (`source.ip`, `payload.sha256`); empty keeps everything.
    pub fields: Vec<String>,
    /// HoneyPy's hex-string `bytes` and `data_hash` (only for `format = "honeypy"`).
    pub honeypy_hex: bool,
}

impl Encoder {
    /// The document of `event` as a JSON value.
    pub fn value(&self, event: &Event) -> Value {
        let v = match self.format {
            Format::Json => serde_json::to_value(event).unwrap_or_default(),
            Format::Ecs => encode::ecs::to_value(event),
            Format::Cim => encode::cim::to_value(event),
            Format::Honeypy => encode::honeypy::to_value(event, self.honeypy_hex),
        };
        if self.fields.is_empty() { v } else { select(&v, &self.fields) }
    }

    /// Appends the document of `event` as compact JSON (no newline).
    pub fn write(&self, event: &Event, out: &mut Vec<u8>) {
        if self.format == Format::Json && self.fields.is_empty() {
            // The hot path of JSONL, NATS and PostgreSQL: no intermediate value, no serde.
            encode::json::write(event, out);
        } else {
            let _ = serde_json::to_writer(&mut *out, &self.value(event));
        }
    }

    /// Appends the document and a newline.
    pub fn write_line(&self, event: &Event, out: &mut Vec<u8>) {
        self.write(event, out);
        out.push(b'\n');
    }

    /// The document as a byte vector.
    pub fn to_vec(&self, event: &Event) -> Vec<u8> {
        let mut v = Vec::with_capacity(512);
        self.write(event, &mut v);
        v
    }

    /// Checks the field list (used by `config check`).
    pub(crate) fn validate(&self) -> Result<(), String> {
        for f in &self.fields {
            if f.is_empty() || f.split('.').any(str::is_empty) {
                return Err(format!("bad field path {f:?}"));
            }
        }
        if self.honeypy_hex && self.format != Format::Honeypy {
            return Err("honeypy_hex needs format = \"honeypy\"".into());
        }
        Ok(())
    }
}

/// Copies only the listed dotted paths of `v` into a new object, keeping their nesting.
fn select(v: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for path in fields {
        let mut cur = v;
        let mut found = true;
        for part in path.split('.') {
            match cur.get(part) {
                Some(next) => cur = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut dst = &mut out;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                dst.insert(part.to_owned(), cur.clone());
                break;
            }
            let entry = dst.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else { break };
            dst = next;
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use apiary_event::{Kind, Payload};

    use super::*;

    #[test]
    fn selects_nested_fields_in_any_format() {
        let mut e = Event::new(Kind::SESSION_RX, Arc::from("n"));
        e.src_ip = Some("198.51.100.1".parse().unwrap());
        e.payload = Some(Payload::new(b"x", 8));
        let enc = Encoder {
            format: Format::Json,
            fields: vec!["kind".into(), "payload.sha256".into(), "nope.x".into()],
            honeypy_hex: false,
        };
        let v = enc.value(&e);
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert_eq!(v["kind"], "session.rx");
        assert_eq!(v["payload"].as_object().unwrap().len(), 1);
        let enc = Encoder { format: Format::Ecs, fields: vec!["source.ip".into()], ..enc };
        assert_eq!(enc.value(&e), serde_json::json!({"source": {"ip": "198.51.100.1"}}));
    }
}
