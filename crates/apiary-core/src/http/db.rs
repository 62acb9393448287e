//! The REST layer's queries over the Core database: API tokens, event search with keyset
//! paging (time range, source, node, kind, service, session, text), session timelines, the
//! overview statistics, and the SQLite rollups that keep those statistics fast.
//!
//! This layer opens its own pool on the Core's database and owns its own tables (`api_tokens`,
//! `rollup_*`); it only reads the node server's tables, whose `events` indexes (session and
//! service are columns there) serve its queries too. On SQLite a background task folds new event
//! rows (by `rowid`, which grows in commit order because SQLite has one writer) into per-minute
//! totals and per-hour and per-day counters for each dimension (source, credential, command,
//! service, kind). A range reads whole days from the day tier and at most 23 edge hours at each
//! end from the hour tier, and each top list is found exactly with the threshold algorithm
//! (see [`top_exact`]): it reads only the head of each bucket's counters, largest first, and
//! stops once no key it has not seen can reach the list. PostgreSQL answers the same questions
//! with direct `GROUP BY` queries; both paths align ranges to whole hours (top lists) and
//! minutes (timeline), so they return the same figures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apiary_event::{Event, Timestamp};
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Postgres, QueryBuilder, Row, Sqlite};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::sql::TextMatch;

use super::HttpError;
use super::auth::{Principal, Role};
use super::geo::{self, GeoIp};

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;
/// Bumped when the rollup tables change meaning; a mismatch refolds every event.
const ROLLUP_VERSION: i64 = 2;
/// Head of each bucket's counters read in the threshold algorithm's first round.
const TOP_FIRST_DEPTH: i64 = 64;
/// Past this depth a top list is summed over every counter of the range instead.
const TOP_MAX_DEPTH: i64 = 16_384;
/// Longest key kept in the top lists (characters); attacker input can be any length.
const KEY_CHARS: usize = 200;
/// Rows folded per rollup transaction.
const ROLLUP_CHUNK: i64 = 20_000;
/// Rows a stats request folds itself before answering (the background task does the rest).
const ROLLUP_ON_REQUEST: u64 = 100_000;

/// Rollup dimensions (`rollup_hour.dim`).
const DIM_SRC: i64 = 1;
const DIM_CRED: i64 = 2;
const DIM_CMD: i64 = 3;
const DIM_SERVICE: i64 = 4;
const DIM_KIND: i64 = 5;
/// Source country (ISO code), with a GeoIP database.
const DIM_COUNTRY: i64 = 6;
/// Source map cell (`LAT,LON` in whole degrees), with a GeoIP City database.
const DIM_CELL: i64 = 7;
/// Most map cells an overview returns.
const MAP_CELLS: usize = 500;

const SQLITE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS api_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created BIGINT NOT NULL,
        last_used BIGINT)",
    "CREATE TABLE IF NOT EXISTS rollup_state (id INTEGER PRIMARY KEY, last_rowid BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rollup_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rollup_minute (bucket BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rollup_hour (
        dim BIGINT NOT NULL,
        bucket BIGINT NOT NULL,
        key TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (dim, bucket, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS rollup_day (
        dim BIGINT NOT NULL,
        bucket BIGINT NOT NULL,
        key TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (dim, bucket, key)) WITHOUT ROWID",
    // Each bucket's counters, largest first: the head the threshold algorithm reads.
    "CREATE INDEX IF NOT EXISTS rollup_hour_rank ON rollup_hour (dim, bucket, n)",
    "CREATE INDEX IF NOT EXISTS rollup_day_rank ON rollup_day (dim, bucket, n)",
];

/// The two counter tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Hour,
    Day,
}

impl Tier {
    fn table(self) -> &'static str {
        match self {
            Tier::Hour => "rollup_hour",
            Tier::Day => "rollup_day",
        }
    }
}

/// A run of buckets of one tier: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    tier: Tier,
    start: i64,
    end: i64,
}

impl Run {
    fn buckets(self) -> impl Iterator<Item = i64> {
        let step = match self.tier {
            Tier::Hour => HOUR,
            Tier::Day => DAY,
        };
        (0..(self.end - self.start).max(0) / step).map(move |i| self.start + i * step)
    }
}

/// The runs that cover `[s, u)` (whole hours): whole days from the day tier, the rest (at
/// most 23 hours at each end) from the hour tier.
fn cover(s: i64, u: i64) -> Vec<Run> {
    let (d0, d1) = (ceil_to(s, DAY), floor_to(u, DAY));
    if d0 >= d1 {
        return vec![Run { tier: Tier::Hour, start: s, end: u }];
    }
    vec![
        Run { tier: Tier::Hour, start: s, end: d0 },
        Run { tier: Tier::Day, start: d0, end: d1 },
        Run { tier: Tier::Hour, start: d1, end: u },
    ]
}

const PG_SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS api_tokens (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created BIGINT NOT NULL,
        last_used BIGINT)"];

/// What differs between the two back ends' SQL.
trait Dialect {
    const COMMAND: &'static str;
    const CRED: &'static str;
    const COLLATE: &'static str;
}

