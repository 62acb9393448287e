//! Helpers: events, config parsing, and the skip-or-fail rule for local services.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apiary_event::{Event, Kind, Payload, Transport};
use apiary_sinks::{Pipeline, SinkConfig, SinkSpec};

/// Whether a local service answers on `addr`. Absent: the test is skipped with a note, unless
/// `APIARY_REQUIRE_SERVICES=1`, when absence fails the test.
pub(crate) async fn service(addr: &str, what: &str) -> bool {
    let up = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .is_ok_and(|r| r.is_ok());
    if !up {
        if std::env::var("APIARY_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("{what} is not running on {addr} and APIARY_REQUIRE_SERVICES=1");
        }
        eprintln!("note: {what} not running on {addr}; test skipped");
    }
    up
}

/// A realistic event with a unique source port tag.
pub(crate) fn event(i: u32) -> Event {
    let mut e = Event::new(Kind::SESSION_RX, Arc::from("test-node"));
    e.service = Some(Arc::from("Telnet"));
    e.protocol = Some(Arc::from("telnet"));
    e.transport = Some(Transport::Tcp);
    e.src_ip = Some("203.0.113.7".parse().unwrap());
    e.src_port = Some((i % 65_536) as u16);
    e.dst_ip = Some("192.0.2.1".parse().unwrap());
    e.dst_port = Some(23);
    e.session = Some(apiary_event::new_id());
    e.payload = Some(Payload::new(format!("root\tpass\\{i}\n").as_bytes(), 256));
    e.fields.insert("seq".into(), i.into());
    e
}

/// Parses one `[[logger]]` table.
pub(crate) fn logger(toml_text: &str) -> SinkConfig {
    #[derive(serde::Deserialize)]
    struct File {
        logger: Vec<SinkConfig>,
    }
    toml::from_str::<File>(toml_text).unwrap().logger.remove(0)
}

/// Builds and starts one logger.
pub(crate) fn start(cfg: &SinkConfig, data_dir: &Path) -> Pipeline {
    let spec: SinkSpec = cfg.build(&[], data_dir).unwrap();
    Pipeline::start(vec![spec])
}

/// A unique lower-case suffix for tables, subjects and keys.
pub(crate) fn unique() -> String {
    apiary_event::new_id().simple().to_string()
}
