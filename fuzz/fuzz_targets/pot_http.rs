//! Fuzz target: the web emulators' HTTP request head and chunked-body parsers (two-phase).
#![no_main]

use apiary_pot::services::parsers::{http_check_chunked, http_check_head, http_decode_chunked, http_parse_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = http_check_head(data) {
        // Phase two must accept whatever phase one accepted.
        assert!(http_parse_head(data.get(..n).unwrap_or_default()).is_some());
        let rest = data.get(n..).unwrap_or_default();
        if let Ok(Some(m)) = http_check_chunked(rest) {
            let body = http_decode_chunked(rest.get(..m).unwrap_or_default());
            assert!(body.len() <= m);
        }
    }
    let _ = http_check_chunked(data);
});
