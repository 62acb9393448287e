//! The Core's storage behind one [`Store`] trait: SQLite embedded by default, PostgreSQL by URL.
//!
//! Both back ends run the same statements (`$1` placeholders work on both) and differ only in
//! their schema DDL; see `sql.rs`. The query methods are shaped for the REST layer: events by
//! time range, source, node and kind with keyset paging, and the usual top-N statistics.

pub(crate) mod sql;
mod wal;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use apiary_event::{Event, Timestamp};
use apiary_proto::NodeCommandType;
use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

pub use sql::{PgStore, SqliteStore};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database said no.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The SQLite event writer's connection said no.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The SQLite event writer's thread ended (the runtime is shutting down).
    #[error("database writer stopped")]
    WriterGone,
    /// A thread the store needs could not be started.
    #[error("starting the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    /// A unique name or id is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// A stored value could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The URL names no supported database.
    #[error("unsupported database URL {0:?} (use sqlite:PATH or postgres://...)")]
    Url(String),
}

/// A node the Core knows (enrolled), with what it last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRecord {
    /// Core-assigned id, stable across reconnects (sent as `node_id` in every ack).
    pub id: i64,
    /// Enrollment name; the node sends it as `node_name`.
    pub name: String,
    /// TOTP secret (base32); never serialised.
    #[serde(skip)]
    pub totp_secret: Option<String>,
    /// SHA-256 (hex) of an unused one-time enrollment token; never serialised.
    #[serde(skip)]
    pub token_hash: Option<String>,
    /// The last TOTP step accepted, so no code works twice.
    pub last_totp_step: Option<i64>,
    /// The `node_id` the node itself sent last (HoneyBee nodes pick a random u64).
    pub claimed_id: Option<String>,
    /// Last status (`enrolled`, `Connected`, `Running`, ..., `offline`).
    pub status: String,
    /// Whether a connection is registered now.
    pub online: bool,
    /// Address the node reported.
    pub address: Option<String>,
    /// Port the node reported.
    pub port: Option<i64>,
    /// `Full` or `Agent`.
    pub node_type: Option<String>,
    /// The peer address of the last connection.
    pub peer: Option<String>,
    /// Operator override of the unit-variant style (`empty_object`, `bare_string`); `None`
    /// means auto-detect.
    pub unit_style: Option<String>,
    /// When it was enrolled (microseconds).
    pub created: i64,
    /// When it was last heard from (microseconds).
    pub last_seen: Option<i64>,
}

/// A command's life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// Queued, not yet written to the node.
    Pending,
    /// Written; waiting for a related report.
    Sent,
    /// The node reported something that answers it.
    Done,
    /// The node reported an error for it.
    Failed,
}

