//! One module per subcommand; each turns parsed flags into calls on the library crates.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{
    Command, ConfigCommand, CoreCommand, CoreNodeCommand, CoreUserCommand, LoggersCommand,
    NodeCommand, PotCommand, ProfileCommand,
};

mod check;
mod core;
mod ctl;
mod list;
mod loggers;
mod node;
mod pot;
mod sensor;
mod up;

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Pot(PotCommand::Run { config, skip_busy }) => {
            pot::run(config.as_deref(), skip_busy)
        }
        Command::Profile(ProfileCommand::List) => list::run(crate::cli::ListWhat::Profiles, None),
        Command::Profile(ProfileCommand::Show { name }) => list::show_profile(&name),
        Command::Config(ConfigCommand::Check { config }) => check::run(config.as_deref()),
        Command::Config(ConfigCommand::Default) => {
            print(crate::config::DEFAULT);
            Ok(ExitCode::SUCCESS)
        }
        Command::List { what, config } => list::run(what, config.as_deref()),
        Command::Sensor(args) => sensor::run(&args),
        Command::Up(args) => up::run(&args),
        Command::Core(CoreCommand::Run { config }) => core::run(config.as_deref()),
        Command::Core(CoreCommand::Node(CoreNodeCommand::Add {
            name,
            token,
            core_addr,
            config,
        })) => core::add_node(config.as_deref(), &name, token, core_addr.as_deref()),
        Command::Core(CoreCommand::Node(CoreNodeCommand::Cert { name, config })) => {
            core::node_cert(config.as_deref(), &name)
        }
        Command::Core(CoreCommand::User(CoreUserCommand::Add { name, role, config })) => {
            core::add_user(config.as_deref(), &name, role)
        }
        Command::Node(NodeCommand::Run { config }) => node::run(config.as_deref()),
        Command::Ctl(args) => ctl::run(*args),
        Command::Loggers(LoggersCommand::Test { config }) => loggers::test(config.as_deref()),
        Command::Completions { shell } => {
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "apiary", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes program output to stdout; a closed pipe (`apiary list | head`) is not an error.
pub(crate) fn print(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// Loads and validates a configuration, printing every problem before failing.
pub(crate) fn load_valid(path: Option<&std::path::Path>) -> anyhow::Result<crate::config::Loaded> {
    let loaded = crate::config::Loaded::load(path)?;
    let errors = loaded.validate();
    if let Some(first) = errors.first() {
        for e in errors.iter().skip(1) {
            tracing::error!("{e}");
        }
        return Err(anyhow::anyhow!("{first}"))
            .with_context(|| format!("{} problem(s) in the configuration", errors.len()));
    }
    Ok(loaded)
}

/// A multi-threaded runtime for the async subcommands.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")
}

/// Builds every enabled logger of a configuration.
pub(crate) fn build_sinks(
    loaded: &crate::config::Loaded,
) -> anyhow::Result<Vec<apiary_sinks::SinkSpec>> {
    let data_dir = loaded.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let mut specs = Vec::new();
    for logger in loaded.config.logger.iter().filter(|l| l.enabled) {
        let spec = logger
            .build(&loaded.config.pot.ignore, &data_dir)
            .with_context(|| format!("logger `{}`", logger.display_name()))?;
        specs.push(spec);
    }
    Ok(specs)
}
