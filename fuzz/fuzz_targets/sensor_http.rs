//! Fuzz target: HTTP Host header extraction and wildcard matching of what it finds.
#![no_main]

use apiary_sensor::extract::Extract;
use apiary_sensor::extract::glob::Glob;
use apiary_sensor::extract::http::request_host;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Extract::Name(n) = request_host(data) {
        let _ = Glob::new(&n).matches(&n.to_lowercase());
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some((p, n)) = s.split_once('\n') {
            let _ = Glob::new(p).matches(n);
        }
    }
});
