//! `apiary node run`: the node agent from the `[node]` section, with the file's loggers as
//! local copies of every event, until a signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apiary_node::{Node, NodeConfig, NodeOptions};

use crate::config::{Loaded, NodeSetting};

fn agent(loaded: &Loaded) -> anyhow::Result<NodeConfig> {
    match &loaded.config.node {
        Some(NodeSetting::Agent(a)) => Ok((**a).clone()),
        _ => Err(anyhow::anyhow!(
            "{}: no [node] section (`apiary core node add NAME` prints one)",
            loaded.origin
        )),
    }
}

pub(crate) fn run(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    apiary_core::install_crypto_provider();
    let loaded = super::load_valid(path)?;
    let cfg = agent(&loaded)?;
    let specs = super::build_sinks(&loaded)?;
    let local: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let file: Option<PathBuf> = path.map(Path::to_path_buf);
    let reload: Option<apiary_node::Reload> = file.map(|f| {
        let r: apiary_node::Reload = Arc::new(move || {
            let l = Loaded::load(Some(&f)).map_err(|e| e.to_string())?;
            agent(&l).map_err(|e| e.to_string())
        });
        r
    });
    let data_dir = loaded.data_dir();
    super::runtime()?.block_on(async move {
        let trust = match (&cfg.ca_file, &cfg.pin_sha256, cfg.plain) {
            (_, _, true) => "PLAIN TCP".to_owned(),
            (Some(ca), Some(_), _) => format!("TLS, CA {} and pinned certificate", ca.display()),
            (Some(ca), None, _) => format!("TLS, CA {}", ca.display()),
            (None, _, _) => "TLS, pinned certificate".to_owned(),
        };
        let (name, core_addr) = (cfg.name.clone(), cfg.core.clone());
        let node = Node::start(cfg, NodeOptions { data_dir, extra_sinks: specs, reload })
            .await
            .context("starting the node")?;
        super::print(&format!(
            "apiary {} node {name} | core {core_addr} ({trust}) | local loggers: {}\n\
             event socket: {}\nstate: {}\n",
            env!("CARGO_PKG_VERSION"),
            if local.is_empty() { "none".to_owned() } else { local.join(", ") },
            node.event_addr().map_or_else(|| "not listening".to_owned(), |a| a.to_string()),
            node.state_dir().display(),
        ));
        super::pot::shutdown_signal()?.await?;
        tracing::info!("shutting down: stopping pots, delivering queued events");
        for (sink, s) in node.shutdown(Duration::from_secs(10)).await {
            tracing::info!(logger = %sink, delivered = s.delivered, pending = s.pending, dropped = s.dropped, "flushed");
        }
        Ok(ExitCode::SUCCESS)
    })
}
