//! Fault tests against the local PostgreSQL: a connection cut in the middle of 100,000 events,
//! and a producer SIGKILLed mid-stream and restarted. Every event must arrive, none twice.
//!
//! The outage is made by a TCP proxy this test controls (the shared server is never stopped).
//! Its length is `APIARY_FAULT_OUTAGE_SECS` (default 5 s; the 30 s with
//! `APIARY_FAULT_OUTAGE_SECS=30`).

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio::io::AsyncBufReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::common::*;

const PG: &str = "127.0.0.1:5432";

/// A TCP proxy to PostgreSQL that can cut every connection and refuse new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let (u, c) = (Arc::clone(&up), Arc::clone(&conns));
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !u.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(PG).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { port, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn seqs(table: &str) -> (i64, i64, i64) {
    let mut c = PgConnection::connect("postgres://postgres@127.0.0.1:5432/test").await.unwrap();
    let q = format!(
        "SELECT count(*), count(DISTINCT (event->'fields'->>'seq')::int), coalesce(max((event->'fields'->>'seq')::bigint), -1) FROM {table}"
    );
    sqlx::query_as::<_, (i64, i64, i64)>(AssertSqlSafe(q)).fetch_one(&mut c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_stream_loses_nothing_and_duplicates_nothing() {
    if !service(PG, "PostgreSQL").await {
        return;
    }
    let outage: u64 =
        std::env::var("APIARY_FAULT_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let proxy = Proxy::start().await;
    let table = format!("fault_{}", unique());
    let cfg = logger(&format!(
        "[[logger]]\ntype = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:{}/test\"\ntable = \"{table}\"\nbatch = 2000\nsend_timeout = \"5s\"\n",
        proxy.port
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = start(&cfg, dir.path());
    let em = p.emitter();
    const TOTAL: u32 = 100_000;
    let chunk = 1000;
    let cut_at = 30;
    let chunks_during_outage = 20;
    for c in 0..(TOTAL / chunk) {
        if c == cut_at {
            proxy.cut();
        }
        for i in c * chunk..(c + 1) * chunk {
            em.emit(event(i));
        }
        if (cut_at..cut_at + chunks_during_outage).contains(&c) {
            tokio::time::sleep(Duration::from_millis(
                outage * 1000 / u64::from(chunks_during_outage),
            ))
            .await;
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if c == cut_at + chunks_during_outage {
            proxy.restore();
        }
    }
    // Wait for the backlog to drain naturally (backoff is at most 30 s), then stop.
    let mut last = p.stats()[0].1;
    for _ in 0..1200 {
        last = p.stats()[0].1;
        if last.delivered >= u64::from(TOTAL) && last.pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = p.shutdown(Duration::from_secs(30)).await[0].1;
    assert!(stats.spooled > 0, "the outage should have used the spool: {stats:?}");
    assert!(stats.retried > 0, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(
        seqs(&table).await,
        (i64::from(TOTAL), i64::from(TOTAL), i64::from(TOTAL) - 1),
        "{last:?}"
    );
}

/// The child side of the SIGKILL test; does nothing unless the parent set its environment.
#[test]
fn spool_child_process_entry() {
    let Ok(mode) = std::env::var("APIARY_SPOOL_CHILD") else { return };
    let dir = std::env::var("APIARY_SPOOL_DIR").unwrap();
    let url = std::env::var("APIARY_SPOOL_PG").unwrap();
    let table = std::env::var("APIARY_SPOOL_TABLE").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let cfg = logger(&format!(
            "[[logger]]\ntype = \"postgres\"\nname = \"pg\"\nurl = \"{url}\"\ntable = \"{table}\"\nbatch = 1000\n"
        ));
        let p = start(&cfg, std::path::Path::new(&dir));
        let em = p.emitter();
        if mode == "produce" {
            // The target is down: everything goes to the disk spool. After each chunk, wait
            // until the spool has it and report how far is durable, until killed.
            let mut n = 0u32;
            loop {
                for i in n..n + 500 {
                    em.emit(event(i));
                }
                n += 500;
                loop {
                    let s = p.stats()[0].1;
                    if s.spooled + s.delivered >= u64::from(n) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                println!("durable {n}");
            }
        } else {
            loop {
                let s = p.stats()[0].1;
                if s.pending == 0 && s.delivered > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let s = p.shutdown(Duration::from_secs(10)).await[0].1;
            println!("drained {}", s.delivered);
        }
    });
}

#[tokio::test]
async fn sigkilled_producer_loses_nothing_from_the_spool() {
    if !service(PG, "PostgreSQL").await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let table = format!("kill_{}", unique());
    let exe = std::env::current_exe().unwrap();
    let child = |mode: &str, url: &str| {
        let mut c = tokio::process::Command::new(&exe);
        c.args(["--exact", "fault::spool_child_process_entry", "--nocapture", "--test-threads=1"])
            .env("APIARY_SPOOL_CHILD", mode)
            .env("APIARY_SPOOL_DIR", dir.path())
            .env("APIARY_SPOOL_PG", url)
            .env("APIARY_SPOOL_TABLE", &table)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        c.spawn().unwrap()
    };
    // First run: PostgreSQL unreachable (nothing listens on port 1), killed mid-stream.
    let mut producer = child("produce", "postgres://postgres@127.0.0.1:1/test");
    let mut lines = tokio::io::BufReader::new(producer.stdout.take().unwrap()).lines();
    let mut durable = 0u32;
    while let Some(line) =
        tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap()
    {
        // libtest may print the test name on the same line first.
        if let Some(n) = line.split("durable ").nth(1) {
            durable = n.parse().unwrap();
            if durable >= 20_000 {
                break;
            }
        }
    }
    producer.start_kill().unwrap(); // SIGKILL
    producer.wait().await.unwrap();
    assert!(durable >= 20_000);
    // Second run: PostgreSQL reachable; the spool replays.
    let mut drainer = child("drain", "postgres://postgres@127.0.0.1:5432/test");
    let mut lines = tokio::io::BufReader::new(drainer.stdout.take().unwrap()).lines();
    let mut drained = None;
    while let Some(line) =
        tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await.unwrap().unwrap()
    {
        if let Some(n) = line.split("drained ").nth(1) {
            drained = Some(n.parse::<u64>().unwrap());
            break;
        }
    }
    drainer.wait().await.unwrap();
    assert!(drained.is_some());
    let (rows, distinct, max) = seqs(&table).await;
    // Everything reported durable before the kill arrived, exactly once; events the child
    // spooled after its last report may be there too.
    assert!(rows >= i64::from(durable), "{rows} < {durable}");
    assert_eq!(rows, distinct);
    assert_eq!(max + 1, rows, "a gap: {rows} rows up to seq {max}");
}
