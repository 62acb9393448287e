//! UDP safety: a source over its reply rate gets nothing from any UDP service, so none of them
//! can be used to reflect or amplify traffic towards a spoofed address.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use apiary_event::Transport;
use apiary_pot::Limits;
use tokio::net::UdpSocket;

use crate::support::{service, start};

fn dns_any() -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(b"\x07example\x03com\x00\x00\xff\x00\x01");
    m
}

fn ntp_client() -> Vec<u8> {
    let mut m = vec![0u8; 48];
    m[0] = 0x1b;
    m
}

const SIP_OPTIONS: &[u8] = b"OPTIONS sip:1@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:1@x>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n\r\n";

/// Sends `count` copies of `request` and counts every datagram that comes back, from any port.
async fn answers(plugin: &str, request: &[u8], count: usize) -> (usize, u64, usize) {
    let limits = Limits { udp_replies_per_sec: 0.01, udp_replies_burst: 3.0, ..Limits::default() };
    let pot = start(&[service("U", plugin, &["udp:0"])], limits, "127.0.0.1");
    let addr = pot.handle.addr("U", Transport::Udp).unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..count {
        c.send_to(request, addr).await.unwrap();
    }
    let mut got = 0;
    let mut biggest = 0;
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), c.recv(&mut buf)).await {
        got += 1;
        biggest = biggest.max(n);
    }
    let suppressed = pot.handle.stats().udp_suppressed.load(Relaxed);
    pot.finish().await;
    (got, suppressed, biggest)
}

#[tokio::test]
async fn every_udp_service_goes_silent_for_a_source_over_its_reply_rate() {
    let cases: [(&str, Vec<u8>); 6] = [
        ("echo", b"0123456789".to_vec()),
        ("motd", b"x".to_vec()),
        ("dns", dns_any()),
        ("ntp", ntp_client()),
        ("sip", SIP_OPTIONS.to_vec()),
        ("tftp", b"\x00\x01file.bin\x00octet\x00".to_vec()),
    ];
    for (plugin, request) in cases {
        let (got, suppressed, biggest) = answers(plugin, &request, 15).await;
        assert_eq!(got, 3, "{plugin}: only the burst is answered");
        assert_eq!(suppressed, 12, "{plugin}: the rest is counted as suppressed");
        // What the burst allowance permits: replies bigger than the request exist (DNS, SIP,
        // TFTP), which is exactly why they are rate limited.
        assert!(biggest <= 516, "{plugin}: reply of {biggest} bytes");
    }
}

#[tokio::test]
async fn services_that_never_amplify_answer_no_more_than_they_receive() {
    // NTP answers 48 bytes to a 48-byte request and nothing to mode 7; DNS answers ANY with one
    // record, so its reply stays within a few dozen bytes of the query.
    let (got, _, biggest) = answers("ntp", &ntp_client(), 1).await;
    assert_eq!((got, biggest), (1, 48));
    let (got, _, _) = answers("ntp", &[0x17, 0x00, 0x03, 0x2a, 0, 0, 0, 0], 3).await;
    assert_eq!(got, 0, "monlist is never answered");
    let q = dns_any();
    let (got, _, biggest) = answers("dns", &q, 1).await;
    assert_eq!(got, 1);
    assert!(biggest <= q.len() + 24, "{biggest} for a {}-byte ANY query", q.len());
}
