//! Integration tests of apiary-sinks against real local services and local test servers.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;
mod logstash;
mod nats;
mod postgres;
