//! End-to-end tests of the `apiary` binary: bad configurations, a real run on loopback with
//! events checked in the JSONL file, and graceful shutdown.
#![allow(clippy::unwrap_used, missing_docs)]

mod check;
mod ctl;
mod fleet;
mod run;
mod sensor;
mod up;

use std::path::Path;
use std::process::{Command, Output};

pub(crate) fn apiary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apiary"))
}

pub(crate) fn run_with_config(args: &[&str], dir: &Path, config: &str) -> Output {
    let path = dir.join("apiary.toml");
    std::fs::write(&path, config).unwrap();
    apiary().args(args).arg("-c").arg(&path).current_dir(dir).output().unwrap()
}
