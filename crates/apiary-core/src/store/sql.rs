//! SQLite and PostgreSQL implementations of [`Store`](super::Store), sharing every statement
//! but the bulk event insert (binary COPY on PostgreSQL, a prepared statement on a rusqlite
//! connection for SQLite).
//!
//! sqlx's generic executor bounds are unwieldy, so one macro stamps the same method bodies out
//! for both pool types; only the auto-numbered key type in the schema differs. Every value is
//! bound, never formatted into SQL (dynamic filters go through `QueryBuilder::push_bind`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use apiary_event::encode::pg_copy::binary;
use apiary_event::{Event, Timestamp};
use apiary_proto::NodeCommandType;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Postgres, QueryBuilder, Row, Sqlite};

use super::wal::Writer;
use super::{
    AuditRecord, CommandRecord, CommandStatus, ConnInfo, Count, EventQuery, NodeCertRecord,
    NodeRecord, PotRecord, Store, StoreError, StoredEvent,
};

/// The schema of both back ends; `{ID}` is each one's auto-numbered primary key column type,
/// `{C}` the byte-wise collation of the event columns the indexes compare ([`PG_C_COLUMNS`]),
/// `{UUID}` the type of the event and session ids ([`PG_UUID`]).
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS nodes (
        id {ID},
        name TEXT NOT NULL UNIQUE,
        totp_secret TEXT,
        token_hash TEXT,
        last_totp_step BIGINT,
        claimed_id TEXT,
        status TEXT NOT NULL,
        online BIGINT NOT NULL DEFAULT 0,
        address TEXT,
        port BIGINT,
        node_type TEXT,
        peer TEXT,
        unit_style TEXT,
        created BIGINT NOT NULL,
        last_seen BIGINT)",
    "CREATE TABLE IF NOT EXISTS pots (
        node_id BIGINT NOT NULL,
        pot_id TEXT NOT NULL,
        pot_type TEXT NOT NULL,
        status TEXT NOT NULL,
        message TEXT,
        updated BIGINT NOT NULL,
        PRIMARY KEY (node_id, pot_id))",
    "CREATE TABLE IF NOT EXISTS commands (
        id {ID},
        node_id BIGINT NOT NULL,
        command TEXT NOT NULL,
        status TEXT NOT NULL,
        created BIGINT NOT NULL,
        sent_at BIGINT,
        done_at BIGINT,
        result TEXT,
        attempts BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS node_certs (
        node_id BIGINT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        created BIGINT NOT NULL,
        not_before BIGINT,
        not_after BIGINT)",
    "CREATE INDEX IF NOT EXISTS commands_node_status ON commands (node_id, status, id)",
    "CREATE TABLE IF NOT EXISTS events (
        id {UUID} PRIMARY KEY,
        time BIGINT NOT NULL,
        kind TEXT{C} NOT NULL,
        node_id BIGINT,
        node TEXT{C} NOT NULL,
        pot TEXT,
        src_ip TEXT{C},
        src_port BIGINT,
        username TEXT,
        password TEXT,
        body TEXT NOT NULL,
        service TEXT{C},
        session {UUID})",
    "CREATE TABLE IF NOT EXISTS audit_log (
        id {ID},
        time BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL)",
];

/// The indexes on `events`, created after `migrate!` (they need its columns). These are
/// every index the Core and its dashboard use: each costs a B-tree insert per stored event, so
/// there is one per query shape (time; source by time with keyset paging; node; kind; session
/// timeline; service), the last two partial because most events have neither.
const EVENT_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS events_time ON events (time, id)",
    "CREATE INDEX IF NOT EXISTS events_src_time ON events (src_ip, time, id)",
    "CREATE INDEX IF NOT EXISTS events_node ON events (node_id, time)",
    "CREATE INDEX IF NOT EXISTS events_kind ON events (kind, time)",
    "CREATE INDEX IF NOT EXISTS events_session ON events (session) WHERE session IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS events_service ON events (service, time) WHERE service IS NOT NULL",
    // Superseded: `events_src_time` covers (src_ip, time), and the dashboard's indexes on
    // JSON expressions parsed every inserted body.
    "DROP INDEX IF EXISTS events_src",
    "DROP INDEX IF EXISTS http_events_src_time",
    "DROP INDEX IF EXISTS http_events_session",
    "DROP INDEX IF EXISTS http_events_service",
];

