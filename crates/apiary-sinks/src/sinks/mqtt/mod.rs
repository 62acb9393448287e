//! MQTT: one QoS 1 PUBLISH per event; a batch counts as delivered when the broker has
//! acknowledged every message (PUBACK). The sink drives rumqttc's event loop itself while it
//! waits, so no background task outlives a cancelled send.

mod config;
mod sink;

pub use config::MqttConfig;
pub use sink::MqttSink;