impl Dialect for Sqlite {
    const COMMAND: &'static str = "substr(json_extract(body, '$.command.input'), 1, 200)";
    const CRED: &'static str = "json_array(username, password)";
    const COLLATE: &'static str = "";
}

impl Dialect for Postgres {
    const COMMAND: &'static str = "LEFT((body::jsonb)->'command'->>'input', 200)";
    const CRED: &'static str = "json_build_array(username, password)::text";
    const COLLATE: &'static str = " COLLATE \"C\"";
}

#[derive(Debug, Clone)]
enum Inner {
    Sqlite(Pool<Sqlite>),
    Pg(Pool<Postgres>),
}

/// Runs `$body` with `$pool` bound to the pool and `$DB` to the sqlx database type.
macro_rules! on_pool {
    ($db:expr, |$pool:ident, $DB:ident| $body:expr) => {
        match &$db.inner {
            Inner::Sqlite($pool) => {
                #[allow(clippy::upper_case_acronyms, dead_code)]
                type $DB = Sqlite;
                $body
            }
            Inner::Pg($pool) => {
                #[allow(clippy::upper_case_acronyms, dead_code)]
                type $DB = Postgres;
                $body
            }
        }
    };
}

/// The HTTP layer's database handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Db {
    inner: Inner,
    rollup_lock: Arc<tokio::sync::Mutex<()>>,
    geo: Option<Arc<GeoIp>>,
    /// Whether the rollups were checked against this layout and GeoIP database.
    rollups_checked: Arc<AtomicBool>,
}

/// A filter over stored events: the store's query (pages of at most 1,000 here).
pub use crate::store::EventQuery as EventFilter;

/// One page of events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<Event>,
    /// Pass as `before` to get the next page; absent on the last page.
    pub next: Option<String>,
}

/// Parses a `next` cursor (`MICROS_UUID`).
pub fn parse_cursor(s: &str) -> Option<(Timestamp, Uuid)> {
    let (t, id) = s.split_once('_')?;
    Some((Timestamp::from_micros(t.parse().ok()?), Uuid::parse_str(id).ok()?))
}

fn cursor(e: &Event) -> String {
    format!("{}_{}", e.time.as_micros(), e.id)
}

/// A key and how many events had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopEntry {
    /// The key (address, command, service, kind).
    pub key: String,
    /// How many events.
    pub count: i64,
}

/// A credential pair and how many attempts used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredEntry {
    /// The user name offered.
    pub username: Option<String>,
    /// The password offered.
    pub password: Option<String>,
    /// How many events.
    pub count: i64,
}

/// Events per time step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// Step in seconds (a whole number of minutes).
    pub step_secs: i64,
    /// `[bucket start in microseconds, count]`, oldest first, every step present.
    pub points: Vec<(i64, i64)>,
}

/// What the overview page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overview {
    /// Range start (microseconds, aligned to the hour).
    pub since: i64,
    /// Range end (exclusive, aligned to the hour).
    pub until: i64,
    /// Events in the range.
    pub total: i64,
    /// Most frequent source addresses.
    pub top_sources: Vec<TopEntry>,
    /// Most frequent credential pairs.
    pub top_credentials: Vec<CredEntry>,
    /// Most frequent command lines.
    pub top_commands: Vec<TopEntry>,
    /// Busiest services.
    pub top_services: Vec<TopEntry>,
    /// Events by kind.
    pub top_kinds: Vec<TopEntry>,
    /// Events over time.
    pub timeline: Timeline,
    /// Whether a GeoIP database is configured (without one the two lists below are empty).
    pub geoip: bool,
    /// Busiest source countries (ISO codes).
    pub top_countries: Vec<TopEntry>,
    /// Where sources are, by whole-degree cell (City databases), busiest first, at most 500.
    pub map: Vec<MapPoint>,
    /// `rollup` (SQLite) or `direct` (PostgreSQL, or a rollup still catching up).
    pub source: &'static str,
}

/// Events from one map cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapPoint {
    /// Latitude (whole degrees).
    pub lat: i32,
    /// Longitude (whole degrees).
    pub lon: i32,
    /// How many events.
    pub count: i64,
}

/// One group of an alert digest: (kind, service, source) in one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestGroup {
    /// Event kind.
    pub kind: String,
    /// Service, when events carry one.
    pub service: Option<String>,
    /// Source address.
    pub src_ip: Option<String>,
    /// Events in the group.
    pub count: i64,
    /// First event (microseconds).
    pub first: i64,
    /// Last event (microseconds).
    pub last: i64,
}

/// A digest window, as the alert sinks send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Window start (microseconds).
    pub start: i64,
    /// Window end (microseconds).
    pub end: i64,
    /// Events in the window.
    pub total: i64,
    /// The largest groups, biggest first.
    pub groups: Vec<DigestGroup>,
}

/// An API token (the secret itself is only returned once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Token id.
    pub id: i64,
    /// Who it belongs to.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Created at (microseconds).
    pub created: i64,
    /// Last used (microseconds, updated at most once a minute).
    pub last_used: Option<i64>,
}

