//! Ingest benchmark: 50 nodes over TLS stream `PotEvent`s into the Core, into SQLite or
//! PostgreSQL; the anchor is the same number of events inserted straight into the store.
//!
//! Both databases get the deployed schema: the Core's store and the dashboard's layer on top
//! (`apiary up` and `core run` always serve the dashboard), so every index a real deployment
//! maintains per event is maintained here.
//!
//! `cargo bench -p apiary-core --bench ingest` (env: `BACKEND=sqlite|postgres`, `NODES`,
//! `EVENTS_PER_NODE`, `PG_URL`, `BATCH` and `QUEUE` (the Core's `ingest_batch`, `ingest_queue`), `PLAIN=1`; `ANCHOR_ONLY=1` runs the store part alone, e.g. under
//! callgrind).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod common;

/// The `apiary` binary's allocator, so the Core here runs as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiary_core::{Core, CoreConfig, EnrollKind, EventQuery, NodeTransport, StoredEvent};
use apiary_proto::TotpSecret;
use tokio::io::AsyncWriteExt;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn event_line(node: usize, i: usize) -> String {
    format!(
        "{{\"version\":2,\"message\":{{\"PotEvent\":{{\"node_id\":{node},\"pot_id\":\"cowrie-01\",\"pot_type\":\"cowrie\",\"event_type\":\"cowrie.login.failed\",\"timestamp\":\"2026-01-15T10:30:00Z\",\"data\":{{\"username\":\"root\",\"password\":\"pw{i}\",\"src_ip\":\"198.51.{}.{}\",\"src_port\":{},\"dst_port\":22,\"session\":\"s{node}x{i}\"}}}}}}}}\n",
        (i / 250) % 250,
        i % 250,
        1024 + i % 60000
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let nodes = env_num("NODES", 50);
    let per_node = env_num("EVENTS_PER_NODE", 4000);
    let backend = std::env::var("BACKEND").unwrap_or_else(|_| "sqlite".into());
    let plain = std::env::var("PLAIN").as_deref() == Ok("1");
    let total = (nodes * per_node) as u64;
    let pg_url = std::env::var("PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("apiary_bench_{}", uuid::Uuid::now_v7().simple());
    let mut cfg = CoreConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        transport: if plain { NodeTransport::Plain } else { NodeTransport::Tls },
        ..CoreConfig::default()
    };
    let backend_name = if backend == "postgres" { "postgres" } else { "sqlite" };
    cfg.ingest_batch = Some(env_num("BATCH", cfg.batch_for(backend_name)));
    cfg.ingest_queue = env_num("QUEUE", cfg.ingest_queue);
    if backend == "postgres" {
        cfg.database_url = Some(pg_url.clone());
        cfg.database_schema = Some(schema.clone());
    }

    // Anchor: the store alone, same events, same batch size, no network.
    let (anchor_url, anchor_schema) = match backend.as_str() {
        "postgres" => (pg_url.clone(), Some(format!("{schema}_anchor"))),
        _ => (format!("sqlite:{}", dir.path().join("anchor.db").display()), None),
    };
    let anchor_store =
        apiary_core::store::open(&anchor_url, anchor_schema.as_deref()).await.unwrap();
    let anchor_db =
        apiary_core::http::Db::open(&anchor_url, anchor_schema.as_deref()).await.unwrap();
    let node_name: Arc<str> = Arc::from("anchor");
    let mut anchor_events = Vec::with_capacity(total as usize);
    for n in 0..nodes {
        for i in 0..per_node {
            let line = event_line(n, i);
            let msg = apiary_proto::wire::decode_node_message(line.as_bytes()).unwrap().message;
            let apiary_proto::NodeMessage::PotEvent(p) = msg else { unreachable!() };
            let e =
                apiary_proto::convert::pot_event(&p, &node_name, apiary_event::Timestamp::now());
            anchor_events.push(StoredEvent { node_id: Some(1), event: e });
        }
    }
    let t = Instant::now();
    for chunk in anchor_events.chunks(cfg.batch_for(backend_name)) {
        anchor_store.insert_events(chunk).await.unwrap();
    }
    let anchor_secs = t.elapsed().as_secs_f64();
    drop(anchor_events);
    anchor_db.close().await;
    if std::env::var("ANCHOR_ONLY").as_deref() == Ok("1") {
        println!(
            "ingest backend={backend} anchor(store only)={:.0} ev/s",
            total as f64 / anchor_secs
        );
        drop(anchor_store);
        drop_schemas(&backend, &pg_url, &schema).await;
        return;
    }

    let store_url = cfg.store_url();
    let db_schema = cfg.database_schema.clone();
    let core = Core::start(cfg).await.unwrap();
    let _dashboard = apiary_core::http::Db::open(&store_url, db_schema.as_deref()).await.unwrap();
    let ca = core.tls_files().map(|f| f.ca_cert.clone());
    let addr = core.local_addr();
    let mut secrets = Vec::new();
    for n in 0..nodes {
        let e = core.add_node(&format!("bench-{n}"), EnrollKind::Totp).await.unwrap();
        secrets.push(TotpSecret::from_base32(&e.totp_secret.unwrap()).unwrap());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();

    // Connect and register everyone first, then start the clock.
    let mut conns = Vec::new();
    for (n, s) in secrets.iter().enumerate() {
        let mut io = common::connect(addr, ca.as_deref()).await.unwrap();
        io.write_all(
            common::registration(&format!("bench-{n}"), n as u64 + 1000, &s.code_at(now))
                .as_bytes(),
        )
        .await
        .unwrap();
        let ack = common::read_line(&mut io).await.unwrap();
        assert!(String::from_utf8_lossy(&ack).contains("\"accepted\":true"));
        io.write_all(common::HEARTBEAT.as_bytes()).await.unwrap();
        conns.push(io);
    }
    // Each first heartbeat is stored as a node.status event; let those land before timing.
    while core.stats().events_stored < nodes as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = core.stats().events_stored;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (n, mut io) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(64 * 1024);
            for i in 0..per_node {
                buf.extend_from_slice(event_line(n, i).as_bytes());
                if buf.len() > 60 * 1024 {
                    io.write_all(&buf).await.unwrap();
                    buf.clear();
                }
            }
            io.write_all(&buf).await.unwrap();
            io.flush().await.unwrap();
            io
        }));
    }
    let mut keep = Vec::new();
    for t in tasks {
        keep.push(t.await.unwrap());
    }
    let sent_secs = t.elapsed().as_secs_f64();
    loop {
        let s = core.stats();
        if s.events_stored - before + s.events_duplicate >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let stored = core
        .store()
        .count_events(&EventQuery { kind: Some("pot.event".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(stored as u64, total, "every event stored once");
    let rate = total as f64 / secs;
    let anchor_rate = total as f64 / anchor_secs;
    println!(
        "ingest backend={backend} transport={} nodes={nodes} events={total} sent_in={sent_secs:.2}s stored_in={secs:.2}s rate={rate:.0} ev/s anchor(store only)={anchor_rate:.0} ev/s ratio={:.2}",
        if plain { "plain" } else { "tls" },
        rate / anchor_rate
    );
    drop(keep);
    core.shutdown().await;
    drop(anchor_store);
    drop_schemas(&backend, &pg_url, &schema).await;
}

/// Drops the run's PostgreSQL schemas (the Core's and the anchor's): a run of 1,000,000
/// events leaves about 2.5 GB behind, and repeated runs filled the disk.
async fn drop_schemas(backend: &str, pg_url: &str, schema: &str) {
    if backend != "postgres" {
        return;
    }
    let pool = sqlx::PgPool::connect(pg_url).await.unwrap();
    for name in [schema.to_owned(), format!("{schema}_anchor")] {
        // The name is made above from a UUID, never input.
        let ddl = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
        sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(&pool).await.unwrap();
    }
    pool.close().await;
}
