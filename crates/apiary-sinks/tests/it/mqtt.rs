//! MQTT sink against the local Mosquitto (127.0.0.1:1883).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::common::*;

#[tokio::test]
async fn publishes_qos1_and_a_subscriber_gets_everything() {
    if !service("127.0.0.1:1883", "Mosquitto").await {
        return;
    }
    let topic = format!("apiary/test/{}", unique());
    let (client, mut el) =
        AsyncClient::new(MqttOptions::new(format!("sub-{}", unique()), "127.0.0.1", 1883), 100);
    client.subscribe(topic.clone(), QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = el.poll().await.unwrap() {
            break;
        }
    }
    let collector = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 600 {
            if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await {
                let e = apiary_event::encode::from_json(&p.payload).unwrap();
                got.push(e.fields["seq"].as_u64().unwrap());
            }
        }
        got
    });
    let cfg = logger(&format!("[[logger]]\ntype = \"mqtt\"\ntopic = \"{topic}\"\n"));
    let dir = tempfile::tempdir().unwrap();
    let p = start(&cfg, dir.path());
    let em = p.emitter();
    for i in 0..600 {
        em.emit(event(i));
    }
    let stats = p.shutdown(Duration::from_secs(20)).await;
    assert_eq!(stats[0].1.delivered, 600, "{:?}", stats[0].1);
    let mut got = tokio::time::timeout(Duration::from_secs(20), collector).await.unwrap().unwrap();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, (0..600).collect::<Vec<u64>>());
}
