//! Fuzz target: SMTP command lines.
#![no_main]

use apiary_pot::services::parsers::smtp_parse_command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = smtp_parse_command(data);
});