/// Brings databases created by earlier versions up to [`SCHEMA`]: `events` gains its `service`
/// and `session` columns, filled once from the stored JSON (`backfill` is each back end's
/// UPDATE), and `node_certs` its validity window (NULL for certificates issued before, which
/// had no end). Each step is one transaction, so an interrupted migration is redone at the
/// next start; then the event indexes are created.
macro_rules! migrate {
    ($pool:expr, $backfill:expr) => {
        async {
            let steps: [(&str, &[&str]); 2] = [
                (
                    "SELECT service, session FROM events LIMIT 0",
                    &[
                        "ALTER TABLE events ADD COLUMN service TEXT",
                        "ALTER TABLE events ADD COLUMN session TEXT",
                        $backfill,
                    ],
                ),
                (
                    "SELECT not_before, not_after FROM node_certs LIMIT 0",
                    &[
                        "ALTER TABLE node_certs ADD COLUMN not_before BIGINT",
                        "ALTER TABLE node_certs ADD COLUMN not_after BIGINT",
                    ],
                ),
            ];
            for (probe, stmts) in steps {
                if sqlx::query(probe).execute($pool).await.is_ok() {
                    continue;
                }
                let mut tx = $pool.begin().await?;
                for stmt in stmts {
                    sqlx::query(*stmt).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            for stmt in EVENT_INDEXES {
                sqlx::query(*stmt).execute($pool).await?;
            }
            Ok::<(), StoreError>(())
        }
    };
}

/// The `events` columns in its indexes. On PostgreSQL they compare byte-wise (`COLLATE "C"`),
/// as every SQLite column does: addresses, kinds and names have no language, and the
/// database's default collation would run a locale-aware comparison for each key compared in
/// each index insert (measured: 7 % of an insert's time even under `C.UTF-8`).
const PG_C_COLUMNS: [&str; 4] = ["kind", "node", "src_ip", "service"];

/// `{UUID}` on PostgreSQL: event and session ids in their 16 bytes rather than 36 characters
/// of text, so the primary key, the `(time, id)` and `(src_ip, time, id)` indexes and the
/// session index compare fixed-size keys and the server writes less WAL per event (measured:
/// 1,235 against 1,459 bytes; ingest 1.03x to 1.18x, BENCHMARKS.md run 13). SQLite keeps text.
/// Bound ids stay text on both back ends; PostgreSQL's statements cast them ([`TextMatch`]).
const PG_UUID: &str = "UUID";

/// `{ID}` in SQLite: AUTOINCREMENT so a deleted row's id is never reused (node ids are stable).
const SQLITE_ID: &str = "INTEGER PRIMARY KEY AUTOINCREMENT";
/// `{ID}` in PostgreSQL.
const PG_ID: &str = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";

const NODE_COLUMNS: &str = "id, name, totp_secret, token_hash, last_totp_step, claimed_id, status, \
     online, address, port, node_type, peer, unit_style, created, last_seen";
const COMMAND_COLUMNS: &str =
    "id, node_id, command, status, created, sent_at, done_at, result, attempts";

/// The embedded default: one SQLite file in WAL mode.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: Pool<Sqlite>,
    /// Events go in through their own connection with one prepared statement: sqlx's
    /// per-bind machinery cost about twice what SQLite itself spends on a row and its indexes.
    /// Its WAL checkpoints run on a thread of their own.
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // 64 MiB of page cache per connection: the event indexes stay in memory while a
            // flood is written, instead of being re-read from the OS for every batch.
            .pragma("cache_size", "-65536")
            // 16 KiB pages for a new file (an existing one keeps its own): a batch's rows then
            // fill a quarter of the WAL frames, each frame one write for SQLite and the kernel,
            // and the event B-trees split a quarter as often. Measured: ingest 1.15x faster
            // than with the 4 KiB default (BENCHMARKS.md).
            .page_size(SQLITE_PAGE_SIZE)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        for stmt in SCHEMA {
            let stmt = stmt.replace("{ID}", SQLITE_ID).replace("{C}", "").replace("{UUID}", "TEXT");
            sqlx::query(sqlx::AssertSqlSafe(stmt)).execute(&pool).await?;
        }
        migrate!(
            &pool,
            "UPDATE events SET service = json_extract(body, '$.service'),
                               session = json_extract(body, '$.session')"
        )
        .await?;
        // Same settings as the pool's connections (WAL is a property of the file already);
        // `Writer` turns its checkpoints off and runs them on its own thread.
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;")?;
        let writer = Writer::start(path, conn)?;
        Ok(Self { pool, writer })
    }
}

