//! Integration tests of apiary-script with real Lua and a real python3 (one test binary).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod check;
mod lua_service;
mod packet;
mod python_service;
mod support;
