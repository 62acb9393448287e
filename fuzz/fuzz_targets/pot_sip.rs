//! Fuzz target: SIP requests and digest credentials.
#![no_main]

use apiary_pot::services::parsers::{sip_check, sip_digest_params, sip_parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(sip_check(data).is_ok(), sip_parse(data).is_ok());
    if let Ok(req) = sip_parse(data) {
        if let Some(a) = req.header("Authorization") {
            let _ = sip_digest_params(a);
        }
    }
    let _ = sip_digest_params(&String::from_utf8_lossy(data));
});
