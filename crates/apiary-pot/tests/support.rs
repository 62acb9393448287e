//! Helpers: start a pot on loopback with chosen services and collect its events.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::{Collector, Event, Kind};
use apiary_pot::{Limits, Pot, PotConfig, PotHandle, ServiceConfig};

pub(crate) struct TestPot {
    pub(crate) handle: PotHandle,
    pub(crate) events: Arc<Collector>,
}

pub(crate) fn service(name: &str, plugin: &str, ports: &[&str]) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        plugin: plugin.into(),
        ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
        bind: None,
        enabled: true,
        description: None,
        options: toml::Table::new(),
    }
}

pub(crate) fn start(services: &[ServiceConfig], limits: Limits, bind: &str) -> TestPot {
    let config = PotConfig {
        name: "test".into(),
        bind: vec![bind.parse().unwrap()],
        ignore: Vec::new(),
        user: None,
        limits,
        profiles: Vec::new(),
        real_ports: false,
    };
    let events = Collector::shared();
    let pot = Pot::bind("node-1", &config, services, events.clone()).unwrap();
    TestPot { handle: pot.start().unwrap(), events }
}

impl TestPot {
    /// Shuts down and returns every event, in emission order.
    pub(crate) async fn finish(self) -> Vec<Event> {
        self.handle.shutdown(Duration::from_secs(5)).await;
        self.events.take()
    }

    /// Waits until an event of `kind` has been emitted `count` times (the runtime records
    /// `session.close` after the client saw the socket close).
    pub(crate) async fn wait_for(&self, kind: &Kind, count: usize) {
        for _ in 0..500 {
            if self.events.snapshot().iter().filter(|e| &e.kind == kind).count() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {count} {kind} events: {:#?}", self.events.snapshot());
    }
}

pub(crate) fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

pub(crate) fn payload(e: &Event) -> &[u8] {
    &e.payload.as_ref().unwrap().data
}
