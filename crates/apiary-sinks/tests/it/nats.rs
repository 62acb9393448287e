//! NATS and JetStream sinks against the local server (127.0.0.1:4222).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;

use crate::common::*;

#[tokio::test]
async fn core_nats_publishes_every_event_in_order() {
    if !service("127.0.0.1:4222", "NATS").await {
        return;
    }
    let subject = format!("apiary.test.{}", unique());
    let client = async_nats::connect("127.0.0.1:4222").await.unwrap();
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let cfg = logger(&format!("[[logger]]\ntype = \"nats\"\nsubject = \"{subject}\"\n"));
    let dir = tempfile::tempdir().unwrap();
    let p = start(&cfg, dir.path());
    let em = p.emitter();
    for i in 0..1000 {
        em.emit(event(i));
    }
    p.shutdown(Duration::from_secs(10)).await;
    for i in 0..1000u32 {
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
        let e = apiary_event::encode::from_json(&msg.payload).unwrap();
        assert_eq!(e.fields["seq"], i);
    }
}

#[tokio::test]
async fn jetstream_dedupes_a_retried_batch_by_event_id() {
    if !service("127.0.0.1:4222", "NATS").await {
        return;
    }
    let u = unique();
    let subject = format!("apiary.js.{u}");
    let stream = format!("APIARY_{u}");
    let cfg = logger(&format!(
        "[[logger]]\ntype = \"nats\"\nsubject = \"{subject}\"\njetstream = true\nstream = \"{stream}\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut spec = cfg.build(&[], dir.path()).unwrap();
    let batch: Vec<_> = (0..300).map(|i| Arc::new(event(i))).collect();
    spec.sink.send(&batch).await.unwrap();
    spec.sink.send(&batch).await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await.unwrap());
    let mut s = js.get_stream(&stream).await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 300);
    js.delete_stream(&stream).await.unwrap();
}
