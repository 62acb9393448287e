//! PokieStream's bundled `plain` plugin as a formatter: one coloured line per record.

use std::io::Write as _;

use apiary_event::encode::packet_log::{protocol_name, state_name};
use apiary_event::{Event, FlowState, Transport};

use super::rdns::Rdns;

fn color(state: Option<FlowState>) -> &'static str {
    match state {
        Some(FlowState::New) => "\x1b[34m",
        Some(FlowState::Established) => "\x1b[32m",
        Some(FlowState::Close) => "\x1b[31m",
        Some(FlowState::Abort) => "\x1b[1;31m",
        _ => "\x1b[33m",
    }
}

fn none_or<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "None".to_owned(), |v| v.to_string())
}

/// Appends the `plain` line for `e` (nothing for events that are not flow records).
pub fn line(e: &Event, rdns: &mut dyn Rdns, colored: bool, out: &mut Vec<u8>) {
    let Some(flow) = e.flow.as_deref() else { return };
    let mut ts = String::with_capacity(26);
    e.time.write_rfc3339(&mut ts, "");
    let src = none_or(e.src_ip);
    let dst = none_or(e.dst_ip);
    let name = e.dst_ip.and_then(|ip| rdns.name(ip)).unwrap_or_else(|| dst.clone());
    let proto = e.transport.map_or("None", protocol_name);
    if colored {
        out.extend_from_slice(color(flow.state).as_bytes());
    }
    if e.transport == Some(Transport::Icmp) {
        let _ =
            write!(out, "[{ts}] {src} -> {dst} ({name}) Protocol: {proto} ({})", flow.protocol_num);
    } else {
        let _ = write!(
            out,
            "[{ts}] {src}:{} -> {dst} ({name}):{} Protocol: {proto} ({}), State: {}, Session: {}",
            none_or(e.src_port),
            none_or(e.dst_port),
            flow.protocol_num,
            flow.state.map_or("None", state_name),
            none_or(e.session),
        );
        if let Some(h) = flow.payload.get("host") {
            let _ = write!(out, ", Host: {}", printable(h));
        }
        if let Some(sni) = flow.payload.get("sni") {
            let _ = write!(out, ", SNI: {}", printable(sni));
        }
        if let Some(d) = flow.payload.get("dns") {
            let _ = write!(out, ", DNS: {}", printable(d));
        }
    }
    if colored {
        out.extend_from_slice(b"\x1b[0m");
    }
    out.push(b'\n');
}

/// Names come from attacker packets: never let them carry terminal escapes or newlines.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::rdns::NoRdns;
    use apiary_event::{Flow, Kind, Timestamp};
    use std::sync::Arc;

    #[test]
    fn tcp_and_icmp_lines() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        let mut e = Event::at(Kind::FLOW_NEW, Arc::from("n"), t, uuid::Uuid::nil());
        e.transport = Some(Transport::Tcp);
        e.src_ip = Some("10.0.0.1".parse().unwrap());
        e.dst_ip = Some("10.0.0.2".parse().unwrap());
        e.src_port = Some(1234);
        e.dst_port = Some(80);
        e.session = Some(uuid::Uuid::nil());
        let mut f = Flow { state: Some(FlowState::New), protocol_num: 6, ..Flow::default() };
        f.payload.insert("host".into(), "x\x1b[2J".into());
        e.flow = Some(Box::new(f));
        let mut out = Vec::new();
        line(&e, &mut NoRdns, false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2023-11-14T22:13:20.123456] 10.0.0.1:1234 -> 10.0.0.2 (10.0.0.2):80 Protocol: TCP (6), State: NEW, Session: 00000000-0000-0000-0000-000000000000, Host: x?[2J\n"
        );
        e.transport = Some(Transport::Icmp);
        e.flow = Some(Box::new(Flow { protocol_num: 1, ..Flow::default() }));
        let mut out = Vec::new();
        line(&e, &mut NoRdns, true, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\x1b[33m[2023-11-14T22:13:20.123456] 10.0.0.1 -> 10.0.0.2 (10.0.0.2) Protocol: ICMP (1)\x1b[0m\n"
        );
    }
}
