//! Helpers: replay generated traffic and describe records compactly.

use std::net::SocketAddr;

use apiary_event::{Event, Timestamp};
use apiary_sensor::synth::Synth;
use apiary_sensor::{ReplayOptions, SensorConfig, Stats, replay};

pub(crate) const T0: i64 = 1_700_000_000;

pub(crate) fn synth() -> Synth {
    Synth::new(Timestamp::from_secs_micros(T0, 0))
}

pub(crate) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(crate) fn run(cfg: &SensorConfig, s: &Synth) -> (Vec<Event>, Stats) {
    let mut out = Vec::new();
    let stats = replay(cfg, s.to_pcap().as_slice(), &mut out, &ReplayOptions::default()).unwrap();
    (out, stats)
}

/// `+secs.micros STATE src > dst pN [payload] [history] [reason]`, times relative to T0.
pub(crate) fn brief(e: &Event) -> String {
    let f = e.flow.as_deref().unwrap();
    let rel = e.time.as_micros() - T0 * 1_000_000;
    let state = f.state.map_or("ICMP".to_owned(), |s| format!("{s:?}").to_uppercase());
    let ep = |ip: Option<std::net::IpAddr>, p: Option<u16>| match p {
        Some(p) => SocketAddr::new(ip.unwrap(), p).to_string(),
        None => ip.unwrap().to_string(),
    };
    let mut s = format!(
        "+{}.{:06} {state} {} > {} p{}",
        rel / 1_000_000,
        rel % 1_000_000,
        ep(e.src_ip, e.src_port),
        ep(e.dst_ip, e.dst_port),
        f.protocol_num
    );
    for (k, v) in &f.payload {
        s.push_str(&format!(" {k}={v}"));
    }
    if let Some(h) = &f.history {
        s.push_str(&format!(" h={h}"));
    }
    if let Some(r) = &f.reason {
        s.push_str(&format!(" reason={r}"));
    }
    s
}

pub(crate) fn briefs(events: &[Event]) -> Vec<String> {
    events.iter().map(brief).collect()
}
