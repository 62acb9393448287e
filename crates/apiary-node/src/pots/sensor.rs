//! `sensor` pots: apiary's flow sensor on one interface (`config.interface`, optional
//! `config.bpf`). Only these two keys are taken: sensor plugins load code, and a Core must not
//! be able to make a node load code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use apiary_event::{Event, SharedEmit};
use apiary_sensor::{FnSink, LiveHandle, SensorConfig};

/// A checked sensor setup.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    iface: String,
    cfg: SensorConfig,
}

pub(crate) fn plan(config: &BTreeMap<String, String>) -> Result<Plan, String> {
    for k in config.keys() {
        if k != "interface" && k != "bpf" {
            return Err(format!("config.{k}: a sensor pot takes only `interface` and `bpf`"));
        }
    }
    let iface = config.get("interface").ok_or("config.interface is required")?;
    // Linux interface names: at most 15 bytes, no slash or space.
    let ok = !iface.is_empty()
        && iface.len() <= 15
        && iface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if !ok {
        return Err(format!(
            "config.interface {:?} is not an interface name",
            super::cap(iface.clone(), 40)
        ));
    }
    let mut cfg = SensorConfig::default();
    if let Some(bpf) = config.get("bpf") {
        if bpf.len() > 4096 {
            return Err("config.bpf: at most 4096 bytes".into());
        }
        cfg.filter.scapy = bpf.clone();
    }
    cfg.check().map_err(|e| e.to_string())?;
    Ok(Plan { iface: iface.clone(), cfg })
}

/// A running capture.
pub(crate) struct Run {
    iface: String,
    handle: LiveHandle,
    stop: Arc<AtomicBool>,
}

pub(crate) fn start(plan: &Plan, node: &Arc<str>, emit: SharedEmit) -> Result<Run, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = apiary_sensor::live(&plan.cfg, &plan.iface, node.clone(), stop.clone(), |_| {
        let emit = emit.clone();
        Box::new(FnSink(move |e: Event| emit.emit(e)))
    })
    .map_err(|e| e.to_string())?;
    Ok(Run { iface: plan.iface.clone(), handle, stop })
}

impl Run {
    pub(crate) fn alive(&self) -> bool {
        !self.handle.is_finished()
    }

    pub(crate) fn describe(&self) -> String {
        format!("capturing on {}", self.iface)
    }

    pub(crate) fn metrics(&self) -> serde_json::Map<String, serde_json::Value> {
        let s = self.handle.stats();
        let mut m = serde_json::Map::new();
        m.insert("packets".into(), s.packets.into());
        m.insert("bytes".into(), s.bytes.into());
        m.insert("malformed".into(), s.malformed.into());
        m
    }

    pub(crate) async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.stop();
        let handle = self.handle;
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}