/// SHA-256 (hex) of an API token; only hashes are stored.
pub fn token_hash(token: &str) -> String {
    <Sha256 as sha2::Digest>::digest(token.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_token() -> String {
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let mut s = String::from("apiary_");
    for b in raw {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

fn ceil_to(t: i64, step: i64) -> i64 {
    let f = floor_to(t, step);
    if f == t { t } else { f.saturating_add(step) }
}

fn clip_key(s: &str) -> String {
    s.chars().take(KEY_CHARS).collect()
}

fn cred_from_key(key: &str) -> (Option<String>, Option<String>) {
    serde_json::from_str::<(Option<String>, Option<String>)>(key).unwrap_or((None, None))
}

/// The range and step an overview covers: hours for the top lists, and a timeline of at most
/// about 120 points in whole minutes.
fn align(since: Timestamp, until: Timestamp) -> (i64, i64, i64) {
    let s = floor_to(since.as_micros(), HOUR);
    let u = ceil_to(until.as_micros().max(s + 1), HOUR);
    let minutes = (u - s) / MINUTE;
    let step_min = (minutes + 119) / 120;
    (s, u, step_min.max(1) * MINUTE)
}

impl Db {
    /// Opens a pool on the Core database at `url` (`sqlite:PATH` or `postgres://...`, with the
    /// schema the Core uses) and creates this layer's tables and indexes. The Core's own
    /// tables must exist already (open the [`Store`](crate::Store) first).
    pub async fn open(url: &str, schema: Option<&str>) -> Result<Self, HttpError> {
        let inner = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = PgConnectOptions::from_str(url)?;
            if let Some(schema) = schema {
                if schema.is_empty()
                    || !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(HttpError::Invalid(format!("bad schema name {schema:?}")));
                }
                opts = opts.options([("search_path", schema)]);
            }
            let pool = PgPoolOptions::new().max_connections(6).connect_with(opts).await?;
            for stmt in PG_SCHEMA {
                sqlx::query(*stmt).execute(&pool).await?;
            }
            Inner::Pg(pool)
        } else if let Some(path) =
            url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))
        {
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(false)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
            for stmt in SQLITE_SCHEMA {
                sqlx::query(*stmt).execute(&pool).await?;
            }
            Inner::Sqlite(pool)
        } else {
            return Err(HttpError::Invalid(format!("unsupported database URL {url:?}")));
        };
        Ok(Self {
            inner,
            rollup_lock: Arc::new(tokio::sync::Mutex::new(())),
            geo: None,
            rollups_checked: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Places sources with `geo` (country and map cell) in the overview. Only the handle that
    /// folds the rollups needs it; the rollups are refolded when the database changes.
    pub fn with_geoip(mut self, geo: Option<Arc<GeoIp>>) -> Self {
        self.geo = geo;
        self
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match &self.inner {
            Inner::Sqlite(p) => p.close().await,
            Inner::Pg(p) => p.close().await,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.inner {
            Inner::Sqlite(_) => "sqlite",
            Inner::Pg(_) => "postgres",
        }
    }

    // -----------------------------------------------------------------------------------------
    // Tokens.

    /// Creates a token for `name` (1 to 64 of `[A-Za-z0-9._@-]`); with `replace`, an existing
    /// token of that name is revoked first. Returns the secret, which is never stored.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        replace: bool,
    ) -> Result<String, HttpError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if !ok {
            return Err(HttpError::Invalid(format!(
                "invalid token name {:?}: use 1 to 64 of A-Z a-z 0-9 . _ @ -",
                name.chars().take(80).collect::<String>()
            )));
        }
        if replace {
            self.delete_token(name).await?;
        }
        let token = new_token();
        let hash = token_hash(&token);
        let now = crate::now_micros();
        let res = on_pool!(self, |pool, DB| {
            sqlx::query(
                "INSERT INTO api_tokens (name, role, token_hash, created) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(role.as_str())
            .bind(&hash)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if res == 0 {
            return Err(HttpError::Invalid(format!("a token named {name:?} exists")));
        }
        Ok(token)
    }

    /// Revokes the token named `name`; false if there was none.
    pub async fn delete_token(&self, name: &str) -> Result<bool, HttpError> {
        let n = on_pool!(self, |pool, DB| {
            sqlx::query("DELETE FROM api_tokens WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Every token (without secrets).
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, HttpError> {
        on_pool!(self, |pool, DB| {
            let rows = sqlx::query(
                "SELECT id, name, role, created, last_used FROM api_tokens ORDER BY id",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let role: String = r.try_get("role")?;
                out.push(TokenInfo {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    role: Role::parse(&role).unwrap_or(Role::Viewer),
                    created: r.try_get("created")?,
                    last_used: r.try_get("last_used")?,
                });
            }
            Ok(out)
        })
    }

    /// Who `token` belongs to, if anyone. One indexed lookup by hash (no per-row password
    /// hashing as HoneyBee-Enhanced does).
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, HttpError> {
        if token.len() > 256 {
            return Ok(None);
        }
        let hash = token_hash(token);
        let now = crate::now_micros();
        on_pool!(self, |pool, DB| {
            let row =
                sqlx::query("SELECT name, role, last_used FROM api_tokens WHERE token_hash = $1")
                    .bind(&hash)
                    .fetch_optional(pool)
                    .await?;
            let Some(r) = row else { return Ok(None) };
            let name: String = r.try_get("name")?;
            let role: String = r.try_get("role")?;
            let last: Option<i64> = r.try_get("last_used")?;
            if last.is_none_or(|l| now - l > MINUTE) {
                sqlx::query("UPDATE api_tokens SET last_used = $1 WHERE token_hash = $2")
                    .bind(now)
                    .bind(&hash)
                    .execute(pool)
                    .await?;
            }
            Ok(Role::parse(&role).map(|role| Principal { name, role }))
        })
    }

    // -----------------------------------------------------------------------------------------
    // Events.

    /// Events matching `f`, newest first, with the cursor of the next page.
    pub async fn search(&self, f: &EventFilter) -> Result<EventPage, HttpError> {
        let limit = f.page_size().min(1000);
        let events = on_pool!(self, |pool, DB| {
            let mut qb = QueryBuilder::<DB>::new("SELECT body FROM events");
            crate::store::sql::push_event_filters(&mut qb, f, true);
            qb.push(" ORDER BY time DESC, id DESC LIMIT ").push_bind(limit);
            let rows = qb.build().fetch_all(pool).await?;
            decode_bodies(rows.iter().map(|r| r.try_get::<String, _>("body")))?
        });
        let next = if events.len() as i64 == limit { events.last().map(cursor) } else { None };
        Ok(EventPage { events, next })
    }

    /// One event by id.
    pub async fn event(&self, id: Uuid) -> Result<Option<Event>, HttpError> {
        on_pool!(self, |pool, DB| {
            // The cast is a constant of the back end.
            let sql = format!("SELECT body FROM events WHERE id = $1{}", DB::UUID);
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(decode_bodies(std::iter::once(r.try_get::<String, _>("body")))?
                    .into_iter()
                    .next()),
                None => Ok(None),
            }
        })
    }

    /// Every event of a session in order (at most `limit`, capped at 10,000).
    pub async fn session(&self, id: Uuid, limit: i64) -> Result<Vec<Event>, HttpError> {
        on_pool!(self, |pool, DB| {
            // The cast is a constant of the back end.
            let sql = format!(
                "SELECT body FROM events WHERE session = $1{} ORDER BY time, id LIMIT $2",
                DB::UUID
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.to_string())
                .bind(limit.clamp(1, 10_000))
                .fetch_all(pool)
                .await?;
            decode_bodies(rows.iter().map(|r| r.try_get::<String, _>("body")))
        })
    }

    /// Alert digests: the last `windows` windows of `window` before `now`, each with its
    /// largest (kind, service, source) groups, as the alert sinks group them.
    pub async fn digests(
        &self,
        now: Timestamp,
        window: Duration,
        windows: u32,
        groups: i64,
    ) -> Result<Vec<Digest>, HttpError> {
        let w = i64::try_from(window.as_micros()).unwrap_or(i64::MAX).max(MINUTE);
        let end = ceil_to(now.as_micros(), w);
        let mut out = Vec::new();
        for i in 0..i64::from(windows.clamp(1, 48)) {
            let (s, e) = (end - (i + 1) * w, end - i * w);
            let (total, groups) = on_pool!(self, |pool, DB| {
                let rows = sqlx::query(
                    "SELECT kind, service, src_ip, COUNT(*) AS n, MIN(time) AS first,
                            MAX(time) AS last
                     FROM events WHERE time >= $1 AND time < $2
                     GROUP BY kind, service, src_ip ORDER BY n DESC, last DESC LIMIT $3",
                )
                .bind(s)
                .bind(e)
                .bind(groups.clamp(1, 1000))
                .fetch_all(pool)
                .await?;
                let total: i64 =
                    sqlx::query("SELECT COUNT(*) AS n FROM events WHERE time >= $1 AND time < $2")
                        .bind(s)
                        .bind(e)
                        .fetch_one(pool)
                        .await?
                        .try_get("n")?;
                let mut g = Vec::with_capacity(rows.len());
                for r in &rows {
                    g.push(DigestGroup {
                        kind: r.try_get("kind")?,
                        service: r.try_get("service")?,
                        src_ip: r.try_get("src_ip")?,
                        count: r.try_get("n")?,
                        first: r.try_get("first")?,
                        last: r.try_get("last")?,
                    });
                }
                Ok::<_, HttpError>((total, g))
            })?;
            out.push(Digest { start: s, end: e, total, groups });
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Statistics.

    /// The overview for `[since, until)` (aligned to whole hours), top lists of `limit`.
    /// SQLite answers from the rollups (folding any rows not yet folded first, up to a bound);
    /// PostgreSQL, or a rollup still far behind, answers with direct queries.
    pub async fn overview(
        &self,
        since: Timestamp,
        until: Timestamp,
        limit: i64,
    ) -> Result<Overview, HttpError> {
        if let Inner::Sqlite(pool) = &self.inner
            && self.catch_up(ROLLUP_ON_REQUEST).await?
        {
            return rollup_overview(pool, self.geo.is_some(), since, until, limit).await;
        }
        self.overview_direct(since, until, limit).await
    }

    /// The overview computed straight from `events` (PostgreSQL's path; on SQLite the
    /// reference the rollups are tested against).
    pub async fn overview_direct(
        &self,
        since: Timestamp,
        until: Timestamp,
        limit: i64,
    ) -> Result<Overview, HttpError> {
        let (s, u, step) = align(since, until);
        let limit = limit.clamp(1, 100);
        on_pool!(self, |pool, DB| {
            let top = |expr: &str, extra: &str| {
                format!(
                    "SELECT {expr} AS key, COUNT(*) AS n FROM events
                     WHERE time >= $1 AND time < $2 AND {expr} IS NOT NULL {extra}
                     GROUP BY {expr} ORDER BY n DESC, {expr}{c} LIMIT $3",
                    c = <DB as Dialect>::COLLATE
                )
            };
            let mut lists = Vec::new();
            for sql in [
                top("src_ip", ""),
                top(<DB as Dialect>::CRED, "AND (username IS NOT NULL OR password IS NOT NULL)"),
                top(<DB as Dialect>::COMMAND, ""),
                top("service", ""),
                top("kind", ""),
            ] {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(s)
                    .bind(u)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                let mut l = Vec::with_capacity(rows.len());
                for r in &rows {
                    l.push(TopEntry { key: r.try_get("key")?, count: r.try_get("n")? });
                }
                lists.push(l);
            }
            let rows = sqlx::query(
                "SELECT (time / 60000000) * 60000000 AS b, COUNT(*) AS n FROM events
                 WHERE time >= $1 AND time < $2 GROUP BY (time / 60000000) * 60000000",
            )
            .bind(s)
            .bind(u)
            .fetch_all(pool)
            .await?;
            let mut minutes = Vec::with_capacity(rows.len());
            for r in &rows {
                minutes.push((r.try_get::<i64, _>("b")?, r.try_get::<i64, _>("n")?));
            }
            let places = match &self.geo {
                Some(g) => {
                    let rows = sqlx::query(
                        "SELECT src_ip, COUNT(*) AS n FROM events
                         WHERE time >= $1 AND time < $2 AND src_ip IS NOT NULL GROUP BY src_ip",
                    )
                    .bind(s)
                    .bind(u)
                    .fetch_all(pool)
                    .await?;
                    let mut countries: HashMap<String, i64> = HashMap::new();
                    let mut cells: HashMap<String, i64> = HashMap::new();
                    for r in &rows {
                        let Ok(ip) = r.try_get::<String, _>("src_ip")?.parse::<IpAddr>() else {
                            continue;
                        };
                        let n: i64 = r.try_get("n")?;
                        if let Some(p) = g.locate(ip) {
                            if let Some(c) = p.country {
                                *countries.entry(c).or_default() += n;
                            }
                            if let Some(c) = p.cell {
                                *cells.entry(geo::cell_key(c)).or_default() += n;
                            }
                        }
                    }
                    Some((largest(countries, limit as usize), largest(cells, MAP_CELLS)))
                }
                None => None,
            };
            Ok(assemble(s, u, step, lists, &minutes, places, "direct"))
        })
    }

    /// Folds event rows not yet in the rollups (SQLite only), at most `max_rows`; returns
    /// whether the rollups are now complete. Safe to call from several tasks.
    pub async fn catch_up(&self, max_rows: u64) -> Result<bool, HttpError> {
        let Inner::Sqlite(pool) = &self.inner else { return Ok(false) };
        let _guard = self.rollup_lock.lock().await;
        if !self.rollups_checked.load(Ordering::Acquire) {
            let epoch = self.geo.as_ref().map_or(0, |g| g.build_epoch());
            reset_stale_rollups(pool, epoch).await?;
            self.rollups_checked.store(true, Ordering::Release);
        }
        let mut done = 0u64;
        loop {
            let n = fold_chunk(pool, self.geo.as_deref()).await?;
            done += n;
            if n < ROLLUP_CHUNK as u64 {
                return Ok(true);
            }
            if done >= max_rows {
                return Ok(false);
            }
        }
    }
}

fn decode_bodies(
    bodies: impl Iterator<Item = Result<String, sqlx::Error>>,
) -> Result<Vec<Event>, HttpError> {
    let mut out = Vec::new();
    for b in bodies {
        let b = b?;
        match apiary_event::encode::from_json(b.as_bytes()) {
            Ok(e) => out.push(e),
            Err(e) => tracing::warn!(error = %e, "stored event body unreadable; skipped"),
        }
    }
    Ok(out)
}

/// The `k` largest counts, ordered like the SQL top lists (count descending, then key).
fn largest(counts: HashMap<String, i64>, k: usize) -> Vec<TopEntry> {
    let mut all: Vec<(String, i64)> = counts.into_iter().collect();
    all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all.into_iter().map(|(key, count)| TopEntry { key, count }).collect()
}

fn assemble(
    s: i64,
    u: i64,
    step: i64,
    mut lists: Vec<Vec<TopEntry>>,
    minutes: &[(i64, i64)],
    places: Option<(Vec<TopEntry>, Vec<TopEntry>)>,
    source: &'static str,
) -> Overview {
    let kinds = lists.pop().unwrap_or_default();
    let services = lists.pop().unwrap_or_default();
    let commands = lists.pop().unwrap_or_default();
    let creds = lists.pop().unwrap_or_default();
    let sources = lists.pop().unwrap_or_default();
    let buckets = usize::try_from(((u - s) + step - 1) / step).unwrap_or(0);
    let mut points: Vec<(i64, i64)> = (0..buckets).map(|i| (s + i as i64 * step, 0)).collect();
    let mut total = 0;
    for &(b, n) in minutes {
        total += n;
        if let Ok(i) = usize::try_from((b - s) / step)
            && let Some(p) = points.get_mut(i)
        {
            p.1 += n;
        }
    }
    Overview {
        since: s,
        until: u,
        total,
        top_sources: sources,
        top_credentials: creds
            .into_iter()
            .map(|t| {
                let (username, password) = cred_from_key(&t.key);
                CredEntry { username, password, count: t.count }
            })
            .collect(),
        top_commands: commands,
        top_services: services,
        top_kinds: kinds,
        timeline: Timeline { step_secs: step / 1_000_000, points },
        geoip: places.is_some(),
        top_countries: places.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
        map: places
            .map(|p| p.1)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| {
                geo::parse_cell(&t.key).map(|(lat, lon)| MapPoint { lat, lon, count: t.count })
            })
            .collect(),
        source,
    }
}

async fn rollup_overview(
    pool: &Pool<Sqlite>,
    geoip: bool,
    since: Timestamp,
    until: Timestamp,
    limit: i64,
) -> Result<Overview, HttpError> {
    let (s, u, step) = align(since, until);
    let limit = limit.clamp(1, 100);
    let cover = cover(s, u);
    let mut lists = Vec::new();
    for dim in [DIM_SRC, DIM_CRED, DIM_CMD, DIM_SERVICE, DIM_KIND] {
        lists.push(top_exact(pool, dim, &cover, limit as usize).await?);
    }
    let rows =
        sqlx::query("SELECT bucket, n FROM rollup_minute WHERE bucket >= $1 AND bucket < $2")
            .bind(s)
            .bind(u)
            .fetch_all(pool)
            .await?;
    let mut minutes = Vec::with_capacity(rows.len());
    for r in &rows {
        minutes.push((r.try_get::<i64, _>("bucket")?, r.try_get::<i64, _>("n")?));
    }
    let places = if geoip {
        Some((
            top_exact(pool, DIM_COUNTRY, &cover, limit as usize).await?,
            top_exact(pool, DIM_CELL, &cover, MAP_CELLS).await?,
        ))
    } else {
        None
    };
    Ok(assemble(s, u, step, lists, &minutes, places, "rollup"))
}

/// What the threshold algorithm knows about one key after reading the buckets' heads.
#[derive(Debug, Default)]
struct Seen {
    /// Sum of the counts read (a lower bound of the key's total).
    sum: i64,
    /// Sum of the depth floors of the buckets it was read in.
    floors: i64,
}

/// The `k` largest keys of `dim` over the buckets of `cover`, exact, ordered like the direct
/// query (count descending, then key).
///
/// Fagin's threshold algorithm over the buckets' counters: read the `depth` largest counters
/// of every bucket; a bucket's *floor* is its `depth`-th count (0 when it has fewer counters,
/// then it was read whole). A key never read has at most the sum of all floors, `T`; a key read
/// in some buckets has at most its read sum plus the floors of the others. The keys whose
/// bound reaches the `k`-th largest read sum get their exact totals by primary-key lookups;
/// when the `k`-th exact total is above `T`, no other key can enter the list and it is final.
/// Otherwise the depth grows fourfold; past [`TOP_MAX_DEPTH`] every counter in the range is
/// summed (the cost of a flat distribution, still exact).
async fn top_exact(
    pool: &Pool<Sqlite>,
    dim: i64,
    cover: &[Run],
    k: usize,
) -> Result<Vec<TopEntry>, HttpError> {
    let mut depth = TOP_FIRST_DEPTH.max(4 * k as i64);
    while depth <= TOP_MAX_DEPTH {
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut threshold = 0i64;
        for run in cover {
            let sql = format!(
                "SELECT key, n FROM {} WHERE dim = $1 AND bucket = $2 ORDER BY n DESC LIMIT $3",
                run.tier.table()
            );
            for b in run.buckets() {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(dim)
                    .bind(b)
                    .bind(depth)
                    .fetch_all(pool)
                    .await?;
                let floor = if rows.len() as i64 == depth {
                    rows.last().map(|r| r.try_get::<i64, _>("n")).transpose()?.unwrap_or(0)
                } else {
                    0
                };
                threshold += floor;
                for r in &rows {
                    let e = seen.entry(r.try_get("key")?).or_default();
                    e.sum += r.try_get::<i64, _>("n")?;
                    e.floors += floor;
                }
            }
        }
        // The k-th largest lower bound: keys whose upper bound is below it cannot be listed.
        let mut lows: Vec<i64> = seen.values().map(|v| v.sum).collect();
        lows.sort_unstable_by(|a, b| b.cmp(a));
        let kth_low = lows.get(k - 1).copied().unwrap_or(0);
        let mut exact: Vec<(String, i64)> = Vec::new();
        let mut unsure: Vec<String> = Vec::new();
        for (key, v) in seen {
            let upper = v.sum + (threshold - v.floors);
            if upper == v.sum {
                exact.push((key, v.sum));
            } else if upper >= kth_low {
                unsure.push(key);
            }
        }
        for chunk in unsure.chunks(400) {
            exact.extend(sum_keys(pool, dim, cover, chunk).await?);
        }
        exact.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        exact.truncate(k);
        let settled = match exact.get(k - 1) {
            Some(&(_, kth)) => kth > threshold,
            None => threshold == 0,
        };
        if settled {
            return Ok(exact.into_iter().map(|(key, count)| TopEntry { key, count }).collect());
        }
        depth *= 4;
    }
    top_by_sum(pool, dim, cover, k).await
}

/// Exact totals of `keys` over the buckets of `cover` (primary-key lookups).
async fn sum_keys(
    pool: &Pool<Sqlite>,
    dim: i64,
    cover: &[Run],
    keys: &[String],
) -> Result<Vec<(String, i64)>, HttpError> {
    let mut totals: HashMap<String, i64> = HashMap::new();
    for run in cover {
        if run.buckets().next().is_none() {
            continue;
        }
        // `bucket IN (...) AND key IN (...)`: SQLite seeks the primary key for each pair
        // instead of scanning every counter of the run.
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT key, SUM(n) AS n FROM ");
        qb.push(run.tier.table()).push(" WHERE dim = ").push_bind(dim).push(" AND bucket IN (");
        let mut sep = qb.separated(", ");
        for b in run.buckets() {
            sep.push_bind(b);
        }
        qb.push(") AND key IN (");
        let mut sep = qb.separated(", ");
        for k in keys {
            sep.push_bind(k.as_str());
        }
        qb.push(") GROUP BY key");
        for r in qb.build().fetch_all(pool).await? {
            *totals.entry(r.try_get("key")?).or_default() += r.try_get::<i64, _>("n")?;
        }
    }
    Ok(totals.into_iter().collect())
}

/// The top list by summing every counter of the range (the threshold algorithm's fallback).
async fn top_by_sum(
    pool: &Pool<Sqlite>,
    dim: i64,
    cover: &[Run],
    k: usize,
) -> Result<Vec<TopEntry>, HttpError> {
    let mut totals: HashMap<String, i64> = HashMap::new();
    for run in cover {
        let sql = format!(
            "SELECT key, SUM(n) AS n FROM {} WHERE dim = $1 AND bucket >= $2 AND bucket < $3
             GROUP BY key",
            run.tier.table()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dim)
            .bind(run.start)
            .bind(run.end)
            .fetch_all(pool)
            .await?;
        for r in &rows {
            *totals.entry(r.try_get("key")?).or_default() += r.try_get::<i64, _>("n")?;
        }
    }
    Ok(largest(totals, k))
}

/// Empties the rollups when they were folded by an older layout or with another GeoIP
/// database (`geoip`: its build epoch, 0 for none), so they are refolded.
async fn reset_stale_rollups(pool: &Pool<Sqlite>, geoip: i64) -> Result<(), HttpError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut meta = HashMap::new();
    for r in sqlx::query("SELECT name, value FROM rollup_meta").fetch_all(&mut *tx).await? {
        meta.insert(r.try_get::<String, _>("name")?, r.try_get::<i64, _>("value")?);
    }
    if meta.get("version") != Some(&ROLLUP_VERSION) || meta.get("geoip") != Some(&geoip) {
        if meta.contains_key("version") {
            tracing::info!("stats rollups are refolded (new layout or GeoIP database)");
        }
        for table in ["rollup_state", "rollup_minute", "rollup_hour", "rollup_day"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        for (name, value) in [("version", ROLLUP_VERSION), ("geoip", geoip)] {
            sqlx::query(
                "INSERT INTO rollup_meta (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Folds up to one chunk of new event rows into the rollups in one write transaction
/// (`BEGIN IMMEDIATE`, so no writer can commit rows between our read and our write).
async fn fold_chunk(pool: &Pool<Sqlite>, geo: Option<&GeoIp>) -> Result<u64, HttpError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let last: i64 = sqlx::query("SELECT last_rowid FROM rollup_state WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("last_rowid"))
        .transpose()?
        .unwrap_or(0);
    let sql = format!(
        "SELECT rowid AS r, time, kind, src_ip, service, {cmd} AS cmd,
                CASE WHEN username IS NOT NULL OR password IS NOT NULL THEN {cred} END AS cred
         FROM events WHERE rowid > $1 ORDER BY rowid LIMIT $2",
        cmd = Sqlite::COMMAND,
        cred = Sqlite::CRED,
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(last)
        .bind(ROLLUP_CHUNK)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let mut minutes: HashMap<i64, i64> = HashMap::new();
    let mut hours: HashMap<(i64, i64, String), i64> = HashMap::new();
    let mut days: HashMap<(i64, i64, String), i64> = HashMap::new();
    let mut max_rowid = last;
    for r in &rows {
        max_rowid = max_rowid.max(r.try_get::<i64, _>("r")?);
        let time: i64 = r.try_get("time")?;
        *minutes.entry(floor_to(time, MINUTE)).or_default() += 1;
        let (hour, day) = (floor_to(time, HOUR), floor_to(time, DAY));
        let mut bump = |dim: i64, key: Option<String>| {
            if let Some(k) = key {
                let k = clip_key(&k);
                *days.entry((dim, day, k.clone())).or_default() += 1;
                *hours.entry((dim, hour, k)).or_default() += 1;
            }
        };
        let src: Option<String> = r.try_get("src_ip")?;
        if let Some(g) = geo
            && let Some(place) =
                src.as_deref().and_then(|s| s.parse().ok()).and_then(|ip| g.locate(ip))
        {
            bump(DIM_COUNTRY, place.country);
            bump(DIM_CELL, place.cell.map(geo::cell_key));
        }
        bump(DIM_SRC, src);
        bump(DIM_CRED, r.try_get("cred")?);
        bump(DIM_CMD, r.try_get("cmd")?);
        bump(DIM_SERVICE, r.try_get("service")?);
        bump(DIM_KIND, Some(r.try_get("kind")?));
    }
    let mut mins: Vec<_> = minutes.into_iter().collect();
    mins.sort_unstable();
    for chunk in mins.chunks(400) {
        let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO rollup_minute (bucket, n) ");
        qb.push_values(chunk, |mut b, (bucket, n)| {
            b.push_bind(*bucket).push_bind(*n);
        });
        qb.push(" ON CONFLICT (bucket) DO UPDATE SET n = rollup_minute.n + excluded.n");
        qb.build().execute(&mut *tx).await?;
    }
    for (tier, counters) in [(Tier::Hour, hours), (Tier::Day, days)] {
        let mut rows: Vec<_> = counters.into_iter().collect();
        rows.sort_unstable();
        let table = tier.table();
        for chunk in rows.chunks(200) {
            let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO ");
            qb.push(table).push(" (dim, bucket, key, n) ");
            qb.push_values(chunk, |mut b, ((dim, bucket, key), n)| {
                b.push_bind(*dim).push_bind(*bucket).push_bind(key.clone()).push_bind(*n);
            });
            qb.push(" ON CONFLICT (dim, bucket, key) DO UPDATE SET n = ")
                .push(table)
                .push(".n + excluded.n");
            qb.build().execute(&mut *tx).await?;
        }
    }
    sqlx::query(
        "INSERT INTO rollup_state (id, last_rowid) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET last_rowid = excluded.last_rowid",
    )
    .bind(max_rowid)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.len() as u64)
}

/// Keeps the SQLite rollups current until cancelled.
pub(crate) async fn rollup_loop(db: Db, every: Duration, cancel: CancellationToken) {
    if db.backend() != "sqlite" {
        return;
    }
    loop {
        // In slices, so a request's own catch-up never waits behind a whole backfill.
        loop {
            match db.catch_up(ROLLUP_ON_REQUEST).await {
                Ok(true) => break,
                Ok(false) if !cancel.is_cancelled() => tokio::task::yield_now().await,
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "stats rollup failed; retrying");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoredEvent;
    use apiary_event::Kind;

    /// The threshold algorithm and its fallback (every counter summed) agree on flat and
    /// skewed key lists, over day runs, edge hours and single hours.
    #[tokio::test]
    async fn threshold_algorithm_matches_the_full_sum() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("core.db").display());
        let store = crate::store::open(&url, None).await.unwrap();
        let base = floor_to(crate::now_micros(), DAY) - 4 * DAY + 5 * HOUR;
        let events: Vec<StoredEvent> = (0..6000i64)
            .map(|i| {
                let h = (i as u64).wrapping_mul(2_654_435_761) % 1_000_003;
                let mut e = Event::at(
                    Kind::SESSION_OPEN,
                    Arc::from("n"),
                    Timestamp::from_micros(base + i * 60_000_000),
                    Uuid::now_v7(),
                );
                // Skewed sources, flat services: 300 and 150 keys.
                e.src_ip = Some(format!("10.2.0.{}", (h * h / 1_000_003) % 250).parse().unwrap());
                e.service = Some(Arc::from(format!("s{}", h % 150)));
                StoredEvent { node_id: Some(1), event: e }
            })
            .collect();
        store.insert_events(&events).await.unwrap();
        let db = Db::open(&url, None).await.unwrap();
        assert!(db.catch_up(u64::MAX).await.unwrap());
        let Inner::Sqlite(pool) = &db.inner else { unreachable!() };
        let ranges = [(base - HOUR, base + 100 * HOUR), (base + 3 * HOUR, base + 4 * HOUR)];
        for (s, u) in ranges {
            let (s, u, _) = align(Timestamp::from_micros(s), Timestamp::from_micros(u));
            let runs = cover(s, u);
            for dim in [DIM_SRC, DIM_SERVICE, DIM_KIND] {
                for k in [1, 5, 40] {
                    let fast = top_exact(pool, dim, &runs, k).await.unwrap();
                    let full = top_by_sum(pool, dim, &runs, k).await.unwrap();
                    assert_eq!(fast, full, "dim {dim} top {k} over {s}..{u}");
                    assert!(!fast.is_empty());
                }
            }
        }
        db.close().await;
    }
}
