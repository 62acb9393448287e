//! Issue 1 benchmarks, run with `cargo bench -p apiary --bench pot`:
//! (1) new TCP connections per second to a banner service with every connection logged to
//! JSONL, against a bare tokio accept-write-close server measured in the same run, and with
//! JSONL plus a Logstash logger that is up, against the same with that logger down
//! (`BENCH_ROUNDS` interleaved rounds of `BENCH_MS` each, per-round ratios with a confidence
//! interval of their median); (2) RSS per idle open session at `BENCH_SESSIONS` sessions.
//! Figures go to BENCHMARKS.md; the machine is noisy, so rounds interleave and ratios matter.
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
    logstash("dead", port)
}

fn logstash(name: &str, port: u16) -> SinkConfig {
    toml::from_str(&format!(
        "type = \"logstash\"\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}"
    ))
    .unwrap()
}

/// A healthy Logstash: a TCP reader that drains what it gets on its own OS thread, off the
/// runtime the pots and clients share.
fn live() -> SinkConfig {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            });
        }
    });
    logstash("live", port)
}

/// Ranks (1-based) of a distribution-free confidence interval of at least 95 % for the median
/// of `n` samples: the largest `k` with P(Binomial(n, 1/2) < k) <= 2.5 %, and `n + 1 - k`.
fn median_ci_ranks(n: usize) -> Option<(usize, usize)> {
    let mut below = 0.0f64; // P(X < k)
    let mut k = 0;
    let mut c = 1.0f64; // C(n, i)
    for i in 0..=n {
        let p = c / 2f64.powi(n as i32);
        if below + p > 0.025 {
            break;
        }
        below += p;
        k = i + 1;
        c = c * (n - i) as f64 / (i + 1) as f64;
    }
    (k >= 1).then_some((k, n + 1 - k))
}

/// Per-round ratios: min, quartiles, median, max, and the median's 95 % interval.
fn summary(name: &str, mut r: Vec<f64>) {
    r.sort_by(f64::total_cmp);
    let n = r.len();
    let q = |f: f64| r[((n - 1) as f64 * f).round() as usize];
    let ci = median_ci_ranks(n)
        .map(|(lo, hi)| format!("[{:.3}, {:.3}]", r[lo - 1], r[hi - 1]))
        .unwrap_or_else(|| "(too few rounds)".into());
    println!(
        "  {name:<28} median {:.3}  95% CI of the median {ci}  min {:.3}  q1 {:.3}  q3 {:.3}  max {:.3}  ({n} rounds)",
        q(0.5),
        r[0],
        q(0.25),
        q(0.75),
        r[n - 1],
    );
}

/// Connection rate of the logged pot with one logger down against all up, in interleaved
/// rounds. Each round measures every server once, in an order that rotates from round to
/// round, so load that drifts during the run falls on all of them alike; the verdict uses
/// the per-round ratios, each from two measurements seconds apart.
async fn connection_rate() {
    let time = Duration::from_millis(
        std::env::var("BENCH_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
    );
    let rounds: usize =
        std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let workers = 32;
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_server().await;
    let j_dir = dir.path().join("j");
    let (jsonl_only, _p1) = apiary_server(&[jsonl(&j_dir)], &j_dir);
    let u_dir = dir.path().join("u");
    let (all_up, _p2) = apiary_server(&[jsonl(&u_dir), live()], &u_dir);
    let d_dir = dir.path().join("d");
    let (with_dead, p3) = apiary_server(&[jsonl(&d_dir), dead()], &d_dir);
    let servers = [bare, jsonl_only, all_up, with_dead];
    // Warm-up: the first seconds (page cache, spool files, allocator) belong to no round.
    for &s in &servers {
        rate(s, workers, Duration::from_millis(500)).await;
    }
    let mut rates = vec![Vec::new(); servers.len()];
    for round in 0..rounds {
        for k in 0..servers.len() {
            let i = (round + k) % servers.len();
            rates[i].push(rate(servers[i], workers, time).await);
        }
    }
    let ratio = |x: usize, y: usize| -> Vec<f64> {
        rates[x].iter().zip(&rates[y]).map(|(a, b)| a / b).collect()
    };
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "connection rate ({workers} clients, {rounds} interleaved rounds of {time:?}, medians; load average {})",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    println!("  bare tokio accept-write-close            {:>9.0} conn/s", med(&rates[0]));
    println!("  apiary MOTD, JSONL                       {:>9.0} conn/s", med(&rates[1]));
    println!("  apiary MOTD, JSONL + live Logstash       {:>9.0} conn/s", med(&rates[2]));
    println!("  apiary MOTD, JSONL + dead Logstash       {:>9.0} conn/s", med(&rates[3]));
    println!("per-round ratios:");
    summary("JSONL / bare", ratio(1, 0));
    summary("dead / all up (goal >= 0.95)", ratio(3, 2));
    summary("dead / JSONL only", ratio(3, 1));
    let lines = |d: &std::path::Path| {
        std::fs::read_to_string(d.join("events.jsonl")).map(|t| t.lines().count()).unwrap_or(0)
    };
    println!(
        "  (JSONL lines written: {} / {} / {}; loggers of the dead-logger pot: {:?})",
        lines(&j_dir),
        lines(&u_dir),
        lines(&d_dir),
        p3.stats()
    );
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
    if n == 0 {
        return;
    }
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
