//! The `apiary` binary: parses flags, sets up stderr logging and runs one subcommand.
//! Everything else lives in the library crates.

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc rather than glibc's allocator: the Core allocates per event on its ingest path,
/// where glibc's (consolidating the freed batches) took 8 % of the CPU; with mimalloc the whole
/// ingest run needs 13 % less CPU (BENCHMARKS.md, "Core and nodes").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod cmd;
mod config;
mod table;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    match cmd::run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // The cause chain on one line, as ripgrep does.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}

/// Human-readable operator logs on stderr, separate from the event stream.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
}
