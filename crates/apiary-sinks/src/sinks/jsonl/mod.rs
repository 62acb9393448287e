//! JSON lines in a local file, rotated by size and age, keeping the newest N rotated files.

mod config;
mod sink;

pub use config::JsonlConfig;
pub use sink::JsonlSink;