/// The page size of SQLite files the Core creates.
const SQLITE_PAGE_SIZE: u32 = 16 * 1024;

/// PostgreSQL by URL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Pool<Postgres>,
}

impl PgStore {
    /// Connects to `url`; with `schema`, creates that schema and works inside it.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut opts = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            if !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || schema.is_empty()
            {
                return Err(StoreError::Url(format!("bad schema name {schema:?}")));
            }
            let pool = PgPoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
            // The name was checked to be [A-Za-z0-9_]+ above; identifiers cannot be bound.
            let ddl = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
            sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(&pool).await?;
            pool.close().await;
            opts = opts.options([("search_path", schema)]);
        }
        // Up to four batches in flight, each over up to `PG_PARTS` connections, and room left
        // for the API's and the node server's other queries.
        let pool = PgPoolOptions::new().max_connections(12).connect_with(opts).await?;
        for stmt in SCHEMA {
            let stmt = stmt
                .replace("{ID}", PG_ID)
                .replace("{C}", " COLLATE \"C\"")
                .replace("{UUID}", PG_UUID);
            sqlx::query(sqlx::AssertSqlSafe(stmt)).execute(&pool).await?;
        }
        migrate!(
            &pool,
            "UPDATE events SET service = (body::jsonb)->>'service',
                               session = (body::jsonb)->>'session'"
        )
        .await?;
        collate_c(&pool).await?;
        uuid_ids(&pool).await?;
        Ok(Self { pool })
    }
}

/// Gives the [`PG_C_COLUMNS`] of an `events` table made by an earlier version (or by the
/// `service`/`session` migration) their byte-wise collation. The table is not rewritten (the
/// text stays as it is); PostgreSQL rebuilds the indexes on those columns, once.
async fn collate_c(pool: &Pool<Postgres>) -> Result<(), StoreError> {
    // The names are the constants above, never input.
    let names = PG_C_COLUMNS.map(|c| format!("'{c}'")).join(", ");
    let probe = format!(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name = 'events' AND column_name IN ({names}) \
         AND collation_name IS DISTINCT FROM 'C'"
    );
    let other: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(probe)).fetch_one(pool).await?;
    if other == 0 {
        return Ok(());
    }
    let alter =
        PG_C_COLUMNS.map(|c| format!("ALTER COLUMN {c} TYPE TEXT COLLATE \"C\"")).join(", ");
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE events {alter}"))).execute(pool).await?;
    Ok(())
}

/// Gives an `events` table made by an earlier version (ids as text) its [`PG_UUID`] ids: one
/// rewrite of the table and its indexes, at the first start after the upgrade. Every id the
/// Core ever stored is a UUID's text form, so each converts.
async fn uuid_ids(pool: &Pool<Postgres>) -> Result<(), StoreError> {
    let text_ids: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name = 'events' AND column_name IN ('id', 'session') AND data_type = 'text'",
    )
    .fetch_one(pool)
    .await?;
    if text_ids > 0 {
        sqlx::query(
            "ALTER TABLE events ALTER COLUMN id TYPE UUID USING id::uuid, \
             ALTER COLUMN session TYPE UUID USING session::uuid",
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

fn command_status(s: &str) -> Result<CommandStatus, StoreError> {
    CommandStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("command status {s:?}")))
}

fn command_body(s: &str) -> Result<NodeCommandType, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("command: {e}")))
}

fn event_body(s: &str) -> Result<Event, StoreError> {
    apiary_event::encode::from_json(s.as_bytes())
        .map_err(|e| StoreError::Corrupt(format!("event: {e}")))
}

