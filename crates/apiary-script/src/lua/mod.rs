//! Lua plugins, run in-process in sandboxed Lua 5.4 states.

mod convert;
pub(crate) mod packet;
pub(crate) mod pool;
mod sandbox;
pub(crate) mod service;
