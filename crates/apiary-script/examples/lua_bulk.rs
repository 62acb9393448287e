//! Pushes records through a trivial Lua `receiver_bulk` plugin with one state and prints
//! records/s: `lua_bulk [RECORDS]`. A fixed amount of work, so `valgrind --tool=callgrind`
//! gives a load-independent instructions-per-record figure for the packet host (the criterion
//! bench `packet -- lua_bulk_trivial` times the same path).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use apiary_event::{FlowState, Timestamp, Transport};
use apiary_script::{Output, PacketHost, PacketOptions, Record};

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
    let base = Record {
        src_ip: Some("10.0.0.1".parse().unwrap()),
        dst_ip: Some("10.0.0.2".parse().unwrap()),
        src_port: Some(40000),
        dst_port: Some(80),
        protocol_num: 6,
        transport: Some(Transport::Tcp),
        state: Some(FlowState::New),
        time: Timestamp::parse("2025-08-20T10:00:00.000001").unwrap(),
        session_id: Some("0198c6f0-1234-7abc-8def-0123456789ab".parse().unwrap()),
        payload: Default::default(),
    };
    // The bench's records: one client's connections, each record with its own time.
    let batches: Vec<Vec<Record>> = (0..n)
        .map(|i| Record {
            src_port: Some(i as u16),
            time: Timestamp::from_micros(base.time.as_micros() + i as i64 * 7),
            ..base.clone()
        })
        .collect::<Vec<_>>()
        .chunks(1024)
        .map(<[Record]>::to_vec)
        .collect();
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
