//! One module per sink, each with the same file roles: `config` (serde keys, `validate` and
//! `build`), `sink` (delivery), and tests beside them.

pub mod amqp;
pub mod chat;
pub mod email;
pub mod hpfeeds;
pub mod http;
pub mod jsonl;
pub mod logstash;
pub mod mqtt;
pub mod nats;
pub mod postgres;
pub mod redis;
pub mod syslog;
