//! Logstash `tcp` input with the `json_lines` codec: one JSON document per line over a
//! persistent TCP (or TLS) connection. HoneyPy opened a connection per event and sent no line
//! terminator; this sends newline-terminated lines in batches.

mod config;
mod sink;

pub use config::LogstashConfig;
pub use sink::LogstashSink;
