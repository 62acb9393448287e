//! Fuzz target: PostgreSQL startup packets, typed frontend messages and SASL initial
//! responses.
#![no_main]

use apiary_pot::services::parsers::{
    PgError, pg_check_message, pg_check_startup, pg_parse_message, pg_parse_sasl_initial,
    pg_parse_startup,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match pg_parse_startup(data) {
        Ok(_) | Err(PgError::Malformed) => assert!(pg_check_startup(data).is_ok()),
        Err(e) => assert_eq!(pg_check_startup(data), Err(e)),
    }
    assert_eq!(pg_check_message(data).is_ok(), pg_parse_message(data).is_ok());
    if let Ok((_, body)) = pg_parse_message(data) {
        let _ = pg_parse_sasl_initial(body);
    }
});
