//! apiary's flow sensor: a PokieStream-compatible packet logger.
//!
//! Packets come from a pcap/pcapng file ([`replay`]) or a live AF_PACKET ring ([`live`]); each
//! is decoded ([`decode`]), filtered like PokieStream ([`filter`]), tracked ([`track`]) and
//! turned into [`apiary_event::Event`] records that go to a [`RecordSink`]. Record times and
//! ids come from packet timestamps, so replaying a file is byte-for-byte deterministic.
//!
//! The sensor never blocks on its consumers: records go through a bounded queue
//! ([`record::queue`]) whose overflow is counted.

pub mod capture;
pub mod config;
pub mod decode;
pub mod extract;
pub mod filter;
pub mod output;
mod pipeline;
pub mod record;
mod run;
pub mod synth;
pub mod track;

pub use config::{ConfigError, LoadedConfig, SensorConfig};
pub use pipeline::{Pipeline, Stats};
pub use record::{FnSink, QueueSink, RecordSink, blocking_queue, queue};
pub use run::{
    LiveHandle, ReplayOptions, RunOptions, SensorError, Source, live, replay, replay_file, run,
};
