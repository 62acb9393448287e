//! PostgreSQL: batches go in with `COPY ... FROM STDIN` into a staging table, then
//! `INSERT ... ON CONFLICT (id) DO NOTHING`, so a retried batch never stores an event twice.

mod config;
mod sink;

pub use config::PostgresConfig;
pub use sink::PostgresSink;
