//! Integration tests: a real pot on loopback, spoken to with raw bytes.
#![allow(clippy::unwrap_used, missing_docs)]

mod dbs;
mod emulators;
mod fetch;
mod fidelity;
mod fidelity5;
mod ftp;
mod runtime;
mod script;
mod services;
mod ssh;
mod support;
mod tls;
mod udp_safety;
