//! Fuzz target: the pcap/pcapng reader and a replay of whatever it yields.
#![no_main]

use apiary_sensor::capture::pcap::PcapReader;
use apiary_sensor::{ReplayOptions, SensorConfig, replay};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = PcapReader::new(data) {
        let mut n = 0;
        while let Ok(Some(p)) = r.next_packet() {
            assert!(p.data.len() <= apiary_sensor::capture::pcap::MAX_PACKET);
            n += 1;
            if n > 100_000 {
                break;
            }
        }
    }
    let _ = replay(&SensorConfig::default(), data, &mut Vec::new(), &ReplayOptions::default());
});
