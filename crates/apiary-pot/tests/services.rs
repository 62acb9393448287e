//! The first services, byte for byte, over IPv4 and IPv6.

use apiary_event::{Kind, Transport};
use apiary_pot::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{kinds, payload, service, start};

#[tokio::test]
async fn echo_tcp_and_udp_over_ipv4_and_ipv6() {
    for bind in ["127.0.0.1", "::1"] {
        let pot = start(&[service("Echo", "echo", &["tcp:0", "udp:0"])], Limits::default(), bind);
        let tcp = pot.handle.addr("Echo", Transport::Tcp).unwrap();
        let mut s = TcpStream::connect(tcp).await.unwrap();
        s.write_all(b"hello\n").await.unwrap();
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello\n");
        drop(s);
        pot.wait_for(&Kind::SESSION_CLOSE, 1).await;

        let udp = pot.handle.addr("Echo", Transport::Udp).unwrap();
        let c = UdpSocket::bind((bind, 0)).await.unwrap();
        c.send_to(b"ping", udp).await.unwrap();
        c.send_to(b"pong", udp).await.unwrap();
        let mut buf = [0u8; 16];
        let n = c.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        let n = c.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong");

        let events = pot.finish().await;
        let tcp_events: Vec<_> =
            events.iter().filter(|e| e.transport == Some(Transport::Tcp)).collect();
        assert_eq!(
            tcp_events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["session.open", "session.rx", "session.tx", "session.close"]
        );
        let close = tcp_events[3].close.as_ref().unwrap();
        assert_eq!((close.bytes_in, close.bytes_out, close.reason.as_str()), (6, 6, "peer"));
        assert_eq!(tcp_events[1].src_ip.unwrap().to_string(), bind);
        // One UDP session for both datagrams, closed at shutdown. Datagrams that arrive
        // together are taken as one batch and answered together, so the two answers may
        // follow both queries; each kind keeps the order of the wire.
        let udp_events: Vec<_> =
            events.iter().filter(|e| e.transport == Some(Transport::Udp)).collect();
        let udp_kinds: Vec<_> = udp_events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(udp_kinds.len(), 6, "{udp_kinds:?}");
        assert_eq!((udp_kinds[0], udp_kinds[5]), ("session.open", "session.close"));
        let of = |kind: &Kind| -> Vec<&[u8]> {
            udp_events.iter().filter(|e| e.kind == *kind).map(|e| payload(e)).collect()
        };
        assert_eq!(of(&Kind::SESSION_RX), [b"ping", b"pong"]);
        assert_eq!(of(&Kind::SESSION_TX), [b"ping", b"pong"]);
        let first = |kind: &Kind| udp_events.iter().position(|e| e.kind == *kind).unwrap();
        assert!(first(&Kind::SESSION_RX) < first(&Kind::SESSION_TX), "{udp_kinds:?}");
        let sessions: std::collections::HashSet<_> = udp_events.iter().map(|e| e.session).collect();
        assert_eq!(sessions.len(), 1);
        assert_eq!(udp_events[5].close.as_ref().unwrap().reason, "shutdown");
    }
}

#[tokio::test]
async fn motd_tcp_closes_after_banner_and_udp_answers_each_datagram() {
    let pot =
        start(&[service("MOTD", "MOTD", &["tcp:0", "udp:0"])], Limits::default(), "127.0.0.1");
    let mut s = TcpStream::connect(pot.handle.addr("MOTD", Transport::Tcp).unwrap()).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"Prototype unit 0001 is ready to accept programming\r\n");

    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send_to(b"x", pot.handle.addr("MOTD", Transport::Udp).unwrap()).await.unwrap();
    let mut buf = [0u8; 128];
    let n = c.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"Prototype unit 0001 is ready to accept programming\r\n");
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let close = events.iter().find(|e| e.kind == Kind::SESSION_CLOSE).unwrap();
    assert_eq!(close.close.as_ref().unwrap().reason, "server");
}

#[tokio::test]
async fn random_sends_99_bytes_and_newline() {
    let pot = start(&[service("Random", "random", &["tcp:0"])], Limits::default(), "127.0.0.1");
    let mut s =
        TcpStream::connect(pot.handle.addr("Random", Transport::Tcp).unwrap()).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), 100);
    assert_eq!(got[99], b'\n');
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    assert_eq!(kinds(&events), ["session.open", "session.tx", "session.close"]);
    assert_eq!(payload(&events[1]), &got[..]);
}

#[tokio::test]
async fn hashcountrandom_greets_and_counts() {
    let pot = start(
        &[service("HashCountRandom", "HashCountRandom", &["tcp:0"])],
        Limits::default(),
        "127.0.0.1",
    );
    let addr = pot.handle.addr("HashCountRandom", Transport::Tcp).unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut greet = [0u8; 23];
    s.read_exact(&mut greet).await.unwrap();
    assert_eq!(&greet, b"ACCEPT_CONN: 127.0.0.1\n");
    for (i, md5) in
        [(1, "c4ca4238a0b923820dcc509a6f75849b"), (2, "c81e728d9d4c2f636f067f89cc14862c")]
    {
        s.write_all(format!("chunk {i}").as_bytes()).await.unwrap();
        let mut reply = [0u8; 133];
        s.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply[..33], format!("{md5}:").as_bytes());
        assert_eq!(reply[132], b'\n');
    }
    drop(s);
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    assert_eq!(
        kinds(&events),
        [
            "session.open",
            "session.tx",
            "session.rx",
            "session.tx",
            "session.rx",
            "session.tx",
            "session.close"
        ]
    );
    assert_eq!(payload(&events[2]), b"chunk 1");
}
