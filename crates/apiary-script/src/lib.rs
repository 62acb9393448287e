//! apiary's plugin host, shared by scripted honeypot services and the flow sensor's packet
//! plugins: Lua runs in-process in sandboxed Lua 5.4 states, Python in a `python3` worker
//! process spoken to over framed JSON on stdin/stdout.
//!
//! Two hook kinds:
//! - the **service hook** ([`ServicePlugin`]): a script handles one TCP connection with
//!   `rx()`/`tx()` in straight-line style (HoneyPy's model), or answers UDP datagrams;
//! - the **packet hook** ([`PacketHost`]): PokieStream's `receiver(packet_log[, config])` and the
//!   bulk `receiver_bulk(list[, config])`, fed through a bounded queue.
//!
//! Guide for plugin authors: `docs/plugins.md`.

mod error;
mod lang;
mod limits;
mod lua;
mod output;
mod packet;
pub mod python;
mod service;
mod session;

use std::path::Path;

pub use error::ScriptError;
pub use lang::Language;
pub use limits::Limits;
pub use lua::pool::MAX_POOL as MAX_LUA_POOL;
pub use output::Output;
pub use packet::{PacketHost, PacketOptions, PacketSender, PacketStats, RECORD_KEYS, Record};
pub use service::{DEFAULT_LUA_POOL, ServiceOptions, ServicePlugin};
pub use session::{DatagramOutcome, SessionEnd, SessionInfo, SessionIo};

/// Which hook a plugin file is meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// A scripted honeypot service (`handle` / `datagram`).
    Service,
    /// A packet plugin (`receiver` / `receiver_bulk`).
    Packet,
}

/// Validates a plugin file for `apiary config check` without starting anything long-lived:
/// it must compile (errors carry file and line) and define the entry points of its hook.
/// Python plugins are imported by a short-lived `python3`, which runs their top-level code.
pub fn check_plugin(path: impl AsRef<Path>, hook: Hook) -> Result<(), ScriptError> {
    check_plugin_with(path.as_ref(), hook, "python3")
}

/// [`check_plugin`] with an explicit Python interpreter.
pub fn check_plugin_with(path: &Path, hook: Hook, python: &str) -> Result<(), ScriptError> {
    match Language::of_path(path)? {
        Language::Lua => {
            let source = std::fs::read(path)
                .map_err(|source| ScriptError::Read { path: path.to_path_buf(), source })?;
            match hook {
                Hook::Service => lua::service::LuaCode::compile(path, &source).map(|_| ()),
                Hook::Packet => {
                    let opts =
                        PacketOptions { output: Output::Tracing, ..PacketOptions::default() };
                    lua::packet::LuaReceiver::load(path, &source, &opts).map(|_| ())
                }
            }
        }
        Language::Python => {
            if !path.is_file() {
                return Err(ScriptError::Read {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                });
            }
            let hook = match hook {
                Hook::Service => "service",
                Hook::Packet => "packet",
            };
            python::check(python, hook, path).map(|_| ())
        }
    }
}
