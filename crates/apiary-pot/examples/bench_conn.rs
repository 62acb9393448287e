//! Connection-rate load generator for `bench/services/run.sh`: for `SECS` seconds, `CONNS`
//! clients each connect to `ADDR`, read the greeting line, send one chunk, read the one-line
//! answer and close (a HashCountRandom exchange), then start over. Prints completed
//! connections per second. Usage: `bench_conn ADDR SECS CONNS`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn one(addr: &str) -> std::io::Result<()> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut s = BufReader::new(s);
    let mut line = Vec::new();
    if s.read_until(b'\n', &mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    s.get_mut().write_all(b"hello\n").await?;
    line.clear();
    if s.read_until(b'\n', &mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: Arc<str> = Arc::from(args.get(1).map_or("127.0.0.1:4096", String::as_str));
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let conns: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (addr, done, failed) = (Arc::clone(&addr), Arc::clone(&done), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                match one(&addr).await {
                    Ok(()) => done.fetch_add(1, Relaxed),
                    Err(_) => failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Relaxed);
    println!(
        "{:.0} conn/s ({n} in {secs} s, {} failed)",
        n as f64 / secs as f64,
        failed.load(Relaxed)
    );
}
