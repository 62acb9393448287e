//! The PostgreSQL writer: binary `COPY` over one or more connections.

use std::sync::Arc;

use apiary_event::Event;
use apiary_event::encode::pg_copy::binary;
use futures_util::future::join_all;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::{Encoder, Sink, SinkError};

/// A batch is split over the connections only in parts of at least this many events: below
/// it, a second round trip and commit cost more than the parallel `COPY` saves.
const MIN_PART: usize = 500;

/// One open connection and what it learned about the table.
struct Conn {
    conn: PgConnection,
    /// The `event` column is `jsonb` (tables created before it became `json`): its binary
    /// input format wants a version byte before the text.
    jsonb: bool,
}

/// Writes batches to one table over up to `connections` connections.
pub struct PostgresSink {
    url: String,
    table: String,
    encoder: Encoder,
    connections: usize,
    conns: Vec<Conn>,
    bufs: Vec<Vec<u8>>,
    doc: Vec<u8>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("table", &self.table)
            .field("connections", &self.connections)
            .finish()
    }
}

fn db_err(e: sqlx::Error) -> SinkError {
    match e {
        sqlx::Error::Io(io) => SinkError::Io(io),
        other => SinkError::Rejected(other.to_string()),
    }
}

/// Columns per row, in table order.
const COLUMNS: i16 = 11;

/// Appends one event as a binary `COPY` row in the table's column order.
fn row(out: &mut Vec<u8>, e: &Event, doc: &[u8], jsonb: bool) {
    binary::row(out, COLUMNS);
    binary::uuid(out, Some(e.id));
    binary::int8(out, Some(e.time.as_micros().saturating_sub(binary::PG_EPOCH_MICROS)));
    binary::text(out, Some(e.kind.as_str()));
    binary::text(out, Some(&e.node));
    binary::text(out, e.service.as_deref());
    binary::inet(out, e.src_ip);
    binary::int4(out, e.src_port.map(i32::from));
    binary::inet(out, e.dst_ip);
    binary::int4(out, e.dst_port.map(i32::from));
    binary::uuid(out, e.session);
    if jsonb {
        binary::field_with(out, |o| {
            o.push(1);
            o.extend_from_slice(doc);
        });
    } else {
        binary::field(out, doc);
    }
}

