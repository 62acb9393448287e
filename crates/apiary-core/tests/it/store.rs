//! The Store contract, run on SQLite and (when reachable) PostgreSQL with a fresh schema, plus
//! one end-to-end node session on PostgreSQL.

use std::sync::Arc;

use apiary_core::store::{ConnInfo, SqliteStore};
use apiary_core::{
    CommandStatus, EnrollKind, EventQuery, PotRecord, Store, StoreError, StoredEvent,
};
use apiary_event::{Auth, AuthMethod, Event, Kind, Timestamp};
use apiary_proto::NodeCommandType;

use crate::util::{self, Client, code, config, eventually, start};

async fn backends(dir: &std::path::Path) -> Vec<Arc<dyn Store>> {
    let mut out: Vec<Arc<dyn Store>> =
        vec![Arc::new(SqliteStore::open(&dir.join("t.db")).await.unwrap())];
    if let Some(pg) = util::pg_store().await {
        out.push(pg);
    }
    out
}

fn event(t_secs: i64, kind: Kind, src: &str, user: Option<&str>) -> Event {
    let time = Timestamp::from_secs_micros(t_secs, 0);
    let mut e =
        Event::at(kind, "n".into(), time, apiary_event::new_id_at(time, rand_bytes(t_secs, src)));
    e.src_ip = Some(src.parse().unwrap());
    if let Some(u) = user {
        e.auth = Some(Box::new(Auth {
            method: AuthMethod::Password,
            username: Some(u.into()),
            password: Some("pw".into()),
            success: false,
            extra: Default::default(),
        }));
    }
    e
}

