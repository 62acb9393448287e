//! Command-line flags and subcommands (clap). Parsing only: the work is in `cmd/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// apiary: a honeypot daemon, fleet manager and flow sensor in one binary.
///
/// Start with `apiary pot run`: it serves a default set of emulated services on unprivileged
/// ports and writes every event to apiary-data/events.jsonl.
#[derive(Debug, Parser)]
#[command(name = "apiary", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    /// More log detail on stderr (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start everything on this machine: a Core with its dashboard, a local node enrolled
    /// automatically, and a honeypot on unprivileged ports. Prints the dashboard URL.
    Up(UpArgs),
    /// Run honeypot services.
    #[command(subcommand)]
    Pot(PotCommand),
    /// The fleet manager: run the Core (HoneyBee v2 node port) and enroll nodes.
    #[command(subcommand)]
    Core(CoreCommand),
    /// The node agent: connect to a Core, run the pots it asks for, forward their events.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Check or print configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List what apiary can run.
    List {
        /// What to list.
        #[arg(value_enum, default_value_t = ListWhat::Services)]
        what: ListWhat,
        /// Configuration file (for `loggers`; the built-in default if omitted).
        #[arg(short, long, env = "APIARY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show the built-in service profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Log network flows like PokieStream (live from an interface, or from a pcap file).
    Sensor(SensorArgs),
    /// Work with the configured loggers.
    #[command(subcommand)]
    Loggers(LoggersCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PotCommand {
    /// Serve the configured services until Ctrl-C or SIGTERM.
    Run {
        /// Configuration file (the built-in default if omitted).
        #[arg(short, long, env = "APIARY_CONFIG")]
        config: Option<PathBuf>,
        /// Start every service whose ports are free and list what was skipped, instead of
        /// failing on a port that is in use or privileged.
        #[arg(long)]
        skip_busy: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// List the built-in profiles.
    List,
    /// Print a profile as shipped (its services with their real ports).
    Show {
        /// The profile (`apiary profile list` names them).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration file and report every problem with its line.
    Check {
        /// Configuration file (the built-in default if omitted).
        #[arg(short, long, env = "APIARY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the built-in default configuration, a starting point for your own.
    Default,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LoggersCommand {
    /// Send a marked test event through every enabled logger and report each result.
    Test {
        /// Configuration file (the built-in default if omitted).
        #[arg(short, long, env = "APIARY_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ListWhat {
    /// Service emulators (plugins).
    Services,
    /// Built-in service profiles.
    Profiles,
    /// Logger types and, with -c, the configured loggers.
    Loggers,
}

/// `apiary sensor`: PokieStream's packet logger.
#[derive(Debug, clap::Args)]
pub(crate) struct SensorArgs {
    /// PokieStream's `config.yaml`/`config.yml`, or an apiary TOML file with a `[sensor]` table
    /// (its `[[logger]]`s then receive the records). Default: `config.yml` if present.
    #[arg(short, long)]
    pub(crate) config: Option<PathBuf>,
    /// Capture live on this interface (`lo`, `eth0`, a SPAN or TAP port). Needs root.
    #[arg(short, long, conflicts_with = "read")]
    pub(crate) interface: Option<String>,
    /// Replay a pcap or pcapng file; record times come from the packets.
    #[arg(short, long)]
    pub(crate) read: Option<PathBuf>,
    /// Output when no plugin is configured: plain (PokieStream's), packet_log or json.
    #[arg(long, value_parser = ["plain", "packet_log", "json"])]
    pub(crate) format: Option<String>,
    /// No progress bar during a replay.
    #[arg(long)]
    pub(crate) no_progress: bool,
}

/// `apiary up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Where the Core keeps its database, CA and certificates.
    #[arg(long, default_value = "apiary-data", env = "APIARY_DATA_DIR")]
    pub(crate) data_dir: PathBuf,
    /// Dashboard and REST API address.
    #[arg(long, default_value = "127.0.0.1:5100")]
    pub(crate) http: std::net::SocketAddr,
    /// Node port (TLS) for remote nodes.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub(crate) core: std::net::SocketAddr,
    /// Address the honeypot services listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub(crate) bind: std::net::IpAddr,
    /// Take the honeypot services from this configuration file's profiles and `[[service]]`
    /// tables instead of the built-in set (SSH 2222, HTTP 8080, SMTP 2525, ...).
    #[arg(short, long)]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CoreCommand {
    /// Serve the node port until Ctrl-C or SIGTERM (settings from `[core]`).
    Run {
        /// Configuration file (defaults if omitted).
        #[arg(short, long, env = "APIARY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage enrolled nodes.
    #[command(subcommand)]
    Node(CoreNodeCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum CoreNodeCommand {
    /// Enroll a node: prints its TOTP secret (text, otpauth URI, QR code) or a one-time token,
    /// and the `[node]` section and command to run on the node.
    Add {
        /// The node's name (1 to 64 of A-Z a-z 0-9 . _ -).
        name: String,
        /// Issue a one-time token instead of a TOTP secret (the Core sends the node a secret
        /// at its first registration).
        #[arg(long)]
        token: bool,
        /// The address nodes use to reach this Core (printed in the `[node]` section).
        #[arg(long)]
        core_addr: Option<String>,
        /// Configuration file (defaults if omitted).
        #[arg(short, long, env = "APIARY_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Run the node agent until Ctrl-C or SIGTERM (settings from `[node]`).
    Run {
        /// Configuration file with a `[node]` section.
        #[arg(short, long, env = "APIARY_CONFIG")]
        config: Option<PathBuf>,
    },
}
