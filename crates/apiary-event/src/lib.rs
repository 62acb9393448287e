//! apiary's one event schema: everything any part of apiary observes becomes an [`Event`].
//!
//! This crate holds the types, ids, times and encodings, and does no I/O, so every other crate
//! (listeners, the sensor, the Core, sinks) can depend on it without pulling in a runtime.
//! The JSON encoding is a stable contract documented field by field in `docs/events.md`.

mod data;
pub mod duration;
mod emit;
pub mod encode;
mod event;
mod id;
mod kind;
mod time;

pub use data::{
    Auth, AuthMethod, Close, Command, Dns, Download, Flow, FlowState, Http, Payload, PotInfo, Tls,
};
pub use emit::{Collector, Discard, Emit, SharedEmit};
pub use event::{Event, Transport};
pub use id::{new_id, new_id_at};
pub use kind::Kind;
pub use time::{Timestamp, TimestampError};
