//! Encodings of an [`Event`](crate::Event) for sinks: native JSON here; other layouts
//! (ECS, HoneyPy's record, PokieStream's `packet_log`) live in sibling modules.

use crate::Event;

pub mod cim;
pub mod ecs;
pub mod honeypy;
pub mod json;
pub mod pg_copy;

pub mod packet_log;

/// Appends the native JSON encoding of `event` and a newline to `out` (one JSONL line).
///
/// The native encoding is the stable contract documented in `docs/events.md`; [`json::write`]
/// produces it without serde on the hot path.
pub fn json_line(event: &Event, out: &mut Vec<u8>) {
    json::write(event, out);
    out.push(b'\n');
}

/// Decodes one native JSON event (spool replay, node forwarding).
pub fn from_json(bytes: &[u8]) -> Result<Event, serde_json::Error> {
    serde_json::from_slice(bytes)
}