macro_rules! impl_store {
    ($ty:ident, $db:ty, $backend:literal) => {
        impl $ty {
            fn node_row(row: &<$db as sqlx::Database>::Row) -> Result<NodeRecord, StoreError> {
                Ok(NodeRecord {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    totp_secret: row.try_get("totp_secret")?,
                    token_hash: row.try_get("token_hash")?,
                    last_totp_step: row.try_get("last_totp_step")?,
                    claimed_id: row.try_get("claimed_id")?,
                    status: row.try_get("status")?,
                    online: row.try_get::<i64, _>("online")? != 0,
                    address: row.try_get("address")?,
                    port: row.try_get("port")?,
                    node_type: row.try_get("node_type")?,
                    peer: row.try_get("peer")?,
                    unit_style: row.try_get("unit_style")?,
                    created: row.try_get("created")?,
                    last_seen: row.try_get("last_seen")?,
                })
            }

            fn command_row(row: &<$db as sqlx::Database>::Row) -> Result<CommandRecord, StoreError> {
                let status: String = row.try_get("status")?;
                let command: String = row.try_get("command")?;
                Ok(CommandRecord {
                    id: row.try_get("id")?,
                    node_id: row.try_get("node_id")?,
                    command: command_body(&command)?,
                    status: command_status(&status)?,
                    created: row.try_get("created")?,
                    sent_at: row.try_get("sent_at")?,
                    done_at: row.try_get("done_at")?,
                    result: row.try_get("result")?,
                    attempts: row.try_get("attempts")?,
                })
            }

            fn push_range(qb: &mut QueryBuilder<$db>, since: Option<Timestamp>, until: Option<Timestamp>) {
                if let Some(t) = since {
                    qb.push(" AND time >= ").push_bind(t.as_micros());
                }
                if let Some(t) = until {
                    qb.push(" AND time < ").push_bind(t.as_micros());
                }
            }
        }

        #[async_trait]
        impl Store for $ty {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn create_node(
                &self,
                name: &str,
                totp_secret: Option<&str>,
                token_hash: Option<&str>,
                now: i64,
            ) -> Result<NodeRecord, StoreError> {
                let res = sqlx::query(
                    "INSERT INTO nodes (name, totp_secret, token_hash, status, created)
                     VALUES ($1, $2, $3, 'enrolled', $4) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(totp_secret)
                .bind(token_hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
                if res.rows_affected() == 0 {
                    return Err(StoreError::Conflict(format!("node {name:?}")));
                }
                self.node_by_name(name)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("node vanished after insert".into()))
            }

            async fn node_by_name(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
                let sql = const_format(NODE_COLUMNS, " FROM nodes WHERE name = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::node_row).transpose()
            }

            async fn node_by_id(&self, id: i64) -> Result<Option<NodeRecord>, StoreError> {
                let sql = const_format(NODE_COLUMNS, " FROM nodes WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::node_row).transpose()
            }

            async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
                let sql = const_format(NODE_COLUMNS, " FROM nodes ORDER BY id");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
                rows.iter().map(Self::node_row).collect()
            }

            async fn delete_node(&self, id: i64) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM pots WHERE node_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM commands WHERE node_id = $1 AND status IN ('pending', 'sent')")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM node_certs WHERE node_id = $1").bind(id).execute(&mut *tx).await?;
                let n = sqlx::query("DELETE FROM nodes WHERE id = $1").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(n.rows_affected() > 0)
            }

            async fn claim_totp_step(&self, id: i64, step: i64) -> Result<bool, StoreError> {
                // One conditional UPDATE, so two connections racing with the same code cannot
                // both win.
                let res = sqlx::query(
                    "UPDATE nodes SET last_totp_step = $1
                     WHERE id = $2 AND (last_totp_step IS NULL OR last_totp_step < $1)",
                )
                .bind(step)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn consume_token(&self, id: i64, token_hash: &str) -> Result<bool, StoreError> {
                let res = sqlx::query(
                    "UPDATE nodes SET token_hash = NULL WHERE id = $1 AND token_hash = $2",
                )
                .bind(id)
                .bind(token_hash)
                .execute(&self.pool)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn set_totp_secret(&self, id: i64, secret: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE nodes SET totp_secret = $1, last_totp_step = NULL WHERE id = $2")
                    .bind(secret)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_node_cert(&self, id: i64, cert: &NodeCertRecord, now: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO node_certs (node_id, sha256, created, not_before, not_after)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (node_id) DO UPDATE SET sha256 = excluded.sha256,
                       created = excluded.created, not_before = excluded.not_before,
                       not_after = excluded.not_after",
                )
                .bind(id)
                .bind(&cert.sha256)
                .bind(now)
                .bind(cert.not_before)
                .bind(cert.not_after)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn node_cert(&self, id: i64) -> Result<Option<NodeCertRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT sha256, not_before, not_after FROM node_certs WHERE node_id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some(NodeCertRecord {
                    sha256: r.try_get("sha256")?,
                    not_before: r.try_get("not_before")?,
                    not_after: r.try_get("not_after")?,
                }))
            }

            async fn set_unit_style(&self, id: i64, style: Option<&str>) -> Result<(), StoreError> {
                sqlx::query("UPDATE nodes SET unit_style = $1 WHERE id = $2")
                    .bind(style)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn node_connected(&self, id: i64, info: &ConnInfo, now: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE nodes SET online = 1, status = 'Connected', claimed_id = $1, address = $2,
                     port = $3, node_type = $4, peer = $5, last_seen = $6 WHERE id = $7",
                )
                .bind(info.claimed_id.to_string())
                .bind(&info.address)
                .bind(i64::from(info.port))
                .bind(&info.node_type)
                .bind(&info.peer)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn node_heartbeat(&self, id: i64, status: &str, now: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE nodes SET status = $1, last_seen = $2 WHERE id = $3")
                    .bind(status)
                    .bind(now)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn node_offline(&self, id: i64, now: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE nodes SET online = 0, status = 'offline', last_seen = COALESCE(last_seen, $1) WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn all_offline(&self) -> Result<(), StoreError> {
                sqlx::query("UPDATE nodes SET online = 0, status = 'offline' WHERE online <> 0")
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn upsert_pot(&self, pot: &PotRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO pots (node_id, pot_id, pot_type, status, message, updated)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (node_id, pot_id) DO UPDATE SET
                       pot_type = CASE WHEN excluded.pot_type = '' THEN pots.pot_type ELSE excluded.pot_type END,
                       status = excluded.status, message = excluded.message, updated = excluded.updated",
                )
                .bind(pot.node_id)
                .bind(&pot.pot_id)
                .bind(&pot.pot_type)
                .bind(&pot.status)
                .bind(&pot.message)
                .bind(pot.updated)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_pots(&self, node_id: i64) -> Result<Vec<PotRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT node_id, pot_id, pot_type, status, message, updated FROM pots
                     WHERE node_id = $1 ORDER BY pot_id",
                )
                .bind(node_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(PotRecord {
                            node_id: r.try_get("node_id")?,
                            pot_id: r.try_get("pot_id")?,
                            pot_type: r.try_get("pot_type")?,
                            status: r.try_get("status")?,
                            message: r.try_get("message")?,
                            updated: r.try_get("updated")?,
                        })
                    })
                    .collect()
            }

            async fn enqueue_command(
                &self,
                node_id: i64,
                command: &NodeCommandType,
                now: i64,
            ) -> Result<i64, StoreError> {
                let body = serde_json::to_string(command)
                    .map_err(|e| StoreError::Corrupt(format!("command: {e}")))?;
                let row = sqlx::query(
                    "INSERT INTO commands (node_id, command, status, created)
                     VALUES ($1, $2, 'pending', $3) RETURNING id",
                )
                .bind(node_id)
                .bind(body)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("id")?)
            }

            async fn next_pending_command(&self, node_id: i64) -> Result<Option<CommandRecord>, StoreError> {
                let sql = const_format(
                    COMMAND_COLUMNS,
                    " FROM commands WHERE node_id = $1 AND status = 'pending' ORDER BY id LIMIT 1",
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(node_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::command_row).transpose()
            }

            async fn mark_command_sent(&self, id: i64, now: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE commands SET status = 'sent', sent_at = $1, attempts = attempts + 1
                     WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn finish_command(
                &self,
                id: i64,
                status: CommandStatus,
                result: Option<&str>,
                now: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE commands SET status = $1, result = $2, done_at = $3
                     WHERE id = $4 AND status = 'sent'",
                )
                .bind(status.as_str())
                .bind(result)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn requeue_sent_commands(&self, node_id: i64) -> Result<u64, StoreError> {
                let res = sqlx::query(
                    "UPDATE commands SET status = 'pending' WHERE node_id = $1 AND status = 'sent'",
                )
                .bind(node_id)
                .execute(&self.pool)
                .await?;
                Ok(res.rows_affected())
            }

            async fn command(&self, id: i64) -> Result<Option<CommandRecord>, StoreError> {
                let sql = const_format(COMMAND_COLUMNS, " FROM commands WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::command_row).transpose()
            }

            async fn list_commands(&self, node_id: i64, limit: i64) -> Result<Vec<CommandRecord>, StoreError> {
                let sql = const_format(
                    COMMAND_COLUMNS,
                    " FROM commands WHERE node_id = $1 ORDER BY id DESC LIMIT $2",
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(node_id)
                    .bind(limit.clamp(1, 10_000))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::command_row).collect()
            }

            async fn insert_events(&self, events: &[StoredEvent]) -> Result<u64, StoreError> {
                self.insert_event_rows(events).await
            }

            async fn query_events(&self, q: &EventQuery) -> Result<Vec<Event>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT body FROM events");
                push_event_filters(&mut qb, q, true);
                qb.push(" ORDER BY time DESC, id DESC LIMIT ").push_bind(q.page_size());
                let rows = qb.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|r| event_body(&r.try_get::<String, _>("body")?))
                    .collect()
            }

            async fn count_events(&self, q: &EventQuery) -> Result<i64, StoreError> {
                let mut qb = QueryBuilder::<$db>::new("SELECT COUNT(*) AS n FROM events");
                push_event_filters(&mut qb, q, false);
                let row = qb.build().fetch_one(&self.pool).await?;
                Ok(row.try_get("n")?)
            }

            async fn top_sources(
                &self,
                since: Option<Timestamp>,
                until: Option<Timestamp>,
                limit: i64,
            ) -> Result<Vec<Count<String>>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT src_ip, COUNT(*) AS n FROM events WHERE src_ip IS NOT NULL",
                );
                Self::push_range(&mut qb, since, until);
                qb.push(" GROUP BY src_ip ORDER BY n DESC, src_ip LIMIT ").push_bind(limit.clamp(1, 1000));
                let rows = qb.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|r| Ok(Count { key: r.try_get("src_ip")?, count: r.try_get("n")? }))
                    .collect()
            }

            async fn top_credentials(
                &self,
                since: Option<Timestamp>,
                until: Option<Timestamp>,
                limit: i64,
            ) -> Result<Vec<Count<(Option<String>, Option<String>)>>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT username, password, COUNT(*) AS n FROM events
                     WHERE (username IS NOT NULL OR password IS NOT NULL)",
                );
                Self::push_range(&mut qb, since, until);
                qb.push(" GROUP BY username, password ORDER BY n DESC, username, password LIMIT ")
                    .push_bind(limit.clamp(1, 1000));
                let rows = qb.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok(Count {
                            key: (r.try_get("username")?, r.try_get("password")?),
                            count: r.try_get("n")?,
                        })
                    })
                    .collect()
            }

            async fn audit(&self, actor: &str, action: &str, detail: &str, now: i64) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO audit_log (time, actor, action, detail) VALUES ($1, $2, $3, $4)")
                    .bind(now)
                    .bind(actor)
                    .bind(action)
                    .bind(detail)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, time, actor, action, detail FROM audit_log ORDER BY id DESC LIMIT $1",
                )
                .bind(limit.clamp(1, 10_000))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(AuditRecord {
                            id: r.try_get("id")?,
                            time: r.try_get("time")?,
                            actor: r.try_get("actor")?,
                            action: r.try_get("action")?,
                            detail: r.try_get("detail")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

/// How each back end finds a substring in the event body and compares a bound id.
pub(crate) trait TextMatch {
    /// `FN(body, ` : the bound needle and `) > 0` follow.
    const TEXT_MATCH: &'static str;
    /// Follows a bound event or session id (text): the cast to the column's type.
    const UUID: &'static str;
}

impl TextMatch for Sqlite {
    const TEXT_MATCH: &'static str = "instr(body, ";
    const UUID: &'static str = "";
}

impl TextMatch for Postgres {
    const TEXT_MATCH: &'static str = "strpos(body, ";
    const UUID: &'static str = "::uuid";
}

/// The WHERE clause of an event query, shared by the store and the dashboard's search; with
/// `paged`, the keyset condition of `before` too.
pub(crate) fn push_event_filters<DB>(qb: &mut QueryBuilder<DB>, q: &EventQuery, paged: bool)
where
    DB: sqlx::Database + TextMatch,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    qb.push(" WHERE 1=1");
    if let Some(t) = q.since {
        qb.push(" AND time >= ").push_bind(t.as_micros());
    }
    if let Some(t) = q.until {
        qb.push(" AND time < ").push_bind(t.as_micros());
    }
    let text = [
        ("src_ip", q.src_ip.map(|ip| ip.to_string())),
        ("kind", q.kind.clone()),
        ("service", q.service.clone()),
    ];
    for (column, value) in text {
        if let Some(v) = value {
            qb.push(" AND ").push(column).push(" = ").push_bind(v);
        }
    }
    if let Some(s) = q.session {
        qb.push(" AND session = ").push_bind(s.to_string()).push(DB::UUID);
    }
    if let Some(n) = q.node_id {
        qb.push(" AND node_id = ").push_bind(n);
    }
    if let Some(t) = &q.text {
        qb.push(" AND ").push(DB::TEXT_MATCH).push_bind(t.clone()).push(") > 0");
    }
    if paged && let Some((t, id)) = q.before {
        qb.push(" AND (time < ")
            .push_bind(t.as_micros())
            .push(" OR (time = ")
            .push_bind(t.as_micros())
            .push(" AND id < ")
            .push_bind(id.to_string())
            .push(DB::UUID)
            .push("))");
    }
}

/// `SELECT <columns><rest>`: the column lists are constants, so the result is SQL we wrote.
fn const_format(columns: &str, rest: &str) -> String {
    let mut s = String::with_capacity(7 + columns.len() + rest.len());
    s.push_str("SELECT ");
    s.push_str(columns);
    s.push_str(rest);
    s
}

/// The columns of one event row besides `body`, shared by both insert paths.
struct EventRow {
    id: String,
    time: i64,
    kind: String,
    node_id: Option<i64>,
    node: String,
    pot: Option<String>,
    src_ip: Option<String>,
    src_port: Option<i64>,
    username: Option<String>,
    password: Option<String>,
    body: String,
    service: Option<String>,
    session: Option<String>,
}

impl EventRow {
    fn new(se: &StoredEvent) -> Self {
        let e = &se.event;
        let mut body = Vec::with_capacity(512);
        apiary_event::encode::json_line(e, &mut body);
        body.pop();
        let auth = e.auth.as_deref();
        Self {
            id: uuid_text(e.id),
            time: e.time.as_micros(),
            kind: e.kind.as_str().to_owned(),
            node_id: se.node_id,
            node: e.node.to_string(),
            pot: e.pot.as_deref().map(str::to_owned),
            src_ip: e.src_ip.map(|ip| ip.to_string()),
            src_port: e.src_port.map(i64::from),
            username: auth.and_then(|a| a.username.clone()),
            password: auth.and_then(|a| a.password.clone()),
            // json_line writes UTF-8; the fallback cannot happen.
            body: String::from_utf8(body).unwrap_or_default(),
            service: e.service.as_deref().map(str::to_owned),
            session: e.session.map(uuid_text),
        }
    }
}

/// A UUID in its stored text form (hyphenated, lower case), without `Display`'s formatter.
fn uuid_text(u: uuid::Uuid) -> String {
    u.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_owned()
}

impl SqliteStore {
    /// Inserts on the writer connection, on a blocking thread: the rows are built here, the
    /// SQLite work runs off the runtime.
    async fn insert_event_rows(&self, events: &[StoredEvent]) -> Result<u64, StoreError> {
        let rows: Vec<EventRow> = events.iter().map(EventRow::new).collect();
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || writer.write(|conn| insert_sqlite_rows(conn, &rows)))
            .await
            .map_err(|_| StoreError::WriterGone)?
    }
}

