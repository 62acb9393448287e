//! Live-stream benchmark: the dashboard's live page in headless Chromium while a node streams
//! 10,000 events/s into the Core.
//!
//! `cargo bench -p apiary-core --bench dashboard_live` (env: `RATE`, default 10,000 events/s;
//! `DURATION`, default 40 s). Starts a Core (SQLite, plain TCP for the node) with the API, opens
//! the live page with `bench/dashboard/live.mjs` (needs node, Debian's chromium and
//! `npm ci` in `crates/apiary-core/tests/browser`), connects one node and sends `RATE` events
//! per second in 10 ms slices, each stamped with its send time. The page reports each second
//! what it exposes in `window.__apiaryLive`: events received, events skipped because the tab
//! fell behind the Core's broadcast buffer (`lagged`), the age of the newest event drawn
//! (`lagMs`), animation frames, and long main-thread tasks. Anchor: the events the Core
//! stored in the same run (what the tab would have to show).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../crates/apiary-core/benches/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use apiary_core::http::{self, HttpConfig, Role};
use apiary_core::{Core, CoreConfig, EnrollKind, NodeTransport};
use apiary_event::Timestamp;
use apiary_proto::TotpSecret;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn event_line(i: u64) -> String {
    format!(
        "{{\"version\":2,\"message\":{{\"PotEvent\":{{\"node_id\":1,\"pot_id\":\"web-01\",\"pot_type\":\"cowrie\",\"event_type\":\"cowrie.login.failed\",\"timestamp\":\"{}\",\"data\":{{\"username\":\"root\",\"password\":\"pw{i}\",\"src_ip\":\"198.51.{}.{}\",\"src_port\":{},\"dst_port\":22,\"session\":\"s{}\"}}}}}}}}\n",
        Timestamp::now(),
        (i / 250) % 250,
        i % 250,
        1024 + i % 60000,
        i / 4
    )
}

#[derive(Debug, serde::Deserialize)]
struct Sample {
    t: i64,
    received: u64,
    lagged: u64,
    lag_ms: u64,
    frames: u64,
    queue: u64,
    rows: u64,
    long: Long,
}

#[derive(Debug, serde::Deserialize)]
struct Long {
    count: u64,
    ms: f64,
    max: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = env_num("RATE", 10_000);
    let seconds = env_num("DURATION", 40);
    let dir = tempfile::tempdir().unwrap();
    let core = Core::start(CoreConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        transport: NodeTransport::Plain,
        ..CoreConfig::default()
    })
    .await
    .unwrap();
    let api = http::start(
        &core,
        HttpConfig { listen: "127.0.0.1:0".parse().unwrap(), ..HttpConfig::default() },
    )
    .await
    .unwrap();
    let token = api.db().create_token("bench", Role::Admin, false).await.unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/dashboard/live.mjs");
    let mut browser = tokio::process::Command::new("node")
        .arg(script)
        .env("APIARY_URL", api.base_url())
        .env("APIARY_TOKEN", &token)
        .env("SAMPLE_SECONDS", (seconds + 8).to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node (and npm ci in crates/apiary-core/tests/browser) is needed");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    loop {
        match lines.next_line().await.unwrap() {
            Some(l) if l == "ready" => break,
            Some(l) => println!("browser: {l}"),
            None => panic!("the browser script ended before the live page connected"),
        }
    }

    let e = core.add_node("live-bench", EnrollKind::Totp).await.unwrap();
    let secret = TotpSecret::from_base32(&e.totp_secret.unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut io = common::connect(core.local_addr(), None).await.unwrap();
    io.write_all(common::registration("live-bench", 1000, &secret.code_at(now)).as_bytes())
        .await
        .unwrap();
    let ack = common::read_line(&mut io).await.unwrap();
    assert!(String::from_utf8_lossy(&ack).contains("\"accepted\":true"));
    io.write_all(common::HEARTBEAT.as_bytes()).await.unwrap();

    // Paced: every 10 ms the events due by then, so the rate holds even if a slice runs late.
    let stored_before = core.stats().events_stored;
    let total = rate * seconds;
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0u64;
    let mut buf = Vec::with_capacity(256 * 1024);
    while sent < total {
        tick.tick().await;
        let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            buf.extend_from_slice(event_line(sent).as_bytes());
            sent += 1;
        }
        io.write_all(&buf).await.unwrap();
        buf.clear();
    }
    io.flush().await.unwrap();
    let send_secs = t0.elapsed().as_secs_f64();
    println!("sent {sent} events in {send_secs:.1} s ({:.0}/s)", sent as f64 / send_secs);

    let mut samples: Vec<Sample> = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        if l == "done" {
            break;
        }
        match serde_json::from_str::<Sample>(&l) {
            Ok(s) => samples.push(s),
            Err(_) => println!("browser: {l}"),
        }
    }
    let _ = browser.wait().await;
    let stored = core.stats().events_stored - stored_before;
    let last = samples.last().expect("no samples from the browser");
    // The Core stores the node's first heartbeat as an event too.
    println!("core stored {stored} events (sent {sent} + heartbeat)");
    println!(
        "tab received {} events, skipped {} (lagged), {} rows shown",
        last.received, last.lagged, last.rows
    );
    // Seconds with traffic: lag of the newest drawn event, frames and events per second.
    let busy: Vec<(&Sample, &Sample)> = samples
        .windows(2)
        .map(|w| (&w[0], &w[1]))
        .filter(|(a, b)| b.received > a.received)
        .collect();
    let mut lags: Vec<u64> = busy.iter().map(|(_, b)| b.lag_ms).collect();
    lags.sort_unstable();
    let pct = |q: f64| lags.get(((lags.len() as f64 - 1.0) * q).round() as usize).copied();
    let fps: Vec<f64> = busy
        .iter()
        .map(|(a, b)| (b.frames - a.frames) as f64 * 1000.0 / (b.t - a.t).max(1) as f64)
        .collect();
    let rates: Vec<u64> = busy.iter().map(|(a, b)| b.received - a.received).collect();
    println!(
        "busy seconds {}: lag of newest drawn event median {:?} ms p95 {:?} ms max {:?} ms; \
         frames/s min {:.0} mean {:.0}; events/s received min {} max {}; queue at sample max {}",
        busy.len(),
        pct(0.5),
        pct(0.95),
        lags.last(),
        fps.iter().cloned().fold(f64::INFINITY, f64::min),
        fps.iter().sum::<f64>() / fps.len().max(1) as f64,
        rates.iter().min().unwrap_or(&0),
        rates.iter().max().unwrap_or(&0),
        samples.iter().map(|s| s.queue).max().unwrap_or(0),
    );
    println!(
        "long tasks (> 50 ms) during the run: {} totalling {:.0} ms, longest {:.0} ms",
        last.long.count, last.long.ms, last.long.max
    );
    let ok = last.lagged == 0 && last.received + 1 >= stored.min(sent);
    println!("kept up: {ok}");
    drop(io);
    api.shutdown().await;
    core.shutdown().await;
}