fn rand_bytes(t: i64, src: &str) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&t.to_be_bytes());
    b[8] = src.len() as u8;
    b[9] = src.bytes().last().unwrap_or(0);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_steps_tokens_and_audit_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for store in backends(dir.path()).await {
        let b = store.backend();
        let a = store.create_node("a", Some("SECRET"), None, 1).await.unwrap();
        assert!(
            matches!(store.create_node("a", None, None, 2).await, Err(StoreError::Conflict(_))),
            "{b}"
        );
        let t = store.create_node("t", None, Some("hash"), 3).await.unwrap();
        assert_ne!(a.id, t.id);
        assert_eq!(store.node_by_name("a").await.unwrap().unwrap(), a);
        assert_eq!(store.list_nodes().await.unwrap().len(), 2);

        assert!(store.claim_totp_step(a.id, 100).await.unwrap());
        assert!(!store.claim_totp_step(a.id, 100).await.unwrap(), "{b}: same step twice");
        assert!(!store.claim_totp_step(a.id, 99).await.unwrap(), "{b}: older step");
        assert!(store.claim_totp_step(a.id, 101).await.unwrap());

        assert!(!store.consume_token(t.id, "other").await.unwrap());
        assert!(store.consume_token(t.id, "hash").await.unwrap());
        assert!(!store.consume_token(t.id, "hash").await.unwrap(), "{b}: token used twice");

        let info = ConnInfo {
            claimed_id: u64::MAX,
            address: "0.0.0.0".into(),
            port: 8080,
            node_type: "Full".into(),
            peer: "127.0.0.1:1".into(),
        };
        store.node_connected(a.id, &info, 10).await.unwrap();
        store.node_heartbeat(a.id, "Running", 11).await.unwrap();
        let r = store.node_by_id(a.id).await.unwrap().unwrap();
        assert!(r.online);
        assert_eq!(r.status, "Running");
        assert_eq!(r.claimed_id.as_deref(), Some("18446744073709551615"));
        store.all_offline().await.unwrap();
        assert!(!store.node_by_id(a.id).await.unwrap().unwrap().online);

        store
            .upsert_pot(&PotRecord {
                node_id: a.id,
                pot_id: "p".into(),
                pot_type: "cowrie".into(),
                status: "Running".into(),
                message: None,
                updated: 5,
            })
            .await
            .unwrap();
        store
            .upsert_pot(&PotRecord {
                node_id: a.id,
                pot_id: "p".into(),
                pot_type: "".into(),
                status: "Stopped".into(),
                message: Some("bye".into()),
                updated: 6,
            })
            .await
            .unwrap();
        let pots = store.list_pots(a.id).await.unwrap();
        assert_eq!(pots.len(), 1);
        assert_eq!(
            (pots[0].pot_type.as_str(), pots[0].status.as_str()),
            ("cowrie", "Stopped"),
            "{b}"
        );

        store.audit("operator", "node.add", "a", 7).await.unwrap();
        store.audit("operator", "node.delete", "t", 8).await.unwrap();
        let log = store.audit_log(10).await.unwrap();
        assert_eq!(
            log.iter().map(|l| l.action.as_str()).collect::<Vec<_>>(),
            ["node.delete", "node.add"]
        );

        assert!(store.delete_node(t.id).await.unwrap());
        assert!(!store.delete_node(t.id).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_command_queue_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for store in backends(dir.path()).await {
        let b = store.backend();
        let n = store.create_node("n", None, None, 1).await.unwrap();
        let c1 = store.enqueue_command(n.id, &NodeCommandType::Restart, 1).await.unwrap();
        let c2 =
            store.enqueue_command(n.id, &NodeCommandType::DeployPot("x".into()), 2).await.unwrap();
        let next = store.next_pending_command(n.id).await.unwrap().unwrap();
        assert_eq!((next.id, next.command.clone()), (c1, NodeCommandType::Restart), "{b}");
        store.mark_command_sent(c1, 3).await.unwrap();
        assert_eq!(store.next_pending_command(n.id).await.unwrap().unwrap().id, c2);
        // Disconnect before an answer: the command goes back to the queue, first in line.
        assert_eq!(store.requeue_sent_commands(n.id).await.unwrap(), 1);
        assert_eq!(store.next_pending_command(n.id).await.unwrap().unwrap().id, c1);
        store.mark_command_sent(c1, 4).await.unwrap();
        store.finish_command(c1, CommandStatus::Done, Some("ok"), 5).await.unwrap();
        let r = store.command(c1).await.unwrap().unwrap();
        assert_eq!(
            (r.status, r.attempts, r.result.as_deref(), r.done_at),
            (CommandStatus::Done, 2, Some("ok"), Some(5))
        );
        // Finished commands are not re-queued or re-finished.
        assert_eq!(store.requeue_sent_commands(n.id).await.unwrap(), 0);
        store.finish_command(c1, CommandStatus::Failed, Some("late"), 6).await.unwrap();
        assert_eq!(store.command(c1).await.unwrap().unwrap().status, CommandStatus::Done);
        let list = store.list_commands(n.id, 10).await.unwrap();
        assert_eq!(list.iter().map(|c| c.id).collect::<Vec<_>>(), [c2, c1]);
        assert_eq!(list[0].command, NodeCommandType::DeployPot("x".into()));
    }
}

/// A batch large enough to go in as several parts (PostgreSQL: parallel `COPY`s; SQLite: several
/// statements in one transaction) where only some parts repeat stored events: the parts that
/// collide fall back to the deduplicating insert, the others go straight in, and every event
/// is stored once (the repeat of the first event sits in the last part, so the two parts race
/// for it on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_with_repeats_in_some_parts_store_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    for store in backends(dir.path()).await {
        let b = store.backend();
        let batch: Vec<StoredEvent> = (0..3000)
            .map(|i| StoredEvent {
                node_id: Some(1),
                event: event(1_700_000_000 + i, Kind::POT_EVENT, "10.0.0.3", Some("root")),
            })
            .collect();
        // The last 200 first: the next batch's second half collides, its first half does not.
        assert_eq!(store.insert_events(&batch[2800..]).await.unwrap(), 200, "{b}");
        let mut next = batch.clone();
        next.push(batch[0].clone());
        assert_eq!(store.insert_events(&next).await.unwrap(), 2800, "{b}");
        assert_eq!(store.insert_events(&next).await.unwrap(), 0, "{b}");
        let q = EventQuery { src_ip: Some("10.0.0.3".parse().unwrap()), ..Default::default() };
        assert_eq!(store.count_events(&q).await.unwrap(), 3000, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_dedup_filter_page_and_rank_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for store in backends(dir.path()).await {
        let b = store.backend();
        let mut batch = Vec::new();
        for i in 0..30 {
            let src = if i % 3 == 0 { "10.0.0.1" } else { "10.0.0.2" };
            let kind = if i % 2 == 0 { Kind::AUTH_ATTEMPT } else { Kind::POT_EVENT };
            let user = (i % 2 == 0).then_some(if i % 4 == 0 { "root" } else { "admin" });
            batch.push(StoredEvent {
                node_id: Some(1 + i % 2),
                event: event(1_700_000_000 + i, kind, src, user),
            });
        }
        // Five events of one session (ids are `uuid` on PostgreSQL, text on SQLite).
        let session = uuid::Uuid::now_v7();
        for se in &mut batch[..5] {
            se.event.session = Some(session);
        }
        // Characters PostgreSQL's COPY text format must escape survive the round trip.
        batch[29].event.message = Some("back\\slash\ttab\nnewline\rcr \"q\" \\N é".into());
        assert_eq!(store.insert_events(&batch).await.unwrap(), 30, "{b}");
        // At-least-once delivery: a resend stores nothing new.
        assert_eq!(store.insert_events(&batch[..10]).await.unwrap(), 0, "{b}");
        // The same new event twice in one batch is stored once.
        let extra = StoredEvent {
            node_id: None,
            event: event(1_600_000_000, Kind::TEST, "10.9.9.9", None),
        };
        assert_eq!(store.insert_events(&[extra.clone(), extra]).await.unwrap(), 1, "{b}");
        assert_eq!(
            store
                .count_events(&EventQuery { kind: Some("test".into()), ..Default::default() })
                .await
                .unwrap(),
            1
        );
        let q = EventQuery {
            kind: None,
            since: Some(Timestamp::from_secs_micros(1_650_000_000, 0)),
            ..Default::default()
        };
        assert_eq!(store.count_events(&q).await.unwrap(), 30);
        let by_session = EventQuery { session: Some(session), ..Default::default() };
        assert_eq!(store.count_events(&by_session).await.unwrap(), 5, "{b}");
        let timeline = store.query_events(&by_session).await.unwrap();
        assert!(timeline.iter().all(|e| e.session == Some(session)), "{b}");

        // Newest first, keyset paging without gaps or repeats.
        let mut seen = Vec::new();
        let mut q = EventQuery { limit: 7, ..q };
        loop {
            let page = store.query_events(&q).await.unwrap();
            if page.is_empty() {
                break;
            }
            let last = page.last().unwrap();
            q.before = Some((last.time, last.id));
            seen.extend(page);
        }
        assert_eq!(seen.len(), 30, "{b}");
        assert!(seen.iter().all(|e| e.kind != Kind::TEST));
        assert!(seen.windows(2).all(|w| w[0].time > w[1].time));
        assert_eq!(seen[0], batch[29].event, "{b}: stored events read back unchanged");

        let q = EventQuery {
            since: Some(Timestamp::from_secs_micros(1_700_000_010, 0)),
            until: Some(Timestamp::from_secs_micros(1_700_000_020, 0)),
            src_ip: Some("10.0.0.2".parse().unwrap()),
            node_id: Some(1),
            kind: Some("auth.attempt".into()),
            ..Default::default()
        };
        let got = store.query_events(&q).await.unwrap();
        // i in 10..20, even (node 1, auth), not divisible by 3: 10, 14, 16.
        assert_eq!(
            got.iter().map(|e| e.time.as_secs() - 1_700_000_000).collect::<Vec<_>>(),
            [16, 14, 10],
            "{b}"
        );
        assert_eq!(store.count_events(&q).await.unwrap(), 3);

        let top = store.top_sources(None, None, 5).await.unwrap();
        assert_eq!(top[0].key, "10.0.0.2");
        assert_eq!((top[0].count, top[1].count), (20, 10), "{b}");
        let creds = store.top_credentials(None, None, 5).await.unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[0].count + creds[1].count, 15, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_session_end_to_end_on_postgres() {
    if !util::pg_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.database_url = Some(util::PG_URL.into());
    cfg.database_schema = Some(util::fresh_schema());
    let core = start(cfg).await;
    assert_eq!(core.store().backend(), "postgres");
    let n = core.add_node("pg-node", EnrollKind::Totp).await.unwrap();
    let s = n.totp_secret.unwrap();
    let used = code(&s, 0);
    let mut c = Client::connect(&core).await;
    assert!(c.register("pg-node", 1, Some(used.clone())).await.accepted);
    c.heartbeat().await;
    c.send_raw(br#"{"version":2,"message":{"PotEvent":{"pot_id":"c","event_type":"cowrie.login.success","data":{"username":"u","password":"p","src_ip":"198.51.100.9"}}}}"#).await;
    core.send_command(n.node_id, NodeCommandType::GetPotStatus("c".into())).await.unwrap();
    assert!(matches!(c.recv().await, Some(apiary_proto::CoreMessage::NodeCommand(_))));
    let store = core.store();
    let q = EventQuery { kind: Some("pot.event".into()), ..Default::default() };
    let ev = eventually("event in postgres", || async {
        let v = store.query_events(&q).await.unwrap();
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert!(ev[0].auth.as_ref().unwrap().success);
    // A replayed code is refused on PostgreSQL too.
    let mut c2 = Client::connect(&core).await;
    assert!(!c2.register("pg-node", 1, Some(used)).await.accepted);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_postgres_events_table_gets_byte_wise_collation_and_uuid_ids() {
    if !util::pg_available().await {
        return;
    }
    let schema = util::fresh_schema();
    let pool = sqlx::PgPool::connect(util::PG_URL).await.unwrap();
    // The events table as earlier versions created it: the database's default collation.
    for stmt in [
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.events (id TEXT PRIMARY KEY, time BIGINT NOT NULL,
             kind TEXT NOT NULL, node_id BIGINT, node TEXT NOT NULL, pot TEXT, src_ip TEXT,
             src_port BIGINT, username TEXT, password TEXT, body TEXT NOT NULL)"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt)).execute(&pool).await.unwrap();
    }
    let old = event(1_700_000_000, Kind::POT_EVENT, "203.0.113.7", None);
    let mut body = Vec::new();
    apiary_event::encode::json_line(&old, &mut body);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.events (id, time, kind, node, src_ip, body) \
         VALUES ($1, $2, $3, 'n', '203.0.113.7', $4)"
    )))
    .bind(old.id.to_string())
    .bind(old.time.as_micros())
    .bind(old.kind.as_str())
    .bind(String::from_utf8(body).unwrap().trim_end().to_owned())
    .execute(&pool)
    .await
    .unwrap();

    let store = apiary_core::store::open(util::PG_URL, Some(&schema)).await.unwrap();
    let columns: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, collation_name::text \
         FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'events' \
         ORDER BY column_name",
    )
    .bind(&schema)
    .fetch_all(&pool)
    .await
    .unwrap();
    for (column, _, collation) in columns.iter().filter(|c| c.1 == "text") {
        let byte_wise = ["kind", "node", "src_ip", "service"].contains(&&**column);
        assert_eq!(collation.as_deref() == Some("C"), byte_wise, "{column}: {columns:?}");
    }
    // Event and session ids became `uuid`, and the old row is found by its id.
    let uuids: Vec<&str> = columns.iter().filter(|c| c.1 == "uuid").map(|c| c.0.as_str()).collect();
    assert_eq!(uuids, ["id", "session"]);
    let by_id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.events WHERE id = $1::uuid"
    )))
    .bind(old.id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(by_id, 1);
    // The old row is still there and found through the rebuilt source index; new ones go in.
    let by_src = EventQuery { src_ip: Some("203.0.113.7".parse().unwrap()), ..Default::default() };
    assert_eq!(store.count_events(&by_src).await.unwrap(), 1);
    let new = event(1_700_000_100, Kind::POT_EVENT, "203.0.113.7", None);
    store.insert_events(&[StoredEvent { node_id: None, event: new }]).await.unwrap();
    assert_eq!(store.count_events(&by_src).await.unwrap(), 2);
    // Opening it again finds nothing left to change.
    drop(apiary_core::store::open(util::PG_URL, Some(&schema)).await.unwrap());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
}

/// New SQLite files get 16 KiB pages (fewer WAL frames per batch); a file an earlier version
/// made with SQLite's 4 KiB default keeps its pages, gets the schema and takes events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_get_16_kib_pages_and_older_files_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |p: &std::path::Path| -> i64 {
        let c = rusqlite::Connection::open(p).unwrap();
        c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
    };
    let fresh = dir.path().join("new.db");
    let older = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&older).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE keep (v TEXT); INSERT INTO keep VALUES ('x');",
        )
        .unwrap();
    }
    assert_eq!(page_size(&older), 4096);
    for (path, want) in [(&fresh, 16384), (&older, 4096)] {
        let store = SqliteStore::open(path).await.unwrap();
        let batch: Vec<StoredEvent> = (0..50)
            .map(|i| StoredEvent {
                node_id: None,
                event: event(1_700_000_000 + i, Kind::POT_EVENT, "192.0.2.1", Some("root")),
            })
            .collect();
        assert_eq!(store.insert_events(&batch).await.unwrap(), 50, "{}", path.display());
        assert_eq!(store.count_events(&EventQuery::default()).await.unwrap(), 50);
        drop(store);
        assert_eq!(page_size(path), want, "{}", path.display());
    }
    let c = rusqlite::Connection::open(&older).unwrap();
    let kept: String = c.query_row("SELECT v FROM keep", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, "x");
}
