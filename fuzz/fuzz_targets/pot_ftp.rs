//! Fuzz target: FTP command lines and PORT/EPRT address arguments.
#![no_main]

use apiary_pot::services::parsers::{ftp_parse_command, ftp_parse_eprt, ftp_parse_port};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cmd = ftp_parse_command(data);
    assert!(cmd.verb.chars().count() <= 8);
    let _ = ftp_parse_port(&cmd.arg);
    let _ = ftp_parse_eprt(&cmd.arg);
});
