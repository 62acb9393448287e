//! Logstash TCP JSON lines against a local reader that plays Logstash's `json_lines` input.

use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;
use tokio::net::TcpListener;

use crate::common::*;

#[tokio::test]
async fn sends_newline_terminated_json_and_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        // The first connection is cut after 10 lines to force a reconnect.
        for conn_no in 0..2 {
            let (sock, _) = listener.accept().await.unwrap();
            let mut lines = tokio::io::BufReader::new(sock).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let e = apiary_event::encode::from_json(line.as_bytes()).unwrap();
                seen.push(e.fields["seq"].as_u64().unwrap());
                if conn_no == 0 && seen.len() == 10 {
                    break;
                }
                if seen.len() >= 10 && *seen.last().unwrap() == 99 {
                    return seen;
                }
            }
        }
        seen
    });
    let cfg = logger(&format!(
        "[[logger]]\ntype = \"logstash\"\nhost = \"127.0.0.1\"\nport = {port}\nbatch = 10\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = start(&cfg, dir.path());
    let em = p.emitter();
    for i in 0..10 {
        em.emit(event(i));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 10..100 {
        em.emit(event(i));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    p.shutdown(Duration::from_secs(20)).await;
    let seen = tokio::time::timeout(Duration::from_secs(20), reader).await.unwrap().unwrap();
    // At-least-once over plain TCP: a write into a dead socket may be repeated, but every
    // event arrives and the last arrives last.
    for i in 0..100 {
        assert!(seen.contains(&i), "missing {i}");
    }
    assert_eq!(*seen.last().unwrap(), 99);
}
