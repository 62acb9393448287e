//! AMQP sink against the local RabbitMQ (127.0.0.1:5672, guest/guest).

use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};

use crate::common::*;

#[tokio::test]
async fn publishes_with_confirms_into_a_bound_queue() {
    if !service("127.0.0.1:5672", "RabbitMQ").await {
        return;
    }
    let u = unique();
    let queue = format!("apiary-test-{u}");
    let cfg = logger(&format!(
        "[[logger]]\ntype = \"amqp\"\nexchange = \"apiary-test\"\ndeclare_exchange = true\nrouting_key = \"events.{u}\"\ndeclare_queue = \"{queue}\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = start(&cfg, dir.path());
    let em = p.emitter();
    for i in 0..500 {
        em.emit(event(i));
    }
    let stats = p.shutdown(Duration::from_secs(20)).await;
    assert_eq!(stats[0].1.delivered, 500, "{:?}", stats[0].1);
    let conn = Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut got = Vec::new();
    while let Some(m) =
        ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap()
    {
        let e = apiary_event::encode::from_json(&m.delivery.data).unwrap();
        assert_eq!(m.delivery.properties.message_id().as_ref().unwrap().as_str(), e.id.to_string());
        got.push(e.fields["seq"].as_u64().unwrap());
    }
    assert_eq!(got, (0..500).collect::<Vec<u64>>());
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
}
