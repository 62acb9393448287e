//! The PostgreSQL writer.

use std::sync::Arc;

use apiary_event::Event;
use apiary_event::encode::pg_copy;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::{Encoder, Sink, SinkError};

/// Writes batches to one table over one connection.
pub struct PostgresSink {
    url: String,
    table: String,
    encoder: Encoder,
    conn: Option<PgConnection>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink").field("table", &self.table).finish()
    }
}

fn db_err(e: sqlx::Error) -> SinkError {
    match e {
        sqlx::Error::Io(io) => SinkError::Io(io),
        other => SinkError::Rejected(other.to_string()),
    }
}

fn opt<T: std::fmt::Display>(out: &mut Vec<u8>, v: Option<T>) {
    pg_copy::column(out, v.map(|v| v.to_string()), false);
}

impl PostgresSink {
    /// A sink for `table` at `url` (not connected yet).
    pub fn new(url: String, table: String, encoder: Encoder) -> Self {
        Self { url, table, encoder, conn: None, buf: Vec::with_capacity(1 << 20) }
    }

    async fn connect(&self) -> Result<PgConnection, SinkError> {
        let mut conn = PgConnection::connect(&self.url).await.map_err(db_err)?;
        let t = &self.table;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                id uuid PRIMARY KEY,
                time timestamptz NOT NULL,
                kind text NOT NULL,
                node text NOT NULL,
                service text,
                src_ip inet,
                src_port integer,
                dst_ip inet,
                dst_port integer,
                session uuid,
                event jsonb NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {t}_time ON {t} (time);
            CREATE TEMP TABLE IF NOT EXISTS {t}_stage (LIKE {t}) ON COMMIT DELETE ROWS;"
        );
        // The table name is a checked identifier (see PostgresConfig::validate).
        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut conn).await.map_err(db_err)?;
        Ok(conn)
    }

    fn encode(&mut self, batch: &[Arc<Event>]) {
        self.buf.clear();
        let mut time = String::with_capacity(40);
        let mut doc = Vec::with_capacity(1024);
        for e in batch {
            let out = &mut self.buf;
            time.clear();
            e.time.write_rfc3339(&mut time, "Z");
            opt(out, Some(e.id));
            opt(out, Some(&time));
            opt(out, Some(e.kind.as_str()));
            opt(out, Some(&*e.node));
            opt(out, e.service.as_deref());
            opt(out, e.src_ip);
            opt(out, e.src_port);
            opt(out, e.dst_ip);
            opt(out, e.dst_port);
            opt(out, e.session);
            doc.clear();
            self.encoder.write(e, &mut doc);
            pg_copy::column(out, Some(&doc), true);
        }
    }

    /// Fast path: `COPY` straight into the table (atomic on its own). If the batch collides
    /// with rows already there (a retry after an ambiguous failure), fall back to staging and
    /// `INSERT ... ON CONFLICT (id) DO NOTHING`, which skips what is already stored.
    async fn write(conn: &mut PgConnection, table: &str, data: &[u8]) -> Result<(), SinkError> {
        match Self::copy(conn, &format!("COPY {table} FROM STDIN"), data).await {
            Ok(()) => return Ok(()),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {}
            Err(e) => return Err(db_err(e)),
        }
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.map_err(db_err)?;
        Self::copy(conn, &format!("COPY {table}_stage FROM STDIN"), data).await.map_err(db_err)?;
        let insert = format!(
            "INSERT INTO {table} SELECT * FROM {table}_stage ON CONFLICT (id) DO NOTHING; COMMIT"
        );
        sqlx::raw_sql(AssertSqlSafe(insert)).execute(&mut *conn).await.map_err(db_err)?;
        Ok(())
    }

    async fn copy(
        conn: &mut PgConnection,
        statement: &str,
        data: &[u8],
    ) -> Result<(), sqlx::Error> {
        let mut copy = conn.copy_in_raw(statement).await?;
        copy.send(data).await?;
        copy.finish().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for PostgresSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        // Taken out while in use: a cancelled or failed send drops the connection (and with it
        // the open transaction) instead of leaving it mid-COPY.
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        self.encode(batch);
        Self::write(&mut conn, &self.table, &self.buf).await?;
        if self.buf.capacity() > 16 << 20 {
            self.buf = Vec::with_capacity(1 << 20);
        }
        self.conn = Some(conn);
        Ok(())
    }
}
