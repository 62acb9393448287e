//! apiary-core integration tests: one test binary (see ripgrep's layout) with a module per area.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

mod http;
mod http_browser;
mod mmdb;
mod node_server;
mod store;
mod util;