impl CommandStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Parses [`CommandStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "sent" => Self::Sent,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// The client certificate bound to a node (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertRecord {
    /// SHA-256 (hex) of its DER.
    pub sha256: String,
    /// Valid from (Unix seconds); `None` for certificates bound before validity was recorded
    /// (those were issued without an end).
    pub not_before: Option<i64>,
    /// Valid until (Unix seconds).
    pub not_after: Option<i64>,
}

/// A queued or past command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandRecord {
    /// Command id.
    pub id: i64,
    /// Target node.
    pub node_id: i64,
    /// The command.
    pub command: NodeCommandType,
    /// Where it is in its life cycle.
    pub status: CommandStatus,
    /// Queued at (microseconds).
    pub created: i64,
    /// Last written at.
    pub sent_at: Option<i64>,
    /// Answered at.
    pub done_at: Option<i64>,
    /// What the node answered.
    pub result: Option<String>,
    /// How many times it was written.
    pub attempts: i64,
}

/// A pot as its node last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PotRecord {
    /// The node.
    pub node_id: i64,
    /// The pot id.
    pub pot_id: String,
    /// The pot type.
    pub pot_type: String,
    /// The last status.
    pub status: String,
    /// The last message.
    pub message: Option<String>,
    /// Updated at (microseconds).
    pub updated: i64,
}

/// One operator or security-relevant action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Row id.
    pub id: i64,
    /// When (microseconds).
    pub time: i64,
    /// Who (`operator`, `node-server`, ...).
    pub actor: String,
    /// What (`node.add`, `command.send`, `registration.rejected`, ...).
    pub action: String,
    /// Details.
    pub detail: String,
}

/// An event with the Core node id it came from (None for local events).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The Core-assigned node id.
    pub node_id: Option<i64>,
    /// The event.
    pub event: Event,
}

/// A filter over stored events; newest first, keyset-paged with `before`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// Events at or after this time.
    pub since: Option<Timestamp>,
    /// Events before this time.
    pub until: Option<Timestamp>,
    /// Only this source address.
    pub src_ip: Option<IpAddr>,
    /// Only this Core node id.
    pub node_id: Option<i64>,
    /// Only this kind (`pot.event`, ...).
    pub kind: Option<String>,
    /// Only this service name.
    pub service: Option<String>,
    /// Only this session.
    pub session: Option<Uuid>,
    /// Only events whose JSON contains this text (unindexed: combine with a time range).
    pub text: Option<String>,
    /// Page after the last event of the previous page: its (time, id).
    pub before: Option<(Timestamp, Uuid)>,
    /// Page size (capped at 10,000; 0 means 100).
    pub limit: u32,
}

impl EventQuery {
    /// The page size in force.
    pub fn page_size(&self) -> i64 {
        match self.limit {
            0 => 100,
            n => i64::from(n.min(10_000)),
        }
    }
}

/// A count per key, for top-N statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count<K> {
    /// The key.
    pub key: K,
    /// How many events.
    pub count: i64,
}

/// Storage the Core needs. Times are microseconds since the epoch.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which back end (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Enrolls a node; fails with [`StoreError::Conflict`] when the name is taken.
    async fn create_node(
        &self,
        name: &str,
        totp_secret: Option<&str>,
        token_hash: Option<&str>,
        now: i64,
    ) -> Result<NodeRecord, StoreError>;
    /// A node by enrollment name.
    async fn node_by_name(&self, name: &str) -> Result<Option<NodeRecord>, StoreError>;
    /// A node by Core id.
    async fn node_by_id(&self, id: i64) -> Result<Option<NodeRecord>, StoreError>;
    /// Every node, by id.
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    /// Removes a node and its pots and pending commands; events stay.
    async fn delete_node(&self, id: i64) -> Result<bool, StoreError>;
    /// Records `step` as used if it is newer than the last used step; false means replay.
    async fn claim_totp_step(&self, id: i64, step: i64) -> Result<bool, StoreError>;
    /// Consumes the node's one-time token if it matches; false if it does not (or was used).
    async fn consume_token(&self, id: i64, token_hash: &str) -> Result<bool, StoreError>;
    /// Sets (or replaces) the node's TOTP secret and forgets used steps.
    async fn set_totp_secret(&self, id: i64, secret: &str) -> Result<(), StoreError>;
    /// Binds a client certificate to the node, replacing any earlier one (mutual TLS).
    async fn set_node_cert(
        &self,
        id: i64,
        cert: &NodeCertRecord,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The client certificate bound to the node, if one was issued.
    async fn node_cert(&self, id: i64) -> Result<Option<NodeCertRecord>, StoreError>;
    /// Sets the operator's unit-style override (`None`: auto).
    async fn set_unit_style(&self, id: i64, style: Option<&str>) -> Result<(), StoreError>;
    /// Marks a node connected with what its registration said.
    async fn node_connected(&self, id: i64, info: &ConnInfo, now: i64) -> Result<(), StoreError>;
    /// Records a heartbeat.
    async fn node_heartbeat(&self, id: i64, status: &str, now: i64) -> Result<(), StoreError>;
    /// Marks a node offline.
    async fn node_offline(&self, id: i64, now: i64) -> Result<(), StoreError>;
    /// Marks every node offline (Core start: no connection survives a restart).
    async fn all_offline(&self) -> Result<(), StoreError>;

    /// Creates or updates a pot.
    async fn upsert_pot(&self, pot: &PotRecord) -> Result<(), StoreError>;
    /// A node's pots.
    async fn list_pots(&self, node_id: i64) -> Result<Vec<PotRecord>, StoreError>;

    /// Queues a command; returns its id.
    async fn enqueue_command(
        &self,
        node_id: i64,
        command: &NodeCommandType,
        now: i64,
    ) -> Result<i64, StoreError>;
    /// The oldest pending command of a node.
    async fn next_pending_command(&self, node_id: i64)
    -> Result<Option<CommandRecord>, StoreError>;
    /// Marks a command written.
    async fn mark_command_sent(&self, id: i64, now: i64) -> Result<(), StoreError>;
    /// Marks a sent command done or failed.
    async fn finish_command(
        &self,
        id: i64,
        status: CommandStatus,
        result: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Puts a node's unanswered sent commands back in the queue (at-least-once on reconnect).
    async fn requeue_sent_commands(&self, node_id: i64) -> Result<u64, StoreError>;
    /// One command.
    async fn command(&self, id: i64) -> Result<Option<CommandRecord>, StoreError>;
    /// A node's commands, newest first.
    async fn list_commands(
        &self,
        node_id: i64,
        limit: i64,
    ) -> Result<Vec<CommandRecord>, StoreError>;

    /// Inserts events, skipping ids already stored; returns how many were new.
    async fn insert_events(&self, events: &[StoredEvent]) -> Result<u64, StoreError>;
    /// Events matching `q`, newest first.
    async fn query_events(&self, q: &EventQuery) -> Result<Vec<Event>, StoreError>;
    /// How many events match `q` (ignoring paging).
    async fn count_events(&self, q: &EventQuery) -> Result<i64, StoreError>;
    /// The most frequent source addresses in a time range.
    async fn top_sources(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<Count<String>>, StoreError>;
    /// The most frequent (username, password) pairs in a time range.
    async fn top_credentials(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<Count<(Option<String>, Option<String>)>>, StoreError>;

    /// Appends to the audit log.
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The newest audit records.
    async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError>;
}

/// What a registration told the Core about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The node's own `node_id`.
    pub claimed_id: u64,
    /// Reported address.
    pub address: String,
    /// Reported port.
    pub port: u16,
    /// Reported type.
    pub node_type: String,
    /// The TCP peer.
    pub peer: String,
}

/// Opens the store named by `url`: `sqlite:PATH` / `sqlite://PATH`, or `postgres://...`.
/// PostgreSQL may be given a `schema` to create and use (tests use one per test).
pub async fn open(url: &str, schema: Option<&str>) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, schema).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))
    {
        Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
    } else {
        Err(StoreError::Url(url.to_owned()))
    }
}
