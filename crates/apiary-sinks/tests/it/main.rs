//! Integration tests of apiary-sinks against real local services and local test servers.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

mod amqp;
mod common;
mod email;
mod fault;
mod hpfeeds;
mod http;
mod logstash;
mod mqtt;
mod nats;
mod postgres;
mod redis;
mod syslog;
