//! `apiary sensor`: PokieStream's packet logger. Reads PokieStream's `config.yaml` as is, or an
//! apiary TOML file whose `[sensor]` table holds the same settings and whose loggers then
//! receive the records.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use apiary_event::Event;
use apiary_sensor::{RecordSink, RunOptions, SensorConfig, Source};

use crate::cli::SensorArgs;

pub(crate) fn run(args: &SensorArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.clone().or_else(|| {
        let default = PathBuf::from("config.yml");
        default.exists().then_some(default)
    });
    let is_toml = path.as_ref().is_some_and(|p| p.extension().is_some_and(|e| e == "toml"));
    let (mut cfg, plugin_view, loaded) = match &path {
        Some(p) if is_toml => {
            let loaded = super::load_valid(Some(p))?;
            let cfg = loaded.config.sensor.clone().unwrap_or_default();
            let view = serde_json::to_value(&cfg).unwrap_or_default();
            (cfg, view, Some(loaded))
        }
        Some(p) => match SensorConfig::load_pokiestream(p) {
            Ok(l) => {
                for w in &l.warnings {
                    tracing::warn!("{}: {w}", p.display());
                }
                (l.sensor, l.plugin_view, None)
            }
            Err(e) => {
                super::print(&format!("{}: {e}\n", p.display()));
                return Ok(ExitCode::from(1));
            }
        },
        None => (SensorConfig::default(), serde_json::json!({}), None),
    };
    if let Some(f) = &args.format {
        let format = serde_json::from_value(serde_json::Value::String(f.clone()))
            .context("output format")?;
        cfg.output.format = format;
    }
    let source = match (&args.read, &args.interface, &cfg.iface) {
        (Some(file), _, _) => Source::File(file.clone()),
        (None, Some(i), _) | (None, None, Some(i)) => Source::Interface(i.clone()),
        (None, None, None) => anyhow::bail!(
            "nothing to read: give -i IFACE, -r FILE, or `iface` in the configuration"
        ),
    };
    let node = loaded.as_ref().map(|l| l.node()).unwrap_or_else(|| "sensor".into());
    let mut opts = RunOptions::new(source);
    opts.node = Arc::from(node.as_str());
    opts.progress = !args.no_progress && std::io::stderr().is_terminal();
    opts.plugin_config = plugin_view;
    stop_on_signal(Arc::clone(&opts.stop))?;

    let with_loggers = loaded.as_ref().filter(|l| l.config.logger.iter().any(|s| s.enabled));
    let stats = match with_loggers {
        None => apiary_sensor::run(&cfg, opts, Box::new(std::io::stdout()))?,
        Some(loaded) => to_loggers(&cfg, opts, loaded)?,
    };
    tracing::info!(
        packets = stats.packets,
        records = stats.records,
        queue_drops = stats.queue_drops,
        kernel_drops = stats.kernel_drops,
        flows_open = stats.flows_open,
        "sensor finished"
    );
    Ok(ExitCode::SUCCESS)
}

/// Hands each record to the logger pipeline (never blocks: a full logger queue spools).
struct ToPipeline(apiary_sinks::Emitter);

impl RecordSink for ToPipeline {
    fn record(&mut self, event: Event) {
        self.0.emit(event);
    }
}

fn to_loggers(
    cfg: &SensorConfig,
    opts: RunOptions,
    loaded: &crate::config::Loaded,
) -> anyhow::Result<apiary_sensor::Stats> {
    let specs = super::build_sinks(loaded)?;
    let rt = super::runtime()?;
    let pipeline = rt.block_on(async { apiary_sinks::Pipeline::start(specs) });
    let emitter = pipeline.emitter();
    let stats = match &opts.source {
        Source::File(file) => {
            let mut sink = ToPipeline(emitter);
            let ro = apiary_sensor::ReplayOptions {
                node: Arc::clone(&opts.node),
                progress: opts.progress,
            };
            apiary_sensor::replay_file(cfg, file, &mut sink, &ro)?
        }
        Source::Interface(iface) => {
            let handle =
                apiary_sensor::live(cfg, iface, Arc::clone(&opts.node), opts.stop, |_| {
                    Box::new(ToPipeline(emitter.clone())) as Box<dyn RecordSink + Send>
                })?;
            handle.join()?
        }
    };
    let flushed = rt.block_on(pipeline.shutdown(Duration::from_secs(15)));
    for (name, s) in flushed {
        tracing::info!(logger = %name, delivered = s.delivered, dropped = s.dropped, "logger flushed");
    }
    Ok(stats)
}

/// Sets `stop` on Ctrl-C or SIGTERM so a live capture ends cleanly with its final records.
fn stop_on_signal(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let signal = rt.block_on(async { super::pot::shutdown_signal() })?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let _ = rt.block_on(signal);
        stop.store(true, Ordering::Relaxed);
    })?;
    Ok(())
}
