//! NATS and NATS JetStream: one message per event; with JetStream each message carries the
//! event id as `Nats-Msg-Id`, so the stream drops a retried duplicate (exactly-once inside the
//! stream's duplicate window).

mod config;
mod sink;

pub use config::NatsConfig;
pub use sink::NatsSink;
