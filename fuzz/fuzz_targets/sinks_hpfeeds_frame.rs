//! Fuzzes the hpfeeds frame parser of the hpfeeds sink: check and parse must agree and never
//! panic. The module is included by path so the fuzz build does not pull in every sink client.
#![no_main]

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../crates/apiary-sinks/src/sinks/hpfeeds/frame.rs"]
mod frame;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = frame::check(data);
    let parsed = frame::Frame::parse(data);
    match (checked, parsed) {
        (Ok(n), Ok((_, m))) => assert_eq!(n, m),
        (Ok(_), Err(frame::FrameError::Invalid(_))) => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("check and parse disagree: {a:?} {b:?}"),
    }
});