/// One transaction, one cached prepared statement executed per row; duplicates of stored ids
/// are skipped (at-least-once delivery from nodes), so the count is of new rows.
fn insert_sqlite_rows(
    conn: &mut rusqlite::Connection,
    rows: &[EventRow],
) -> Result<u64, StoreError> {
    let tx = conn.transaction()?;
    let mut inserted = 0u64;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (id, time, kind, node_id, node, pot, src_ip, src_port, \
             username, password, body, service, session) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT (id) DO NOTHING",
        )?;
        for r in rows {
            inserted += insert.execute(rusqlite::params![
                r.id, r.time, r.kind, r.node_id, r.node, r.pot, r.src_ip, r.src_port, r.username,
                r.password, r.body, r.service, r.session,
            ])? as u64;
        }
    }
    tx.commit()?;
    Ok(inserted)
}

/// Columns of a `COPY_EVENTS` row.
const COPY_COLUMNS: i16 = 13;

/// A batch of events in COPY binary format, columns in `COPY_EVENTS` order: numbers go as
/// their 8 bytes, text and the event's JSON are written once straight into the buffer (no
/// escaping pass, no per-row strings), and the server parses no text for the integer columns.
fn copy_rows(events: &[StoredEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 720 + 32);
    binary::header(&mut out);
    for se in events {
        let e = &se.event;
        let auth = e.auth.as_deref();
        binary::row(&mut out, COPY_COLUMNS);
        binary::uuid(&mut out, Some(e.id));
        binary::int8(&mut out, Some(e.time.as_micros()));
        binary::text(&mut out, Some(e.kind.as_str()));
        binary::int8(&mut out, se.node_id);
        binary::text(&mut out, Some(&e.node));
        binary::text(&mut out, e.pot.as_deref());
        binary::ip_text(&mut out, e.src_ip);
        binary::int8(&mut out, e.src_port.map(i64::from));
        binary::text(&mut out, auth.and_then(|a| a.username.as_deref()));
        binary::text(&mut out, auth.and_then(|a| a.password.as_deref()));
        binary::field_with(&mut out, |o| apiary_event::encode::json::write(e, o));
        binary::text(&mut out, e.service.as_deref());
        binary::uuid(&mut out, e.session);
    }
    binary::trailer(&mut out);
    out
}

