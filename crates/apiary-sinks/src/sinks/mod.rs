//! One module per sink, each with the same file roles: `config` (serde keys and `build`),
//! `sink` (delivery), and tests beside them.

pub mod jsonl;
