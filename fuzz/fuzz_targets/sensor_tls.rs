//! Fuzz target: TLS ClientHello SNI extraction, whole and at every split point.
#![no_main]

use apiary_sensor::extract::tls::client_hello_sni;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = client_hello_sni(data);
    if data.len() < 4096 {
        for n in (0..data.len()).step_by(7) {
            let _ = client_hello_sni(&data[..n]);
        }
    }
});
