//! Integration tests of the sensor: golden replays of generated captures, config
//! compatibility and live capture.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod compat;
mod live;
mod plugins;
mod replay;
mod support;
