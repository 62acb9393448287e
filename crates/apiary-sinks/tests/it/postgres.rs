//! PostgreSQL sink against the local server (127.0.0.1:5432, trust auth, database `test`).

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::common::*;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn count(table: &str) -> (i64, i64) {
    let mut c = PgConnection::connect(URL).await.unwrap();
    let q = format!("SELECT count(*), count(DISTINCT id) FROM {table}");
    sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(q)).fetch_one(&mut c).await.unwrap()
}

#[tokio::test]
async fn creates_schema_copies_and_dedupes_by_id() {
    if !service("127.0.0.1:5432", "PostgreSQL").await {
        return;
    }
    let table = format!("t_{}", unique());
    let cfg = logger(&format!(
        "[[logger]]\ntype = \"postgres\"\nurl = \"{URL}\"\ntable = \"{table}\"\nspool = false\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut spec = cfg.build(&[], dir.path()).unwrap();
    let batch: Vec<_> = (0..500).map(|i| std::sync::Arc::new(event(i))).collect();
    spec.sink.send(&batch).await.unwrap();
    // A retried batch (the pipeline's at-least-once) stores nothing twice.
    spec.sink.send(&batch).await.unwrap();
    assert_eq!(count(&table).await, (500, 500));
    let mut c = PgConnection::connect(URL).await.unwrap();
    let q = format!(
        "SELECT event->'payload'->>'b64', host(src_ip), kind FROM {table} WHERE (event->'fields'->>'seq')::int = 7"
    );
    let (b64, ip, kind): (String, String, String) =
        sqlx::query_as(AssertSqlSafe(q)).fetch_one(&mut c).await.unwrap();
    assert_eq!(b64, "cm9vdAlwYXNzXDcK");
    assert_eq!(ip, "203.0.113.7");
    assert_eq!(kind, "session.rx");
}

#[tokio::test]
async fn pipeline_delivers_every_event_once() {
    if !service("127.0.0.1:5432", "PostgreSQL").await {
        return;
    }
    let table = format!("t_{}", unique());
    let cfg = logger(&format!(
        "[[logger]]\ntype = \"postgres\"\nurl = \"{URL}\"\ntable = \"{table}\"\nbatch = 2000\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = start(&cfg, dir.path());
    let em = p.emitter();
    for i in 0..5000 {
        em.emit(event(i));
    }
    let stats = p.shutdown(Duration::from_secs(30)).await;
    assert_eq!(stats[0].1.delivered, 5000, "{:?}", stats[0].1);
    assert_eq!(count(&table).await, (5000, 5000));
}

#[tokio::test]
async fn a_down_database_does_not_fail_build_and_reports_in_loggers_test() {
    let cfg = logger(
        "[[logger]]\ntype = \"postgres\"\nname = \"pg-down\"\nurl = \"postgres://postgres@127.0.0.1:1/test\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    cfg.build(&[], dir.path()).unwrap();
    let report =
        apiary_sinks::test_sinks(&[cfg], &[], dir.path(), "n", Duration::from_secs(5)).await;
    assert_eq!(report[0].name, "pg-down");
    assert!(report[0].result.is_err());
}
