//! Scale benchmark: many nodes connected and heartbeating; reports the Core process's RSS.
//!
//! The nodes run in a child process (this same binary, `APIARY_SCALE_ROLE=clients`) so the
//! measured RSS is the Core's alone and each side has its own descriptor limit.
//! `cargo bench -p apiary-core --bench scale` (env: `NODES` (10000), `TLS=1`, `HOLD_SECS`).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod common;

/// The `apiary` binary's allocator, so the Core here runs as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::Stdio;
use std::time::{Duration, Instant};

use apiary_core::{Core, CoreConfig, EnrollmentMode, NodeTransport};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if std::env::var("APIARY_SCALE_ROLE").as_deref() == Ok("clients") {
        rt.block_on(clients());
    } else {
        rt.block_on(core());
    }
}

async fn clients() {
    let nodes = env_num("NODES", 10_000);
    let addr: std::net::SocketAddr = std::env::var("CORE_ADDR").unwrap().parse().unwrap();
    let ca = std::env::var("CA_FILE").ok().map(std::path::PathBuf::from);
    let hb = Duration::from_secs(env_num("HEARTBEAT_SECS", 30));
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(1024);
    for n in 0..nodes {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let ca = ca.clone();
        let ready = ready_tx.clone();
        tokio::spawn(async move {
            let mut io = common::connect(addr, ca.as_deref()).await.expect("connect");
            io.write_all(common::registration(&format!("scale-{n}"), n + 1, "").as_bytes())
                .await
                .unwrap();
            let ack = common::read_line(&mut io).await.unwrap();
            assert!(String::from_utf8_lossy(&ack).contains("\"accepted\":true"));
            io.write_all(common::HEARTBEAT.as_bytes()).await.unwrap();
            drop(permit);
            let _ = ready.send(()).await;
            loop {
                tokio::time::sleep(hb).await;
                if io.write_all(common::HEARTBEAT.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..nodes {
        ready_rx.recv().await.unwrap();
    }
    println!("READY");
    // Stay up until the parent closes stdin.
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin()).read_line(&mut line).await;
}

async fn core() {
    let nodes = env_num("NODES", 10_000);
    let hold = env_num("HOLD_SECS", 35);
    let tls = std::env::var("TLS").as_deref() == Ok("1");
    let dir = tempfile::tempdir().unwrap();
    let cfg = CoreConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        transport: if tls { NodeTransport::Tls } else { NodeTransport::Plain },
        enrollment: EnrollmentMode::Open,
        ..CoreConfig::default()
    };
    let rss_start = status_kib("VmRSS:");
    let core = Core::start(cfg).await.unwrap();
    let rss_idle = status_kib("VmRSS:");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env("APIARY_SCALE_ROLE", "clients")
        .env("NODES", nodes.to_string())
        .env("CORE_ADDR", core.local_addr().to_string())
        .envs(core.tls_files().map(|f| ("CA_FILE", f.ca_cert.display().to_string())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(l) = out.next_line().await.unwrap() {
        if l == "READY" {
            break;
        }
    }
    let connect_secs = t.elapsed().as_secs_f64();
    // Hold through at least one heartbeat round (30 s) so steady state is measured.
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let online = core.connected_nodes().len();
    let running =
        core.store().list_nodes().await.unwrap().iter().filter(|n| n.status == "Running").count();
    let rss = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");
    println!(
        "scale transport={} nodes={nodes} connected={online} running={running} connect+register={connect_secs:.1}s core_rss_start={}MiB idle={}MiB with_nodes={}MiB peak={}MiB per_node={:.1}KiB",
        if tls { "tls" } else { "plain" },
        rss_start / 1024,
        rss_idle / 1024,
        rss / 1024,
        hwm / 1024,
        (rss.saturating_sub(rss_idle)) as f64 / nodes as f64
    );
    drop(child.stdin.take());
    let _ = child.wait().await;
    core.shutdown().await;
}