impl PostgresSink {
    /// A sink for `table` at `url` writing over up to `connections` connections (not connected
    /// yet).
    pub fn new(url: String, table: String, encoder: Encoder, connections: usize) -> Self {
        Self {
            url,
            table,
            encoder,
            connections: connections.max(1),
            conns: Vec::new(),
            bufs: Vec::new(),
            doc: Vec::with_capacity(1024),
        }
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let mut conn = PgConnection::connect(&self.url).await.map_err(db_err)?;
        let t = &self.table;
        // `event` is `json`: the server checks the document and stores its text as sent,
        // about twice as fast as parsing it into `jsonb` (BENCHMARKS.md, Loggers); queries
        // use the same `->`/`->>` operators on either.
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
                event json NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {t}_time ON {t} (time);
            CREATE TEMP TABLE IF NOT EXISTS {t}_stage (LIKE {t}) ON COMMIT DELETE ROWS;"
        );
        // The table name is a checked identifier (see PostgresConfig::validate).
        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut conn).await.map_err(db_err)?;
        let ty: String = sqlx::query_scalar(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = $1::regclass AND attname = 'event'",
        )
        .bind(t)
        .fetch_one(&mut conn)
        .await
        .map_err(db_err)?;
        Ok(Conn { conn, jsonb: ty == "jsonb" })
    }

    /// Encodes `batch` into `buf` as one binary `COPY` stream.
    fn encode(
        encoder: &Encoder,
        doc: &mut Vec<u8>,
        buf: &mut Vec<u8>,
        batch: &[Arc<Event>],
        jsonb: bool,
    ) {
        buf.clear();
        binary::header(buf);
        for e in batch {
            doc.clear();
            encoder.write(e, doc);
            row(buf, e, doc, jsonb);
        }
        binary::trailer(buf);
    }

    /// Fast path: `COPY` straight into the table (atomic on its own). If the batch collides
    /// with rows already there (a retry after an ambiguous failure, or a batch whose other
    /// part failed), fall back to staging and `INSERT ... ON CONFLICT (id) DO NOTHING`, which
    /// skips what is already stored.
    async fn write(conn: &mut PgConnection, table: &str, data: &[u8]) -> Result<(), SinkError> {
        match Self::copy(conn, &format!("COPY {table} FROM STDIN (FORMAT binary)"), data).await {
            Ok(()) => return Ok(()),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {}
            Err(e) => return Err(db_err(e)),
        }
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.map_err(db_err)?;
        Self::copy(conn, &format!("COPY {table}_stage FROM STDIN (FORMAT binary)"), data)
            .await
            .map_err(db_err)?;
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
        if batch.is_empty() {
            return Ok(());
        }
        let parts = self.connections.min(batch.len().div_ceil(MIN_PART)).max(1);
        // Taken out while in use: a cancelled or failed send drops its connections (and with
        // them any open transaction) instead of leaving one mid-COPY.
        let mut conns = std::mem::take(&mut self.conns);
        while conns.len() < parts {
            conns.push(self.connect().await?);
        }
        self.bufs.resize_with(conns.len(), Vec::new);
        let per = batch.len().div_ceil(parts);
        for ((chunk, buf), c) in batch.chunks(per).zip(self.bufs.iter_mut()).zip(&conns) {
            Self::encode(&self.encoder, &mut self.doc, buf, chunk, c.jsonb);
        }
        // Each part is its own transaction. If one fails the pipeline retries the whole batch,
        // and the part already stored is skipped by the conflict path in `write`.
        let table = &self.table;
        let results = join_all(
            conns
                .iter_mut()
                .zip(&self.bufs)
                .take(parts)
                .map(|(c, buf)| async move { Self::write(&mut c.conn, table, buf).await }),
        )
        .await;
        let mut first_err = None;
        let mut kept = Vec::with_capacity(conns.len());
        for (i, c) in conns.into_iter().enumerate() {
            match results.get(i) {
                Some(Err(_)) => {}
                _ => kept.push(c),
            }
        }
        for r in results {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        self.conns = kept;
        for buf in &mut self.bufs {
            if buf.capacity() > 16 << 20 {
                *buf = Vec::new();
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_row_layout() {
        let mut e = Event::at(
            apiary_event::Kind::SESSION_RX,
            Arc::from("n"),
            apiary_event::Timestamp::from_micros(binary::PG_EPOCH_MICROS + 5),
            uuid::Uuid::from_u128(1),
        );
        e.src_ip = Some("10.0.0.1".parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])));
        e.src_port = Some(7);
        let mut out = Vec::new();
        row(&mut out, &e, b"{}", true);
        let mut want = Vec::new();
        want.extend_from_slice(&11i16.to_be_bytes());
        want.extend_from_slice(&16i32.to_be_bytes());
        want.extend_from_slice(&1u128.to_be_bytes());
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&5i64.to_be_bytes());
        want.extend_from_slice(&10i32.to_be_bytes());
        want.extend_from_slice(b"session.rx");
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(b"n");
        want.extend_from_slice(&(-1i32).to_be_bytes()); // service
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&[2, 32, 0, 4, 10, 0, 0, 1]);
        want.extend_from_slice(&4i32.to_be_bytes());
        want.extend_from_slice(&7i32.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes()); // dst_ip
        want.extend_from_slice(&(-1i32).to_be_bytes()); // dst_port
        want.extend_from_slice(&(-1i32).to_be_bytes()); // session
        want.extend_from_slice(&3i32.to_be_bytes());
        want.extend_from_slice(b"\x01{}");
        assert_eq!(out, want);
    }
}
