//! Fuzz target: decoding a native JSON event (spool replay and node forwarding read these).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = apiary_event::encode::from_json(data) {
        // Whatever decodes must encode again and decode to the same event.
        let mut line = Vec::new();
        apiary_event::encode::json_line(&event, &mut line);
        let again = apiary_event::encode::from_json(&line).ok();
        assert_eq!(again.as_ref(), Some(&event));
    }
    let _ = std::str::from_utf8(data).map(apiary_event::Timestamp::parse);
});
