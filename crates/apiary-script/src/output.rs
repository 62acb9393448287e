//! Where a plugin's `print` goes: the user's stdout (PokieStream plugins print), the daemon log,
//! or a buffer that tests read.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Destination of text a plugin prints.
#[derive(Debug, Clone, Default)]
pub enum Output {
    /// The process's standard output, as PokieStream plugins expect.
    #[default]
    Stdout,
    /// One `tracing` INFO line per write, for daemons whose stdout is not watched.
    Tracing,
    /// An in-memory buffer (tests, embedding).
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl Output {
    /// A fresh buffer output and the handle to read it.
    pub fn buffer() -> (Self, Arc<Mutex<Vec<u8>>>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        (Self::Buffer(buf.clone()), buf)
    }

    /// Writes `text` as is; failures to write stdout (a closed pipe) are ignored, as print does.
    pub(crate) fn write(&self, text: &[u8]) {
        match self {
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text);
                let _ = out.flush();
            }
            Self::Tracing => {
                let s = String::from_utf8_lossy(text);
                tracing::info!(target: "apiary_script::print", "{}", s.trim_end_matches('\n'));
            }
            Self::Buffer(buf) => {
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(text);
                }
            }
        }
    }
}
