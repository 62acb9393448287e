//! The RFC 5424 formatter.

use apiary_event::Event;

/// Severity for an event: login attempts and uploads are notices, the rest informational.
fn severity(e: &Event) -> u8 {
    match e.kind.as_str() {
        "auth.attempt" | "file.upload" | "download.attempt" | "command.input" | "test" => 5,
        _ => 6,
    }
}

/// Keeps printable ASCII (33..=126) for header fields, `-` when nothing is left.
fn header_field(out: &mut Vec<u8>, s: &str, max: usize) {
    let start = out.len();
    out.extend(s.bytes().filter(|b| (33..=126).contains(b)).take(max));
    if out.len() == start {
        out.push(b'-');
    }
}

/// Appends one RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [SD] MSG`.
/// MSGID is the event kind; the structured data carries the event id for deduplication.
pub fn rfc5424(
    out: &mut Vec<u8>,
    e: &Event,
    facility: u8,
    hostname: Option<&str>,
    app: &str,
    msg: &[u8],
) {
    let pri = u16::from(facility) * 8 + u16::from(severity(e));
    out.extend_from_slice(format!("<{pri}>1 ").as_bytes());
    let mut ts = String::with_capacity(32);
    e.time.write_rfc3339(&mut ts, "Z");
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    header_field(out, hostname.unwrap_or(&e.node), 255);
    out.push(b' ');
    header_field(out, app, 48);
    out.extend_from_slice(b" - ");
    header_field(out, e.kind.as_str(), 32);
    // 32473 is the private enterprise number reserved for documentation (RFC 5612).
    out.extend_from_slice(format!(" [apiary@32473 id=\"{}\"] ", e.id).as_bytes());
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use apiary_event::{Kind, Timestamp};

    use super::*;

    #[test]
    fn formats_header_fields() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        let e = Event::at(
            Kind::AUTH_ATTEMPT,
            Arc::from("edge 1"),
            t,
            apiary_event::new_id_at(t, [0; 10]),
        );
        let mut out = Vec::new();
        rfc5424(&mut out, &e, 16, None, "apiary", b"{}");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            format!(
                "<133>1 2023-11-14T22:13:20.123456Z edge1 apiary - auth.attempt [apiary@32473 id=\"{}\"] {{}}",
                e.id
            )
        );
    }
}
