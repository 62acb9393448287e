//! Errors of the plugin host: loading, validating and running scripts.

use std::path::PathBuf;

/// Why a plugin could not be loaded, or why one run of it ended badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The plugin file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file name does not end in `.lua` or `.py`.
    #[error("{path}: unsupported plugin type (expected a .lua or .py file)")]
    UnsupportedExtension {
        /// The plugin file.
        path: PathBuf,
    },
    /// The script does not compile; `line` is 1-based when the compiler named one.
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Syntax {
        /// The plugin file.
        path: PathBuf,
        /// The line the compiler blamed.
        line: Option<u32>,
        /// The compiler's message.
        message: String,
    },
    /// The script compiled but does not define what its hook needs (or defines it wrongly).
    #[error("{path}: {message}")]
    Invalid {
        /// The plugin file.
        path: PathBuf,
        /// What is missing or wrong, e.g. "no `receiver` function".
        message: String,
    },
    /// The script raised an error while running.
    #[error("script error: {0}")]
    Runtime(String),
    /// The script used more instructions than its budget allows.
    #[error("instruction budget exceeded")]
    InstructionBudget,
    /// The script used more memory than its limit allows.
    #[error("memory limit exceeded")]
    MemoryLimit,
    /// The Python worker process could not be started, died, or stopped answering.
    #[error("python worker: {0}")]
    Worker(String),
}

impl ScriptError {
    /// A short machine-friendly name of the error class, used in `plugin.error` events.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::UnsupportedExtension { .. } => "unsupported",
            Self::Syntax { .. } => "syntax",
            Self::Invalid { .. } => "invalid",
            Self::Runtime(_) => "runtime",
            Self::InstructionBudget => "instruction_budget",
            Self::MemoryLimit => "memory_limit",
            Self::Worker(_) => "worker",
        }
    }
}
