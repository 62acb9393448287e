//! Fuzz target: SFTP v3 client packets: framing and decoding agree, and a decoded packet
//! never claims bytes past its frame.
#![no_main]

use apiary_pot::services::parsers::{SftpError, sftp_check, sftp_parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match sftp_check(data) {
        Ok(n) => {
            assert!(n <= data.len());
            // Decoding sees only the frame; its errors are about fields, never framing.
            let r = sftp_parse(data.get(..n).unwrap_or_default());
            assert!(!matches!(r, Err(SftpError::Incomplete | SftpError::BadLength(_))));
        }
        Err(e) => assert_eq!(sftp_parse(data).err(), Some(e)),
    }
});
