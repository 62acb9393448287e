//! The pot manager: installs, starts, stops and reports pots, one command at a time, and
//! answers every command with a report the Core can match to it.
//!
//! Three kinds of pot: `honeypot` (an apiary service set from a TOML fragment, run in-process
//! by apiary-pot), `sensor` (apiary-sensor on an interface) and `external` (a program the
//! operator names as an explicit argv, supervised, sending JSON events to the event socket).
//! Every value from the Core is validated; nothing is run through a shell or written into a
//! file.

pub(crate) mod events;
mod external;
mod honeypot;
mod lines;
mod sensor;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use apiary_event::{Emit, Event, SharedEmit};
use apiary_proto::{
    InstallPot, NodeCommandType, NodeEvent, NodeEventKind, NodeMessage, NodeStatus,
    NodeStatusUpdate, PotStatus, PotStatusUpdate,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub(crate) use events::{EventSocket, ExternalRegistry};

use crate::state::{State, StateFile};

/// Most pots one node keeps.
const MAX_POTS: usize = 64;
/// Most config keys per pot, and bytes per value.
const MAX_KEYS: usize = 64;
const MAX_VALUE: usize = 64 * 1024;
/// Longest report message (logs, info) sent to the Core.
pub(crate) const MAX_REPORT: usize = 16 * 1024;

/// An installed pot as the node remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PotSpec {
    pub(crate) pot_id: String,
    pub(crate) honeypot_type: String,
    #[serde(default)]
    pub(crate) config: BTreeMap<String, String>,
    /// Whether it should be running (restored at start).
    #[serde(default)]
    pub(crate) running: bool,
}

/// The validated, typed form of a spec.
#[derive(Debug, Clone)]
enum Plan {
    Honeypot(Box<honeypot::Plan>),
    Sensor(Box<sensor::Plan>),
    External(external::Plan),
}

enum Running {
    Honeypot(honeypot::Run),
    Sensor(sensor::Run),
    External(external::Run),
}

struct Installed {
    spec: PotSpec,
    plan: Plan,
    run: Option<Running>,
    started: Option<Instant>,
    last_error: Option<String>,
}

/// Stamps the pot id on every event of a pot, then hands it to the pipeline.
pub(crate) struct PotEmit {
    pub(crate) inner: SharedEmit,
    pub(crate) pot: Arc<str>,
}

impl Emit for PotEmit {
    fn emit(&self, mut event: Event) {
        event.pot = Some(self.pot.clone());
        self.inner.emit(event);
    }
}

/// What the manager needs from the node.
pub(crate) struct PotEnv {
    pub(crate) node: Arc<str>,
    pub(crate) emit: SharedEmit,
    pub(crate) allow_programs: Vec<PathBuf>,
    pub(crate) event_port: Option<u16>,
    pub(crate) externals: ExternalRegistry,
    pub(crate) work_dir: PathBuf,
}

/// Re-reads the node's configuration for `UpdateConfig`.
pub type Reload = Arc<dyn Fn() -> Result<crate::NodeConfig, String> + Send + Sync>;

