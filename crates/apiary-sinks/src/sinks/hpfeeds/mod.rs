//! hpfeeds: a hand-written publisher (the only crate is AGPL). Connect, read the broker's INFO,
//! answer with AUTH = SHA-1(nonce ‖ secret), then PUBLISH one frame per event.
//!
//! hpfeeds has no acknowledgements; the broker reports a refused publish with an ERROR frame
//! and closes. The sink checks for such a frame (and for a closed socket) before and after each
//! batch, so a refusal fails the batch and it is retried: at-least-once as far as TCP allows.

mod config;
pub mod frame;
mod sink;

pub use config::HpfeedsConfig;
pub use sink::HpfeedsSink;
