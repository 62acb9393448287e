//! Packet-plugin throughput: trivial Lua and Python receivers in bulk mode, records/s through
//! the whole host (queue, conversion, plugin call; for Python also the pipe and the worker).
#![allow(clippy::unwrap_used)]

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use apiary_script::{Output, PacketHost, PacketOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PER_ITER: usize = 20_000;

fn run(c: &mut Criterion, name: &str, file: &str, source: &str, lua_workers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, source).unwrap();
    let opts = PacketOptions {
        queue_size: PER_ITER * 2,
        batch_size: 1024,
        lua_workers,
        output: Output::Tracing,
        ..PacketOptions::default()
    };
    let host = PacketHost::start(Path::new(&path), opts).unwrap();
    let mut group = c.benchmark_group("packet_plugin");
    group.throughput(Throughput::Elements(PER_ITER as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Building records is the sensor's cost, not the plugin host's: untimed.
                let batches = common::batches(PER_ITER);
                let target = host.stats().delivered + PER_ITER as u64;
                let start = Instant::now();
                for batch in batches {
                    assert!(host.submit(batch), "the bench must not drop");
                }
                while host.stats().delivered < target {
                    std::thread::sleep(Duration::from_micros(200));
                }
                total += start.elapsed();
            }
            black_box(total)
        })
    });
    group.finish();
    let stats = host.finish();
    assert_eq!(stats.failed + stats.dropped + stats.lost, 0);
}

const LUA_TRIVIAL: &str = "n = 0\nfunction receiver_bulk(list) n = n + #list end\n";

fn lua_bulk(c: &mut Criterion) {
    run(c, "lua_bulk_trivial", "trivial.lua", LUA_TRIVIAL, 1);
    run(c, "lua_bulk_trivial_2_states", "trivial.lua", LUA_TRIVIAL, 2);
}

fn python_bulk(c: &mut Criterion) {
    run(
        c,
        "python_bulk_trivial",
        "trivial.py",
        "n = 0\nasync def receiver_bulk(records):\n    global n\n    n += len(records)\n",
        1,
    );
}

/// Anchors: the same trivial receivers called once per record, PokieStream's convention.
fn per_record(c: &mut Criterion) {
    run(c, "lua_per_record_trivial", "one.lua", "n = 0\nfunction receiver(p) n = n + 1 end\n", 1);
    run(
        c,
        "python_per_record_trivial",
        "one.py",
        "n = 0\nasync def receiver(packet_log):\n    global n\n    n += 1\n",
        1,
    );
}

criterion_group!(benches, lua_bulk, python_bulk, per_record);
criterion_main!(benches);