const COPY_EVENTS: &str = "COPY events (id, time, kind, node_id, node, pot, src_ip, src_port, \
     username, password, body, service, session) FROM STDIN (FORMAT binary)";

/// A batch is split over this many connections, each part its own `COPY`, when each part
/// still has at least [`PG_MIN_PART`] events: the server parses and indexes the parts on
/// separate backends (cores) while the Core encodes the next.
const PG_PARTS: usize = 2;
/// Below this many events a part's extra round trip and commit cost more than it saves.
const PG_MIN_PART: usize = 500;

impl PgStore {
    /// Fast path: the batch in up to [`PG_PARTS`] parallel binary `COPY`s, each atomic on its
    /// own. When a part holds an event already stored (a node resending after a lost ack, or
    /// a Core restart), its COPY fails as a whole on the primary key and that part goes in
    /// again through the deduplicating `INSERT ... ON CONFLICT DO NOTHING`, so every event is
    /// still stored exactly once.
    async fn insert_event_rows(&self, events: &[StoredEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let parts = (events.len() / PG_MIN_PART).clamp(1, PG_PARTS);
        let per = events.len().div_ceil(parts);
        let results =
            futures_util::future::join_all(events.chunks(per).map(|p| self.copy_part(p))).await;
        results.into_iter().sum()
    }

    async fn copy_part(&self, events: &[StoredEvent]) -> Result<u64, StoreError> {
        let data = copy_rows(events);
        let mut conn = self.pool.acquire().await?;
        let copied = async {
            let mut copy = conn.copy_in_raw(COPY_EVENTS).await?;
            copy.send(data).await?;
            copy.finish().await
        };
        match copied.await {
            Ok(n) => return Ok(n),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {}
            Err(e) => return Err(e.into()),
        }
        // Not reused after an aborted COPY: a fresh connection takes the slow path.
        drop(conn.detach());
        self.insert_event_rows_dedup(events).await
    }

    /// One statement per batch: thirteen array parameters unnested into rows, far cheaper for
    /// PostgreSQL than thousands of scalar parameters; ids already stored are skipped.
    async fn insert_event_rows_dedup(&self, events: &[StoredEvent]) -> Result<u64, StoreError> {
        let n = events.len();
        let (mut id, mut time, mut kind, mut node_id, mut node, mut pot) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut src_ip, mut src_port, mut username, mut password, mut body) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut service, mut session) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for r in events.iter().map(EventRow::new) {
            id.push(r.id);
            time.push(r.time);
            kind.push(r.kind);
            node_id.push(r.node_id);
            node.push(r.node);
            pot.push(r.pot);
            src_ip.push(r.src_ip);
            src_port.push(r.src_port);
            username.push(r.username);
            password.push(r.password);
            body.push(r.body);
            service.push(r.service);
            session.push(r.session);
        }
        let res = sqlx::query(
            "INSERT INTO events (id, time, kind, node_id, node, pot, src_ip, src_port, username, password, body,
                                 service, session)
             SELECT * FROM UNNEST($1::text[]::uuid[], $2::int8[], $3::text[], $4::int8[], $5::text[],
                                  $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[],
                                  $11::text[], $12::text[], $13::text[]::uuid[])
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(time)
        .bind(kind)
        .bind(node_id)
        .bind(node)
        .bind(pot)
        .bind(src_ip)
        .bind(src_port)
        .bind(username)
        .bind(password)
        .bind(body)
        .bind(service)
        .bind(session)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }
}

impl_store!(SqliteStore, Sqlite, "sqlite");
impl_store!(PgStore, Postgres, "postgres");
