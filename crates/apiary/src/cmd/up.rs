//! `apiary up`: a Core, its dashboard, a local node and a honeypot in one process, until
//! Ctrl-C.

use std::process::ExitCode;

use anyhow::Context as _;
use apiary_core::up::{UpConfig, run as start};

use crate::cli::UpArgs;

pub(crate) fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    apiary_core::install_crypto_provider();
    let services = match &args.config {
        None => None,
        Some(path) => {
            let loaded = super::load_valid(Some(path))?;
            let c = &loaded.config;
            Some(apiary_pot::resolve_services(&c.pot, &c.service)?)
        }
    };
    let cfg = UpConfig {
        data_dir: args.data_dir.clone(),
        core_listen: args.core,
        http_listen: args.http,
        pot_bind: vec![args.bind],
        services,
        ..UpConfig::default()
    };
    super::runtime()?.block_on(async move {
        let handle = start(cfg).await.context("starting apiary up")?;
        let signal = super::pot::shutdown_signal()?;
        super::print(&handle.banner());
        signal.await?;
        tracing::info!("stopping: honeypot, local node, API, Core");
        handle.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
