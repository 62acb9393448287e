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
    /// Operate a running Core through its REST API: nodes, pots, commands, events, stats.
    Ctl(Box<CtlArgs>),
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
    /// Manage API users (tokens for `apiary ctl`, the dashboard and scripts).
    #[command(subcommand)]
    User(CoreUserCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum CoreUserCommand {
    /// Create an API token for NAME with a role and print it (shown once; the Core keeps only
    /// its SHA-256). Works with the Core running or stopped.
    Add {
        /// The token's name, the actor in the audit log (1 to 64 of A-Z a-z 0-9 . _ @ -).
        name: String,
        /// viewer: read; operator: also send commands; admin: also enroll/delete nodes and
        /// manage tokens.
        #[arg(long, value_enum, default_value_t = UserRole::Viewer)]
        role: UserRole,
        /// Configuration file (defaults if omitted).
        #[arg(short, long, env = "APIARY_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// An API role, as `--role` takes it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum UserRole {
    /// Reads nodes, events and statistics.
    Viewer,
    /// Also sends commands to nodes.
    Operator,
    /// Also enrolls and deletes nodes and manages tokens.
    Admin,
}

/// `apiary ctl`: where the API is, how to print, and what to do.
#[derive(Debug, clap::Args)]
pub(crate) struct CtlArgs {
    /// The API's base URL. Default: `http = ...` of `[core]` in the -c file, else
    /// http://127.0.0.1:5100.
    #[arg(long, global = true, env = "APIARY_URL")]
    pub(crate) url: Option<String>,
    /// An API token (`apiary core user add NAME --role ROLE` prints one).
    #[arg(long, global = true, env = "APIARY_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// A file holding the API token (keeps it out of the process list and shell history).
    #[arg(long, global = true, env = "APIARY_TOKEN_FILE", conflicts_with = "token")]
    pub(crate) token_file: Option<PathBuf>,
    /// Configuration file whose `[core]` section says where the API listens.
    #[arg(short, long, global = true, env = "APIARY_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Print JSON (one document; `events --follow`: one event per line) instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CtlCommand {
    /// List every node: id, name, status, connection, last heartbeat, address.
    Nodes,
    /// Show one node (name or id) with its pots and latest commands.
    Node {
        /// Node name or id.
        node: String,
    },
    /// Delete a node record, its pots and its unanswered commands (its events stay). Admin.
    Delete {
        /// Node name or id.
        node: String,
    },
    /// List a node's pots as it last reported them (every node's pots without NODE).
    Pots {
        /// Node name or id.
        node: Option<String>,
    },
    /// Deploy (start) an installed pot on a node and wait for its answer. Operator.
    Deploy {
        /// Node name or id.
        node: String,
        /// The pot id.
        pot: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Send any HoneyBee v2 command and follow its result. Operator.
    ///
    /// COMMAND is a command name with its argument (`GetInstalledPots`, `Restart`,
    /// `StopPot web-1`, `GetPotLogs cowrie`) or the command as JSON
    /// (`'{"InstallPot": {"pot_id": "web", "honeypot_type": "honeypot", "auto_start": true}}'`).
    Send {
        /// Node name or id.
        node: String,
        /// The command name, or the whole command as JSON.
        command: String,
        /// The argument of commands that take one (a pot id).
        arg: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show a command by id; with --wait, until the node answered.
    Command {
        /// Command id (printed by `send` and `deploy`).
        id: i64,
        /// Wait up to this long for the node's answer (`30s`, `2m`).
        #[arg(long, value_parser = parse_duration)]
        wait: Option<std::time::Duration>,
    },
    /// Search stored events (newest first), or follow live ones with --follow.
    Events(CtlEventsArgs),
    /// Top sources, credentials, commands, services and kinds, and events over time.
    Stats {
        /// From (RFC 3339 or a duration ago: `15m`, `24h`, `7d`).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Until (default now).
        #[arg(long)]
        until: Option<String>,
        /// Entries per top list.
        #[arg(long, default_value_t = 10)]
        top: u32,
    },
}

/// How long `ctl` follows a command.
#[derive(Debug, clap::Args)]
pub(crate) struct WaitArgs {
    /// Wait up to this long for the node's answer (`30s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) wait: std::time::Duration,
    /// Queue the command and return at once (print its id).
    #[arg(long, conflicts_with = "wait")]
    pub(crate) no_wait: bool,
}

/// `apiary ctl events`.
#[derive(Debug, clap::Args)]
pub(crate) struct CtlEventsArgs {
    /// From (RFC 3339 or a duration ago: `15m`, `24h`, `7d`).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Until (exclusive).
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Source address.
    #[arg(long = "src")]
    pub(crate) src_ip: Option<String>,
    /// Node name or id.
    #[arg(long)]
    pub(crate) node: Option<String>,
    /// Event kind (`auth.attempt`, `command.input`, ...).
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// Service name.
    #[arg(long)]
    pub(crate) service: Option<String>,
    /// Session id.
    #[arg(long)]
    pub(crate) session: Option<String>,
    /// Events whose JSON contains this text (not indexed: add a time range).
    #[arg(short, long)]
    pub(crate) query: Option<String>,
    /// Events per page (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
    /// Continue from the `next` cursor a previous page printed.
    #[arg(long)]
    pub(crate) before: Option<String>,
    /// Fetch this many pages, following the cursor.
    #[arg(long, default_value_t = 1)]
    pub(crate) pages: u32,
    /// Follow the live stream instead (filters: --kind, --src, --service, --node) until
    /// Ctrl-C, or until --count events were printed.
    #[arg(short, long, conflicts_with_all = ["since", "until", "session", "query", "before", "pages"])]
    pub(crate) follow: bool,
    /// With --follow: stop after this many events.
    #[arg(long, requires = "follow")]
    pub(crate) count: Option<u64>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    apiary_event::duration::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub(crate) enum CoreNodeCommand {
    /// Enroll a node: prints its TOTP secret (text, otpauth URI, QR code) or a one-time token,
    /// and the `[node]` section and command to run on the node. With `mtls = true` in [core]
    /// it also issues the node's client certificate.
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
    /// Issue an enrolled node a new client certificate for mutual TLS (`mtls = true` in
    /// [core]); the one issued before stops working at once.
    Cert {
        /// The node's name.
        name: String,
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