/// The pot manager.
pub(crate) struct Pots {
    env: PotEnv,
    pots: BTreeMap<String, Installed>,
    state: Arc<Mutex<State>>,
    state_file: StateFile,
    reload: Option<Reload>,
    node_id: Arc<crate::client::LinkStatus>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn cap(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl Pots {
    pub(crate) fn new(
        env: PotEnv,
        state: Arc<Mutex<State>>,
        state_file: StateFile,
        reload: Option<Reload>,
        node_id: Arc<crate::client::LinkStatus>,
    ) -> Self {
        Self { env, pots: BTreeMap::new(), state, state_file, reload, node_id }
    }

    /// Re-installs the pots of the last run and starts those that were running.
    pub(crate) async fn restore(&mut self) {
        let specs = self.state.lock().map(|s| s.pots.clone()).unwrap_or_default();
        for spec in specs {
            let id = spec.pot_id.clone();
            match self.plan(&spec) {
                Ok(plan) => {
                    let running = spec.running;
                    self.pots.insert(
                        id.clone(),
                        Installed { spec, plan, run: None, started: None, last_error: None },
                    );
                    if running {
                        let (status, msg) = self.start(&id).await;
                        info!(pot = %id, status = %status, message = %msg, "pot restored");
                    }
                }
                Err(e) => warn!(pot = %id, error = %e, "a saved pot is no longer valid; skipped"),
            }
        }
    }

    fn plan(&self, spec: &PotSpec) -> Result<Plan, String> {
        if !valid_id(&spec.pot_id) {
            return Err("pot_id: use 1 to 64 of A-Z a-z 0-9 . _ -".into());
        }
        if spec.config.len() > MAX_KEYS {
            return Err(format!("config: at most {MAX_KEYS} keys"));
        }
        for (k, v) in &spec.config {
            if !valid_key(k) {
                return Err(format!(
                    "config key {:?}: use 1 to 64 of a-z 0-9 _",
                    cap(k.clone(), 80)
                ));
            }
            if v.len() > MAX_VALUE || v.contains('\0') {
                return Err(format!("config.{k}: at most {MAX_VALUE} bytes, no NUL"));
            }
        }
        let t = spec.honeypot_type.to_ascii_lowercase();
        match t.as_str() {
            "honeypot" | "apiary" => {
                honeypot::plan(&spec.pot_id, &spec.config).map(|p| Plan::Honeypot(Box::new(p)))
            }
            "sensor" => sensor::plan(&spec.config).map(|p| Plan::Sensor(Box::new(p))),
            _ => external::plan(&spec.config, &self.env.allow_programs).map(Plan::External),
        }
    }

    fn save(&self) {
        let specs: Vec<PotSpec> = self.pots.values().map(|p| p.spec.clone()).collect();
        let snapshot = match self.state.lock() {
            Ok(mut s) => {
                s.pots = specs;
                s.clone()
            }
            Err(_) => return,
        };
        if let Err(e) = self.state_file.save(&snapshot) {
            warn!(error = %e, "cannot save the installed pots");
        }
    }

    fn report(&self, pot_id: &str, pot_type: &str, status: PotStatus, msg: String) -> NodeMessage {
        NodeMessage::PotStatusUpdate(PotStatusUpdate {
            node_id: self.node_id.node_id(),
            pot_id: pot_id.to_owned(),
            pot_type: pot_type.to_owned(),
            status,
            message: Some(cap(msg, MAX_REPORT)),
        })
    }

    fn status_of(&self, id: &str) -> (PotStatus, String) {
        match self.pots.get(id) {
            None => (PotStatus::Failed, "no such pot".into()),
            Some(p) => match (&p.run, &p.last_error) {
                (Some(r), _) if self.alive(r) => (PotStatus::Running, self.describe(r)),
                (Some(_), _) => (PotStatus::Failed, "exited".into()),
                (None, Some(e)) => (PotStatus::Failed, e.clone()),
                (None, None) => (PotStatus::Stopped, "stopped".into()),
            },
        }
    }

    fn alive(&self, r: &Running) -> bool {
        match r {
            Running::Honeypot(_) => true,
            Running::Sensor(s) => s.alive(),
            Running::External(x) => x.alive(),
        }
    }

    fn describe(&self, r: &Running) -> String {
        match r {
            Running::Honeypot(h) => h.describe(),
            Running::Sensor(s) => s.describe(),
            Running::External(x) => x.describe(),
        }
    }

    async fn start(&mut self, id: &str) -> (PotStatus, String) {
        let Some(p) = self.pots.get_mut(id) else {
            return (PotStatus::Failed, "no such pot".into());
        };
        if p.run.is_some() {
            // Already running (a re-sent DeployPot): report, do not start twice.
            return self.status_of(id);
        }
        let pot: Arc<str> = Arc::from(id);
        let emit: SharedEmit = Arc::new(PotEmit { inner: self.env.emit.clone(), pot: pot.clone() });
        let started = match &p.plan {
            Plan::Honeypot(plan) => {
                honeypot::start(plan, &self.env.node, emit).map(Running::Honeypot)
            }
            Plan::Sensor(plan) => sensor::start(plan, &self.env.node, emit).map(Running::Sensor),
            Plan::External(plan) => match self.env.event_port {
                Some(port) => {
                    external::start(plan, id, port, &self.env.work_dir).map(Running::External)
                }
                None => {
                    Err("the event socket is not listening, so external pots cannot report".into())
                }
            },
        };
        let p = match self.pots.get_mut(id) {
            Some(p) => p,
            None => return (PotStatus::Failed, "no such pot".into()),
        };
        p.spec.running = true;
        match started {
            Ok(run) => {
                if matches!(run, Running::External(_)) {
                    self.env.externals.add(id);
                }
                p.run = Some(run);
                p.started = Some(Instant::now());
                p.last_error = None;
                self.save();
                self.status_of(id)
            }
            Err(e) => {
                p.last_error = Some(e.clone());
                self.save();
                (PotStatus::Failed, e)
            }
        }
    }

    async fn stop(&mut self, id: &str, keep_wanted: bool) -> (PotStatus, String) {
        let Some(p) = self.pots.get_mut(id) else {
            return (PotStatus::Failed, "no such pot".into());
        };
        let run = p.run.take();
        p.started = None;
        p.last_error = None;
        if !keep_wanted {
            p.spec.running = false;
        }
        self.env.externals.remove(id);
        match run {
            Some(Running::Honeypot(h)) => h.stop().await,
            Some(Running::Sensor(s)) => s.stop().await,
            Some(Running::External(x)) => x.stop().await,
            None => {}
        }
        if !keep_wanted {
            self.save();
        }
        (PotStatus::Stopped, "stopped".into())
    }

    fn pot_type(&self, id: &str) -> String {
        self.pots.get(id).map(|p| p.spec.honeypot_type.clone()).unwrap_or_default()
    }

    async fn install(&mut self, ip: InstallPot) -> (PotStatus, String) {
        if ip.git_url.is_some() {
            return (
                PotStatus::Failed,
                "apiary nodes never fetch code: install the honeypot on the node and give its \
                 command line as config.argv"
                    .into(),
            );
        }
        let spec = PotSpec {
            pot_id: ip.pot_id.clone(),
            honeypot_type: ip.honeypot_type.clone(),
            config: ip.config.clone().unwrap_or_default(),
            running: false,
        };
        let plan = match self.plan(&spec) {
            Ok(p) => p,
            Err(e) => return (PotStatus::Failed, format!("invalid pot: {e}")),
        };
        if let Some(old) = self.pots.get(&spec.pot_id) {
            if old.spec.honeypot_type == spec.honeypot_type && old.spec.config == spec.config {
                // The same install again (the Core re-sends unanswered commands).
                if ip.auto_start {
                    return self.start(&ip.pot_id).await;
                }
                return self.status_of(&ip.pot_id);
            }
            self.stop(&spec.pot_id, false).await;
        } else if self.pots.len() >= MAX_POTS {
            return (PotStatus::Failed, format!("at most {MAX_POTS} pots per node"));
        }
        self.pots.insert(
            spec.pot_id.clone(),
            Installed { spec, plan, run: None, started: None, last_error: None },
        );
        self.save();
        if ip.auto_start {
            self.start(&ip.pot_id).await
        } else {
            (PotStatus::Stopped, "installed".into())
        }
    }

    fn info(&self, id: &str) -> (PotStatus, String) {
        let (status, msg) = self.status_of(id);
        let Some(p) = self.pots.get(id) else { return (status, msg) };
        let info = serde_json::json!({
            "pot_id": id,
            "type": p.spec.honeypot_type,
            "config_keys": p.spec.config.keys().collect::<Vec<_>>(),
            "wanted_running": p.spec.running,
            "status": status.as_str(),
            "detail": msg,
            "uptime_secs": p.started.map(|s| s.elapsed().as_secs()),
        });
        (status, info.to_string())
    }

    fn metrics(&self, id: &str) -> (PotStatus, String) {
        let (status, msg) = self.status_of(id);
        let Some(p) = self.pots.get(id) else { return (status, msg) };
        let mut m = match &p.run {
            Some(Running::Honeypot(h)) => h.metrics(),
            Some(Running::Sensor(s)) => s.metrics(),
            Some(Running::External(x)) => x.metrics(),
            None => serde_json::Map::new(),
        };
        m.insert("uptime_secs".into(), p.started.map(|s| s.elapsed().as_secs()).into());
        (status, serde_json::Value::Object(m).to_string())
    }

    fn logs(&self, id: &str) -> (PotStatus, String) {
        let (status, msg) = self.status_of(id);
        let Some(p) = self.pots.get(id) else { return (status, msg) };
        let lines: VecDeque<String> = match &p.run {
            Some(Running::External(x)) => x.logs(),
            Some(Running::Honeypot(h)) => VecDeque::from(vec![h.describe()]),
            Some(Running::Sensor(s)) => VecDeque::from(vec![s.describe()]),
            None => {
                VecDeque::from(vec![p.last_error.clone().unwrap_or_else(|| "not running".into())])
            }
        };
        // Newest lines win when the report must be cut.
        let mut out = String::new();
        for l in lines.iter().rev() {
            if out.len() + l.len() + 1 > MAX_REPORT {
                break;
            }
            out.insert_str(0, &format!("{l}\n"));
        }
        (status, out)
    }

    fn node_event(&self, kind: NodeEventKind, text: String) -> NodeMessage {
        // The flat shape keeps the text for every kind (the serde shape drops it for Started).
        let (message, description) = match kind {
            NodeEventKind::Alarm => (None, Some(text)),
            _ => (Some(text), None),
        };
        NodeMessage::NodeEvent(NodeEvent { kind, message, description, flat: true })
    }

    fn node_status(&self, status: NodeStatus) -> NodeMessage {
        NodeMessage::NodeStatusUpdate(NodeStatusUpdate { node_id: self.node_id.node_id(), status })
    }

    /// Runs one command and returns the reports that answer it.
    pub(crate) async fn handle(&mut self, cmd: NodeCommandType) -> Vec<NodeMessage> {
        let name = cmd.name();
        info!(command = name, pot = cmd.pot_id(), "running a command");
        let one = |s: &Self, id: &str, (st, msg): (PotStatus, String)| {
            vec![s.report(id, &s.pot_type(id), st, msg)]
        };
        match cmd {
            NodeCommandType::InstallPot(ip) => {
                let id = ip.pot_id.clone();
                let t = ip.honeypot_type.clone();
                let (st, msg) = self.install(ip).await;
                vec![self.report(&id, &t, st, msg)]
            }
            NodeCommandType::DeployPot(id) => {
                let r = self.start(&id).await;
                one(self, &id, r)
            }
            NodeCommandType::StopPot(id) => {
                let r = self.stop(&id, false).await;
                one(self, &id, r)
            }
            NodeCommandType::RestartPot(id) => {
                self.stop(&id, true).await;
                let r = self.start(&id).await;
                one(self, &id, r)
            }
            NodeCommandType::RemovePot(id) => {
                let t = self.pot_type(&id);
                if !self.pots.contains_key(&id) {
                    return vec![self.report(&id, &t, PotStatus::Failed, "no such pot".into())];
                }
                self.stop(&id, false).await;
                self.pots.remove(&id);
                self.save();
                vec![self.report(&id, &t, PotStatus::Removed, "removed".into())]
            }
            NodeCommandType::GetPotStatus(id) => {
                let r = self.status_of(&id);
                one(self, &id, r)
            }
            NodeCommandType::GetPotInfo(id) => {
                let r = self.info(&id);
                one(self, &id, r)
            }
            NodeCommandType::GetPotLogs(id) => {
                let r = self.logs(&id);
                one(self, &id, r)
            }
            NodeCommandType::GetPotMetrics(id) => {
                let r = self.metrics(&id);
                one(self, &id, r)
            }
            NodeCommandType::GetInstalledPots => {
                let ids: Vec<String> = self.pots.keys().cloned().collect();
                if ids.is_empty() {
                    return vec![self.node_event(
                        NodeEventKind::Started,
                        "GetInstalledPots: no pots installed".into(),
                    )];
                }
                ids.iter().flat_map(|id| one(self, id, self.status_of(id))).collect()
            }
            NodeCommandType::Restart => {
                let running: Vec<String> = self
                    .pots
                    .iter()
                    .filter(|(_, p)| p.run.is_some())
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut out = vec![self.node_status(NodeStatus::Stopped)];
                for id in &running {
                    self.stop(id, true).await;
                }
                let mut failed = Vec::new();
                for id in &running {
                    if self.start(id).await.0 == PotStatus::Failed {
                        failed.push(id.clone());
                    }
                }
                out.push(self.node_status(NodeStatus::Running));
                let text = if failed.is_empty() {
                    format!("restarted {} pot(s)", running.len())
                } else {
                    format!("restarted; failed to start again: {}", failed.join(", "))
                };
                out.push(self.node_event(NodeEventKind::Started, text));
                out
            }
            NodeCommandType::UpdateConfig => match &self.reload {
                None => vec![self.node_event(
                    NodeEventKind::Error,
                    "UpdateConfig: this node has no configuration file to reload".into(),
                )],
                Some(reload) => match reload() {
                    Ok(cfg) => {
                        let errs = cfg.validate();
                        if let Some(e) = errs.first() {
                            return vec![
                                self.node_event(NodeEventKind::Error, format!("UpdateConfig: {e}")),
                            ];
                        }
                        self.env.allow_programs = cfg.allow_programs.clone();
                        vec![self.node_event(
                            NodeEventKind::Started,
                            format!(
                                "configuration reloaded: {} allowed program(s); connection \
                                 settings apply at the next start",
                                cfg.allow_programs.len()
                            ),
                        )]
                    }
                    Err(e) => {
                        vec![self.node_event(NodeEventKind::Error, format!("UpdateConfig: {e}"))]
                    }
                },
            },
            other => vec![
                self.node_event(NodeEventKind::Error, format!("Unknown command {}", other.name())),
            ],
        }
    }

    /// Stops every pot (node shutdown); their wanted state is kept for the next start.
    pub(crate) async fn shutdown(&mut self) {
        let ids: Vec<String> = self.pots.keys().cloned().collect();
        for id in ids {
            self.stop(&id, true).await;
        }
    }
}
