//! Limits, timeouts and shutdown of the runtime.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use apiary_event::{Kind, Transport};
use apiary_pot::{Limits, Pot, PotConfig, PotStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{service, start};

#[tokio::test]
async fn connection_over_the_per_ip_cap_is_refused_and_counted() {
    let limits = Limits { max_connections_per_ip: 2, ..Limits::default() };
    let pot = start(&[service("Echo", "echo", &["tcp:0"])], limits, "127.0.0.1");
    let addr = pot.handle.addr("Echo", Transport::Tcp).unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        held.push(s);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    // The refused connection is closed before any byte is served.
    let n = third.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0);
    pot.wait_for(&Kind::SESSION_REFUSED, 1).await;
    assert_eq!(PotStats::get(&pot.handle.stats().refused), 1);
    assert_eq!(PotStats::get(&pot.handle.stats().accepted), 2);
    drop(held);
    pot.wait_for(&Kind::SESSION_CLOSE, 2).await;
    // Slots are released: a new connection works again.
    let mut again = TcpStream::connect(addr).await.unwrap();
    again.write_all(b"y").await.unwrap();
    again.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"y");
    let events = pot.finish().await;
    let refused = events.iter().find(|e| e.kind == Kind::SESSION_REFUSED).unwrap();
    assert_eq!(refused.message.as_deref(), Some("max_connections_per_ip"));
}

#[tokio::test]
async fn new_connection_rate_is_limited_per_source() {
    let limits =
        Limits { new_connections_per_sec: 0.5, new_connections_burst: 3.0, ..Limits::default() };
    let pot = start(&[service("Random", "random", &["tcp:0"])], limits, "127.0.0.1");
    let addr = pot.handle.addr("Random", Transport::Tcp).unwrap();
    let mut served = 0;
    for _ in 0..6 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap_or(0);
        if got.len() == 100 {
            served += 1;
        }
    }
    assert_eq!(served, 3);
    let stats = pot.handle.stats();
    assert_eq!(stats.refused.load(Relaxed), 3);
    pot.finish().await;
}

#[tokio::test]
async fn idle_session_is_closed_after_its_timeout() {
    let limits = Limits { idle_timeout: Duration::from_millis(200), ..Limits::default() };
    let pot = start(&[service("Echo", "echo", &["tcp:0"])], limits, "127.0.0.1");
    let mut s = TcpStream::connect(pot.handle.addr("Echo", Transport::Tcp).unwrap()).await.unwrap();
    let mut buf = [0u8; 8];
    // The server closes the idle connection: the client reads EOF.
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(n, 0);
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let close = events.iter().find(|e| e.kind == Kind::SESSION_CLOSE).unwrap();
    assert_eq!(close.close.as_ref().unwrap().reason, "idle");
}

#[tokio::test]
async fn recorded_payload_is_capped_per_session_but_lengths_and_hashes_are_whole() {
    let limits = Limits { max_recorded_bytes: 10, ..Limits::default() };
    let pot = start(&[service("Echo", "echo", &["tcp:0"])], limits, "127.0.0.1");
    let mut s = TcpStream::connect(pot.handle.addr("Echo", Transport::Tcp).unwrap()).await.unwrap();
    s.write_all(b"0123456789abcdef").await.unwrap();
    let mut buf = [0u8; 16];
    s.read_exact(&mut buf).await.unwrap();
    drop(s);
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let rx = events.iter().find(|e| e.kind == Kind::SESSION_RX).unwrap().payload.clone().unwrap();
    assert_eq!(&rx.data[..], b"0123456789");
    assert_eq!(rx.len, 16);
    assert!(rx.truncated());
}

#[tokio::test]
async fn udp_answers_stop_for_a_source_over_its_reply_rate() {
    let limits = Limits { udp_replies_per_sec: 0.1, udp_replies_burst: 5.0, ..Limits::default() };
    let pot = start(&[service("Echo.udp", "echo", &["udp:0"])], limits, "127.0.0.1");
    let addr = pot.handle.addr("Echo.udp", Transport::Udp).unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..50u8 {
        c.send_to(&[i; 32], addr).await.unwrap();
    }
    let mut answers = 0;
    let mut buf = [0u8; 64];
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), c.recv(&mut buf)).await {
        answers += 1;
    }
    assert_eq!(answers, 5);
    pot.wait_for(&Kind::SESSION_RX, 50).await;
    assert_eq!(pot.handle.stats().udp_suppressed.load(Relaxed), 45);
    pot.finish().await;
}

