//! Fuzz target: DNS question extraction over UDP and TCP.
#![no_main]

use apiary_sensor::extract::Extract;
use apiary_sensor::extract::dns::{tcp_question, udp_question};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Extract::Name(n) = udp_question(data) {
        assert!(n.len() <= 255);
    }
    let _ = tcp_question(data);
});
