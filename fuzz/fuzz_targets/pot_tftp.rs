//! Fuzz target: TFTP packets.
#![no_main]

use apiary_pot::services::parsers::{tftp_check, tftp_parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(tftp_check(data).is_ok(), tftp_parse(data).is_ok());
});
