//! Fuzzes the RESP reply parser of the Redis sink: check and parse must agree on complete
//! replies and never panic. Included by path, like `sinks_hpfeeds_frame`.
#![no_main]

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../crates/apiary-sinks/src/sinks/redis/resp.rs"]
mod resp;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = resp::check_reply(data) {
        let (_, m) = resp::Reply::parse(data).expect("checked reply must parse");
        assert_eq!(n, m);
    }
});
