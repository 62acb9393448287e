//! Issue 1 benchmarks, run with `cargo bench -p apiary --bench pot`:
//! (1) new TCP connections per second to a banner service with every connection logged to
//! JSONL, against a bare tokio accept-write-close server measured in the same run, and with
//! the JSONL logger plus one dead logger; (2) RSS per idle open session at 10,000 sessions.
//! Figures go to BENCHMARKS.md; the machine is noisy, so rounds alternate and ratios matter.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apiary_pot::{Limits, Pot, PotConfig, ServiceConfig};
use apiary_sinks::{Pipeline, SinkConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BANNER: &[u8] = b"Prototype unit 0001 is ready to accept programming\r\n";

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

/// Accept, write the banner, close: the fastest a banner honeypot could be.
async fn bare_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let _ = s.write_all(BANNER).await;
            });
        }
    });
    addr
}

fn limits() -> Limits {
    Limits {
        max_connections: 100_000,
        max_connections_per_ip: 100_000,
        new_connections_per_sec: 0.0,
        ..Limits::default()
    }
}

/// A pot with one MOTD service whose events go to the given loggers.
fn apiary_server(loggers: &[SinkConfig], dir: &std::path::Path) -> (SocketAddr, Pipeline) {
    let specs = loggers.iter().map(|l| l.build(&[], dir).unwrap()).collect();
    let pipeline = Pipeline::start(specs);
    let config = PotConfig {
        bind: vec!["127.0.0.1".parse().unwrap()],
        limits: limits(),
        ..PotConfig::default()
    };
    let svc = ServiceConfig {
        name: "MOTD".into(),
        plugin: "motd".into(),
        ports: vec!["tcp:0".parse().unwrap()],
        bind: None,
        enabled: true,
        description: None,
        options: toml::Table::new(),
    };
    let pot = Pot::bind("bench", &config, &[svc], Arc::new(pipeline.emitter())).unwrap();
    let handle = pot.start().unwrap();
    let addr = handle.listeners()[0].addr;
    std::mem::forget(handle);
    (addr, pipeline)
}

/// Connections per second: `workers` clients each connect, read to EOF, repeat.
async fn rate(addr: SocketAddr, workers: usize, time: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 128];
            while start.elapsed() < time {
                let Ok(mut s) = TcpStream::connect(addr).await else { continue };
                // Closing with RST avoids filling the port range with TIME_WAIT sockets.
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                let mut got = 0;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                if got == BANNER.len() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn jsonl(dir: &std::path::Path) -> SinkConfig {
    toml::from_str(&format!("type = \"jsonl\"\npath = \"{}/events.jsonl\"", dir.display())).unwrap()
}

/// A logger whose target is down: Logstash TCP to a port nothing listens on.
fn dead() -> SinkConfig {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    toml::from_str(&format!(
        "type = \"logstash\"\nname = \"dead\"\nhost = \"127.0.0.1\"\nport = {port}"
    ))
    .unwrap()
}

async fn connection_rate() {
    let time = env_secs("BENCH_SECS", 3);
    let rounds = 3;
    let workers = 32;
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_server().await;
    let (logged, _p1) = apiary_server(&[jsonl(dir.path())], &dir.path().join("a"));
    let dead_dir = dir.path().join("b");
    let (with_dead, _p2) = apiary_server(&[jsonl(&dead_dir), dead()], &dead_dir);
    let (mut b, mut a, mut d) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        b.push(rate(bare, workers, time).await);
        a.push(rate(logged, workers, time).await);
        d.push(rate(with_dead, workers, time).await);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, a, d) = (med(&mut b), med(&mut a), med(&mut d));
    let lines = std::fs::read_to_string(dir.path().join("events.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    println!(
        "connection rate ({workers} clients, {rounds} alternating rounds of {time:?}, medians):"
    );
    println!("  bare tokio accept-write-close      {b:>9.0} conn/s");
    println!("  apiary MOTD, JSONL logged          {a:>9.0} conn/s   ratio to bare {:.2}", a / b);
    println!("  apiary MOTD, JSONL + a dead logger {d:>9.0} conn/s   ratio to all-up {:.2}", d / a);
    println!("  (events written to JSONL in the logged runs: {lines})");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Starts the release binary with one echo service and opens `n` idle sessions to it.
async fn memory_per_session() {
    let n: usize =
        std::env::var("BENCH_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    raise_nofile(n as u64 * 2 + 1024);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "node = \"bench\"\ndata_dir = \"{}\"\n[pot]\nbind = [\"127.0.0.1\"]\n\
         [pot.limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n\
         new_connections_per_sec = 0\nidle_timeout = \"1h\"\nread_timeout = \"1h\"\n\
         [[service]]\nname = \"Echo\"\nplugin = \"echo\"\nports = [\"tcp:{port}\"]\n\
         [[logger]]\ntype = \"jsonl\"\n",
        dir.path().display()
    );
    let cfg = dir.path().join("apiary.toml");
    std::fs::write(&cfg, config).unwrap();
    let exe = std::env::var("APIARY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_apiary").into());
    let mut child = std::process::Command::new(exe)
        .args(["pot", "run", "-c"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while TcpStream::connect(addr).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(child.id());
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // One byte each way so every session has really been served, then it idles.
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        conns.push(s);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(child.id());
    println!("memory: {n} idle echo sessions: RSS {before} KiB -> {after} KiB");
    println!(
        "  per session: {:.1} KiB (goal <= 16 KiB)",
        (after.saturating_sub(before)) as f64 / n as f64
    );
    drop(conns);
    let _ = child.kill();
    let _ = child.wait();
}

fn raise_nofile(n: u64) {
    let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
    // SAFETY: setrlimit with a valid struct; failure only means fewer sockets.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        raise_nofile(65_536);
        connection_rate().await;
        memory_per_session().await;
    });
}
