//! Fuzz target: Redis requests (RESP arrays and inline commands): check and parse agree, and
//! a parsed request never claims more bytes than it was given.
#![no_main]

use apiary_pot::services::parsers::{RespError, resp_check, resp_parse, resp_split_inline};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = resp_check(data);
    match resp_parse(data) {
        Ok((_, used)) => {
            assert_eq!(checked, Ok(used));
            assert!(used <= data.len());
        }
        Err(RespError::Incomplete) => assert_eq!(checked, Err(RespError::Incomplete)),
        Err(_) => {}
    }
    let _ = resp_split_inline(data);
});
