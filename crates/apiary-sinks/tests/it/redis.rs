//! Redis sink against the local server (127.0.0.1:6379).

use std::time::Duration;

use apiary_sinks::sinks::redis::{Reply, check_reply};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::*;

async fn ask(cmd: &str) -> Reply {
    let mut s = tokio::net::TcpStream::connect("127.0.0.1:6379").await.unwrap();
    s.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        if let Ok(n) = check_reply(&buf) {
            return Reply::parse(&buf[..n]).unwrap().0;
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn stream_and_list_receive_every_event_in_order() {
    if !service("127.0.0.1:6379", "Redis").await {
        return;
    }
    for mode in ["stream", "list"] {
        let key = format!("apiary:test:{}", unique());
        let cfg = logger(&format!(
            "[[logger]]\ntype = \"redis\"\nkey = \"{key}\"\nmode = \"{mode}\"\nbatch = 100\n"
        ));
        let dir = tempfile::tempdir().unwrap();
        let p = start(&cfg, dir.path());
        let em = p.emitter();
        for i in 0..1000 {
            em.emit(event(i));
        }
        let stats = p.shutdown(Duration::from_secs(10)).await;
        assert_eq!(stats[0].1.delivered, 1000);
        let docs: Vec<Vec<u8>> = if mode == "list" {
            let Reply::Array(Some(items)) = ask(&format!("LRANGE {key} 0 -1")).await else {
                panic!()
            };
            items
                .into_iter()
                .map(|r| if let Reply::Bulk(Some(b)) = r { b } else { panic!() })
                .collect()
        } else {
            let Reply::Array(Some(entries)) = ask(&format!("XRANGE {key} - +")).await else {
                panic!()
            };
            entries
                .into_iter()
                .map(|entry| {
                    let Reply::Array(Some(mut parts)) = entry else { panic!() };
                    let Reply::Array(Some(mut fields)) = parts.remove(1) else { panic!() };
                    let Reply::Bulk(Some(doc)) = fields.remove(1) else { panic!() };
                    doc
                })
                .collect()
        };
        assert_eq!(docs.len(), 1000, "{mode}");
        for (i, d) in docs.iter().enumerate() {
            assert_eq!(apiary_event::encode::from_json(d).unwrap().fields["seq"], i as u64);
        }
        ask(&format!("DEL {key}")).await;
    }
}
