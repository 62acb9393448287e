//! Benchmark target for `bench/services/run.sh`: serves one emulator (or a bare tokio server
//! that answers without parsing or logging) on 127.0.0.1 and prints its port; every event is
//! counted by an in-memory emitter so logging cost is included.
//!
//! Modes: `bare` (HTTP anchor), `udp-bare` (UDP anchor: each datagram sent back with the DNS
//! response bit set, no parsing or logging), or a plugin name or script path served by a pot
//! (`web`, `dns`, `hashcount`, `plugins/hashcount.lua`).
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use apiary_event::{Emit, Event, Transport};
use apiary_pot::{Limits, Pot, PotConfig, ServiceConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Count(AtomicU64);

impl Emit for Count {
    fn emit(&self, event: Event) {
        // Encode with the JSONL logger's own encoder, into a reused buffer as its batches are,
        // so the cost of logging is the product's (serde_json here cost 2.3 times as much).
        thread_local!(static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        let len = LINE.with_borrow_mut(|line| {
            line.clear();
            apiary_event::encode::json::write(&event, line);
            line.len()
        });
        self.0.fetch_add(len as u64, Relaxed);
    }
}

async fn bare() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", l.local_addr().unwrap().port());
    loop {
        let (mut s, _) = l.accept().await.unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            if s.read(&mut buf).await.unwrap_or(0) > 0 {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nOK!",
                    )
                    .await;
            }
        });
    }
}

async fn udp_bare() {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    println!("{}", s.local_addr().unwrap().port());
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, from)) = s.recv_from(&mut buf).await else { continue };
        if let Some(flags) = buf.get_mut(2) {
            *flags |= 0x80;
        }
        let _ = s.send_to(&buf[..n], from).await;
    }
}

#[tokio::main]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "web".into());
    if mode == "bare" {
        return bare().await;
    }
    if mode == "udp-bare" {
        return udp_bare().await;
    }
    let (plugin, port) = match mode.as_str() {
        "web" => ("web".to_owned(), "tcp:0"),
        "dns" => ("dns".to_owned(), "udp:0"),
        "hashcount" => ("hashcount".to_owned(), "tcp:0"),
        other => (other.to_owned(), "tcp:0"),
    };
    let limits = Limits {
        new_connections_per_sec: 1e9,
        new_connections_burst: 1e9,
        max_connections_per_ip: 100_000,
        max_connections: 100_000,
        udp_replies_per_sec: 1e9,
        udp_replies_burst: 1e9,
        ..Limits::default()
    };
    let config =
        PotConfig { bind: vec!["127.0.0.1".parse().unwrap()], limits, ..PotConfig::default() };
    let svc = ServiceConfig {
        name: "bench".into(),
        plugin,
        ports: vec![port.parse().unwrap()],
        bind: None,
        enabled: true,
        description: None,
        options: toml::Table::new(),
    };
    let emit = Arc::new(Count::default());
    let pot = Pot::bind("bench", &config, &[svc], emit.clone()).unwrap();
    let handle = pot.start().unwrap();
    let t = if port.starts_with("udp") { Transport::Udp } else { Transport::Tcp };
    println!("{}", handle.addr("bench", t).unwrap().port());
    std::future::pending::<()>().await;
}
