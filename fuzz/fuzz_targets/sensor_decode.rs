//! Fuzz target: the sensor's packet decoder and the whole per-packet path (filters, tracker)
//! on arbitrary frames of every supported link type; the decoder's hand-written fast path must
//! agree with etherparse (`decode_reference`) on every frame.
#![no_main]

use apiary_event::Timestamp;
use apiary_sensor::decode::{LinkType, decode, decode_reference};
use apiary_sensor::{Pipeline, SensorConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let link = match sel % 7 {
        0 => LinkType::Ethernet,
        1 => LinkType::RawIp,
        2 => LinkType::Ipv4,
        3 => LinkType::Ipv6,
        4 => LinkType::LinuxSll,
        5 => LinkType::LinuxSll2,
        _ => LinkType::Null,
    };
    assert_eq!(decode(link, frame), decode_reference(link, frame));
    let mut cfg = SensorConfig::default();
    cfg.filter.payload.dns.enabled = true;
    cfg.filter.payload.dns.ports = vec![53];
    cfg.filter.payload.tls.enabled = true;
    cfg.filter.payload.http.enabled = true;
    let mut pipe = Pipeline::new(&cfg, "fuzz".into(), 0);
    let mut out = Vec::new();
    pipe.packet(Timestamp::from_secs_micros(1, 0), link, frame, &mut out);
    pipe.packet(Timestamp::from_secs_micros(2, 0), link, frame, &mut out);
});