#[tokio::test]
async fn udp_peer_table_is_bounded_and_evicts_the_oldest() {
    let limits = Limits { udp_peers: 2, ..Limits::default() };
    let pot = start(&[service("Echo.udp", "echo", &["udp:0"])], limits, "127.0.0.1");
    let addr = pot.handle.addr("Echo.udp", Transport::Udp).unwrap();
    let mut buf = [0u8; 8];
    for _ in 0..3 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"hi", addr).await.unwrap();
        c.recv(&mut buf).await.unwrap();
    }
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    assert_eq!(pot.handle.stats().udp_evicted.load(Relaxed), 1);
    let events = pot.finish().await;
    let reasons: Vec<_> =
        events.iter().filter_map(|e| e.close.as_ref().map(|c| c.reason.clone())).collect();
    assert_eq!(reasons, ["evicted", "shutdown", "shutdown"]);
}

#[tokio::test]
async fn shutdown_closes_open_sessions_with_a_close_event() {
    let pot = start(&[service("Echo", "echo", &["tcp:0"])], Limits::default(), "127.0.0.1");
    let _s = TcpStream::connect(pot.handle.addr("Echo", Transport::Tcp).unwrap()).await.unwrap();
    pot.wait_for(&Kind::SESSION_OPEN, 1).await;
    let events = pot.finish().await;
    let close = events.iter().find(|e| e.kind == Kind::SESSION_CLOSE).unwrap();
    assert_eq!(close.close.as_ref().unwrap().reason, "shutdown");
}

#[test]
fn bad_services_are_rejected_before_binding() {
    let config = PotConfig { bind: vec!["127.0.0.1".parse().unwrap()], ..PotConfig::default() };
    let emit = apiary_event::Collector::shared();
    let cases = [
        (vec![service("A", "echo", &["tcp:0"]), service("A", "motd", &["tcp:0"])], "duplicate"),
        (vec![service("A", "nosuch", &["tcp:0"])], "unknown plugin `nosuch`"),
        (vec![service("A", "random", &["udp:0"])], "does not serve udp"),
    ];
    for (services, want) in cases {
        let err = Pot::bind("n", &config, &services, emit.clone()).err().unwrap().to_string();
        assert!(err.contains(want), "{err}");
    }
    let mut opts = service("A", "echo", &["tcp:0"]);
    opts.options.insert("colour".into(), "red".into());
    let err = Pot::bind("n", &config, &[opts], emit.clone()).err().unwrap().to_string();
    assert!(err.contains("unknown key `colour`"), "{err}");
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = PotConfig { bind: vec!["127.0.0.1".parse().unwrap()], ..PotConfig::default() };
    let err = Pot::bind(
        "n",
        &config,
        &[service("Echo", "echo", &[&format!("tcp:{port}")])],
        apiary_event::Collector::shared(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("service `Echo`: cannot bind tcp/127.0.0.1:"), "{err}");
    assert!(err.contains("already listens"), "{err}");
}

#[tokio::test]
async fn the_largest_profiles_bind_over_a_thousand_listeners_at_once() {
    // common + tcp_malware + udp_malware, every port moved to an ephemeral one so the test
    // binds no fixed port: what is exercised is binding and serving that many listeners.
    let config = PotConfig {
        bind: vec!["127.0.0.1".parse().unwrap()],
        profiles: vec!["common".into(), "tcp_malware".into(), "udp_malware".into()],
        ..PotConfig::default()
    };
    let mut services = apiary_pot::resolve_services(&config, &[]).unwrap();
    for svc in &mut services {
        for port in &mut svc.ports {
            port.port = 0;
        }
    }
    let wanted: usize = services.iter().filter(|s| s.enabled).map(|s| s.ports.len()).sum();
    // 340 + 552 + 552, less the tcp_malware names and ports `common` already has.
    assert_eq!(wanted, 1_402);
    let config = PotConfig { profiles: Vec::new(), ..config };
    let events = apiary_event::Collector::shared();
    let pot = Pot::bind("n", &config, &services, events.clone()).unwrap();
    assert_eq!(pot.listeners().len(), wanted);
    let handle = pot.start().unwrap();
    let bittorrent: Vec<_> =
        handle.listeners().iter().filter(|l| l.service == "BitTorrent").map(|l| l.addr).collect();
    assert_eq!(bittorrent.len(), 119, "one service, all its ports");
    let mut s = TcpStream::connect(bittorrent[118]).await.unwrap();
    s.write_all(b"d1:ad2:id20:").await.unwrap();
    let mut got = [0u8; 12];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"d1:ad2:id20:");
    let udp = handle.addr("AdoreWorm.udp", Transport::Udp).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"ping", udp).await.unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"ping");
    drop(s);
    handle.shutdown(Duration::from_secs(5)).await;
    assert!(events.take().iter().any(|e| e.service.as_deref() == Some("AdoreWorm.udp")));
}
