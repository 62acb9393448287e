//! Redis: `XADD` to a stream (with approximate `MAXLEN` trimming) or `RPUSH` to a list, one
//! pipelined round trip per batch over a hand-written RESP client.

mod config;
mod resp;
mod sink;

pub use config::{RedisConfig, RedisMode};
pub use resp::{Reply, ReplyError, check_reply};
pub use sink::RedisSink;
