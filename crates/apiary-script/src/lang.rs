//! Plugin languages, chosen by file extension as PokieStream does.

use std::path::Path;

use crate::ScriptError;

/// The language a plugin file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Lua 5.4, run in-process.
    Lua,
    /// Python 3, run in a `python3` worker process.
    Python,
}

impl Language {
    /// The language of `path` from its extension (`.lua` or `.py`, case-sensitive like PokieStream).
    pub fn of_path(path: &Path) -> Result<Self, ScriptError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("lua") => Ok(Self::Lua),
            Some("py") => Ok(Self::Python),
            _ => Err(ScriptError::UnsupportedExtension { path: path.to_path_buf() }),
        }
    }
}
