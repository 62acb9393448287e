//! Pushes records through a trivial Lua `receiver_bulk` plugin with one state and prints
//! records/s: `lua_bulk [RECORDS]`. A fixed amount of work, so `valgrind --tool=callgrind`
//! gives a load-independent instructions-per-record figure for the packet host (the criterion
//! bench `packet -- lua_bulk_trivial` times the same path).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use apiary_script::{Output, PacketHost, PacketOptions};

#[path = "../benches/common/mod.rs"]
mod common;

fn main() {
    let n: usize = std::env::args().nth(1).map_or(200_000, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trivial.lua");
    std::fs::write(&path, "n = 0\nfunction receiver_bulk(list) n = n + #list end\n").unwrap();
    let opts = PacketOptions {
        queue_size: n + 1,
        batch_size: 1024,
        lua_workers: 1,
        output: Output::Tracing,
        ..PacketOptions::default()
    };
    let host = PacketHost::start(&path, opts).unwrap();
    let batches = common::batches(n);
    let start = Instant::now();
    for batch in batches {
        assert!(host.submit(batch), "the queue holds every record");
    }
    while host.stats().delivered < n as u64 {
        std::thread::sleep(Duration::from_micros(200));
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = host.finish();
    assert_eq!(stats.failed + stats.dropped + stats.lost, 0);
    println!("{n} records in {secs:.3} s: {:.0} records/s", n as f64 / secs);
}
