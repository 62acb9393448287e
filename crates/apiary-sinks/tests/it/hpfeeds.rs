//! hpfeeds sink against the real broker from PyPI (`hpfeeds-broker`, package `hpfeeds[broker]`).

use std::process::Stdio;
use std::time::Duration;

use apiary_sinks::sinks::hpfeeds::frame::{self, Frame};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Frame {
    loop {
        if let Ok((f, n)) = Frame::parse(buf) {
            buf.drain(..n);
            return f;
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "broker closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn publishes_to_the_real_broker_and_a_subscriber_receives() {
    let broker = std::process::Command::new("hpfeeds-broker").arg("--help").output();
    if broker.is_err() {
        if std::env::var("APIARY_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("hpfeeds-broker (pip install 'hpfeeds[broker]') is not installed");
        }
        eprintln!("note: hpfeeds-broker not installed; test skipped");
        return;
    }
    let port = free_port();
    let mut child = tokio::process::Command::new("hpfeeds-broker")
        .args(["--bind", &format!("127.0.0.1:{port}"), "--auth", "env", "--exporter", ""])
        .env("HPFEEDS_APIARY_SECRET", "s3cret")
        .env("HPFEEDS_APIARY_PUBCHANS", "apiary.events")
        .env("HPFEEDS_READER_SECRET", "r3ad")
        .env("HPFEEDS_READER_SUBCHANS", "apiary.events")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut sub = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
            sub = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sub = sub.expect("broker did not start");
    let mut buf = Vec::new();
    let Frame::Info { nonce, .. } = read_frame(&mut sub, &mut buf).await else { panic!() };
    let mut out = Vec::new();
    frame::auth(&mut out, "reader", &frame::proof(&nonce, "r3ad"));
    frame::subscribe(&mut out, "reader", "apiary.events");
    sub.write_all(&out).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cfg = logger(&format!(
        "[[logger]]\ntype = \"hpfeeds\"\nserver = \"127.0.0.1\"\nport = {port}\nident = \"apiary\"\nsecret = \"s3cret\"\nchannel = \"apiary.events\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = start(&cfg, dir.path());
    let em = p.emitter();
    for i in 0..200 {
        em.emit(event(i));
    }
    let stats = p.shutdown(Duration::from_secs(20)).await;
    assert_eq!(stats[0].1.delivered, 200, "{:?}", stats[0].1);
    for i in 0..200u64 {
        let f = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut sub, &mut buf))
            .await
            .unwrap();
        let Frame::Publish { ident, channel, payload } = f else { panic!("{f:?}") };
        assert_eq!((ident.as_str(), channel.as_str()), ("apiary", "apiary.events"));
        assert_eq!(apiary_event::encode::from_json(&payload).unwrap().fields["seq"], i);
    }

    // A wrong secret is refused by the broker: the test reports the failure.
    let bad = logger(&format!(
        "[[logger]]\ntype = \"hpfeeds\"\nport = {port}\nident = \"apiary\"\nsecret = \"wrong\"\nchannel = \"apiary.events\"\n"
    ));
    let report =
        apiary_sinks::test_sinks(&[bad], &[], dir.path(), "n", Duration::from_secs(5)).await;
    assert!(report[0].result.is_err(), "{report:?}");
    child.kill().await.unwrap();
}
