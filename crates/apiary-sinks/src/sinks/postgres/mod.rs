//! PostgreSQL: batches go in with binary `COPY ... FROM STDIN` straight into the table; a
//! retried batch that collides with stored rows goes through a staging table and
//! `INSERT ... ON CONFLICT (id) DO NOTHING`, so no event is stored twice.

mod config;
mod sink;

pub use config::PostgresConfig;
pub use sink::PostgresSink;
