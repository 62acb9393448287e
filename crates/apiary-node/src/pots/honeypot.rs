//! `honeypot` pots: an apiary service set, given as a TOML fragment in `config.services`
//! (`[pot]` settings and `[[service]]` tables, exactly as in apiary.toml), run in-process.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apiary_event::SharedEmit;
use apiary_pot::{ListenerInfo, Pot, PotConfig, PotHandle, PotStats, ServiceConfig};
use serde::Deserialize;

/// The fragment's shape; unknown keys are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    #[serde(default)]
    pot: Option<PotConfig>,
    #[serde(default)]
    service: Vec<ServiceConfig>,
}

/// A checked service set.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pot: PotConfig,
    services: Vec<ServiceConfig>,
}

/// Parses and checks `config.services` without binding anything.
pub(crate) fn plan(pot_id: &str, config: &BTreeMap<String, String>) -> Result<Plan, String> {
    for k in config.keys() {
        if k != "services" {
            return Err(format!("config.{k}: a honeypot pot takes only `services`"));
        }
    }
    let text = config
        .get("services")
        .ok_or("config.services: a TOML fragment with [[service]] tables is required")?;
    let frag: Fragment =
        toml::from_str(text).map_err(|e| format!("config.services: {}", e.message()))?;
    let mut pot = frag.pot.unwrap_or_default();
    // Privileges are the whole process's, not one pot's.
    if pot.user.is_some() {
        return Err("config.services: [pot] user is not allowed in a node's pot".into());
    }
    pot.name = pot_id.to_owned();
    if frag.service.is_empty() && pot.profiles.is_empty() {
        return Err("config.services: no [[service]] and no profiles".into());
    }
    if let Some(e) = apiary_pot::check_config(&pot, &frag.service).into_iter().next() {
        return Err(e.to_string());
    }
    Ok(Plan { pot, services: frag.service })
}

/// A running service set.
pub(crate) struct Run {
    handle: PotHandle,
    listeners: Vec<ListenerInfo>,
}

pub(crate) fn start(plan: &Plan, node: &str, emit: SharedEmit) -> Result<Run, String> {
    let pot = Pot::bind(node, &plan.pot, &plan.services, emit).map_err(|e| e.to_string())?;
    let listeners = pot.listeners();
    let handle = pot.start().map_err(|e| format!("starting listeners: {e}"))?;
    Ok(Run { handle, listeners })
}

impl Run {
    pub(crate) fn describe(&self) -> String {
        let parts: Vec<String> = self
            .listeners
            .iter()
            .map(|l| format!("{} {} {}", l.service, l.transport.as_str(), l.addr))
            .collect();
        format!("listening: {}", parts.join(", "))
    }

    pub(crate) fn metrics(&self) -> serde_json::Map<String, serde_json::Value> {
        let s: &PotStats = self.handle.stats();
        let g =
            |a: &std::sync::atomic::AtomicU64| serde_json::Value::from(a.load(Ordering::Relaxed));
        let mut m = serde_json::Map::new();
        m.insert("connections_accepted".into(), g(&s.accepted));
        m.insert("connections_refused".into(), g(&s.refused));
        m.insert("datagrams".into(), g(&s.datagrams));
        m.insert("open_sessions".into(), g(&s.open_sessions));
        m.insert("listeners".into(), self.listeners.len().into());
        m
    }

    pub(crate) async fn stop(self) {
        self.handle.shutdown(Duration::from_secs(5)).await;
    }
}
