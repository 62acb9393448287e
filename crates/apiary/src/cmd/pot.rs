//! `apiary pot run`: bind every service, drop privileges, serve until a signal, then close
//! sessions and flush every logger.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apiary_pot::Pot;

use crate::table;

pub(crate) fn run(path: Option<&Path>, skip_busy: bool) -> anyhow::Result<ExitCode> {
    let loaded = super::load_valid(path)?;
    let node = loaded.node();
    let specs = super::build_sinks(&loaded)?;
    let sink_names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    super::runtime()?.block_on(async move {
        let pipeline = apiary_sinks::Pipeline::start(specs);
        let c = &loaded.config;
        let emit = Arc::new(pipeline.emitter());
        let (pot, skipped) = if skip_busy {
            Pot::bind_skip_busy(&node, &c.pot, &c.service, emit)?
        } else {
            (Pot::bind(&node, &c.pot, &c.service, emit)?, Vec::new())
        };
        for s in &skipped {
            tracing::warn!(
                service = %s.service,
                "skipped {} {}: {}",
                s.transport.as_str(),
                s.addr,
                s.reason
            );
        }
        if let Some(user) = &c.pot.user {
            if apiary_pot::is_root() {
                // Loggers rotate and spool into the data directory after the switch.
                let (uid, gid) = apiary_pot::lookup_user(user)?;
                chown_tree(&loaded.data_dir(), uid, gid)?;
            }
            if apiary_pot::drop_privileges(user)? {
                tracing::info!(user, "listening sockets bound; now running unprivileged");
            }
        } else if apiary_pot::is_root() {
            tracing::warn!(
                "running as root: set `user = \"nobody\"` under [pot] to drop privileges after binding"
            );
        }
        let listeners = pot.listeners();
        let handle = pot.start().context("starting listeners")?;
        // Handlers are in place before the banner tells anyone that apiary is up, so a
        // supervisor's immediate SIGTERM is a clean stop, not a kill.
        let signal = shutdown_signal()?;
        super::print(&banner(&loaded, &node, &sink_names, &listeners));
        signal.await?;
        tracing::info!("shutting down: closing listeners and sessions");
        handle.shutdown(Duration::from_secs(5)).await;
        let stats = pipeline.shutdown(Duration::from_secs(15)).await;
        for (name, s) in stats {
            tracing::info!(
                logger = %name,
                delivered = s.delivered,
                dropped = s.dropped,
                retried = s.retried,
                "logger flushed"
            );
            if s.dropped > 0 {
                tracing::error!(logger = %name, dropped = s.dropped, "events were lost");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn banner(
    loaded: &crate::config::Loaded,
    node: &str,
    sinks: &[String],
    listeners: &[apiary_pot::ListenerInfo],
) -> String {
    // One row per service, transport and port, with every address it is bound on.
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut keys: Vec<(String, apiary_event::Transport, u16)> = Vec::new();
    for l in listeners {
        let key = (l.service.clone(), l.transport, l.addr.port());
        match keys.iter().position(|k| *k == key) {
            Some(i) => {
                if let Some(cell) = rows.get_mut(i).and_then(|r| r.get_mut(3)) {
                    cell.push_str(&format!(", {}", l.addr.ip()));
                }
            }
            None => {
                keys.push(key);
                rows.push(vec![
                    l.service.clone(),
                    l.plugin.clone(),
                    format!("{} {}", l.transport.as_str(), l.addr.port()),
                    l.addr.ip().to_string(),
                ]);
            }
        }
    }
    let data_dir = loaded.data_dir();
    let mut out = format!(
        "apiary {} | node {node} | config {} | loggers: {}\nevents: {}\n\n",
        env!("CARGO_PKG_VERSION"),
        loaded.origin,
        if sinks.is_empty() { "none".to_owned() } else { sinks.join(", ") },
        data_dir.join("events.jsonl").display(),
    );
    out.push_str(&table::render(&["SERVICE", "PLUGIN", "PORT", "ADDRESSES"], &rows));
    if let Some(tcp) = listeners.iter().find(|l| l.transport == apiary_event::Transport::Tcp) {
        out.push_str(&format!(
            "\ntry it: nc 127.0.0.1 {}   (Ctrl-C stops apiary)\n",
            tcp.addr.port()
        ));
    }
    out
}

/// Gives a directory tree to the user apiary will run as.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .with_context(|| format!("giving {} to uid {uid}", dir.display()))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to uid {uid}", path.display()))?;
        }
    }
    Ok(())
}

pub(crate) fn shutdown_signal()
-> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}
