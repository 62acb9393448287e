//! Fuzz target: MySQL packets and the HandshakeResponse41 login parser.
#![no_main]

use apiary_pot::services::parsers::{mysql_check, mysql_parse, mysql_parse_handshake};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(mysql_check(data).is_ok(), mysql_parse(data).is_ok());
    if let Ok((_, payload)) = mysql_parse(data) {
        let _ = mysql_parse_handshake(payload);
    }
    let _ = mysql_parse_handshake(data);
});
