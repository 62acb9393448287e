//! RabbitMQ / AMQP 0-9-1: one persistent message per event with publisher confirms; a batch
//! counts as delivered when the broker has confirmed every message. The event id is the
//! AMQP `message_id`, for consumers that deduplicate.

mod config;
mod sink;

pub use config::AmqpConfig;
pub use sink::AmqpSink;
