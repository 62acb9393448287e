//! Fuzz target: DNS queries, checked, parsed and answered; the answer stays under 512 bytes.
#![no_main]

use apiary_pot::services::parsers::{dns_answer, dns_check, dns_parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = dns_check(data);
    let parsed = dns_parse(data);
    assert_eq!(checked.is_ok(), parsed.is_ok());
    if let Ok(q) = parsed {
        assert!(dns_answer(&q, 1).len() <= 512);
    }
});
