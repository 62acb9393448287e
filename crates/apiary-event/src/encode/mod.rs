//! Encodings of an [`Event`](crate::Event) for sinks: native JSON here; other layouts
//! (ECS, HoneyPy's record, PokieStream's `packet_log`) live in sibling modules.

use crate::Event;

pub mod cim;
pub mod ecs;
pub mod honeypy;

pub mod packet_log;

/// Appends the native JSON encoding of `event` and a newline to `out` (one JSONL line).
///
/// The native encoding is the stable contract documented in `docs/events.md`.
pub fn json_line(event: &Event, out: &mut Vec<u8>) {
    // Serialising our own types into a Vec cannot fail: every map key is a string and no
    // Serialize impl here returns an error.
    if serde_json::to_writer(&mut *out, event).is_ok() {
        out.push(b'\n');
    }
}

/// Decodes one native JSON event (spool replay, node forwarding).
pub fn from_json(bytes: &[u8]) -> Result<Event, serde_json::Error> {
    serde_json::from_slice(bytes)
}
