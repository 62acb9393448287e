//! Fuzz target: the telnet IAC state machine, fed in two arbitrary pieces; the result must not
//! depend on where the stream was split.
#![no_main]

use apiary_pot::services::parsers::TelnetIacParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(split);
    let mut whole = TelnetIacParser::default();
    let (mut d1, mut c1) = (Vec::new(), Vec::new());
    whole.feed(data, &mut d1, &mut c1);
    let mut parts = TelnetIacParser::default();
    let (mut d2, mut c2) = (Vec::new(), Vec::new());
    parts.feed(a, &mut d2, &mut c2);
    parts.feed(b, &mut d2, &mut c2);
    assert_eq!((d1, c1), (d2, c2));
});
