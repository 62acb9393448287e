//! One module per sink, each with the same file roles: `config` (serde keys, `validate` and
//! `build`), `sink` (delivery), and tests beside them.

pub mod jsonl;
pub mod logstash;
pub mod nats;
pub mod postgres;
