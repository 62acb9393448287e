//! Packet-plugin throughput: trivial Lua and Python receivers in bulk mode, records/s through
//! the whole host (queue, conversion, plugin call; for Python also the pipe and the worker).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use apiary_script::{Output, PacketHost, PacketOptions, Record};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const PER_ITER: usize = 20_000;

fn template() -> Record {
    json!({
        "src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "src_port": 40000, "dst_port": 80,
        "protocol_num": 6, "protocol_name": "TCP", "state": "NEW",
        "timestamp": "2025-08-20T10:00:00.000001",
        "session_id": "0198c6f0-1234-7abc-8def-0123456789ab", "payload": null
    })
    .as_object()
    .unwrap()
    .clone()
}

fn run(c: &mut Criterion, name: &str, file: &str, source: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, source).unwrap();
    let opts = PacketOptions {
        queue_size: PER_ITER * 2,
        batch_size: 1024,
        output: Output::Tracing,
        ..PacketOptions::default()
    };
    let host = PacketHost::start(Path::new(&path), opts).unwrap();
    assert!(host.is_bulk());
    let base = template();
    let mut group = c.benchmark_group("packet_plugin");
    group.throughput(Throughput::Elements(PER_ITER as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = host.stats().delivered + PER_ITER as u64;
                let mut sender = host.sender().unwrap();
                for i in 0..PER_ITER {
                    let mut r = base.clone();
                    r.insert("src_port".into(), json!(i));
                    sender.push(r);
                }
                drop(sender);
                while host.stats().delivered < target {
                    assert_eq!(host.stats().dropped, 0, "the bench must not drop");
                    std::thread::yield_now();
                }
            }
            black_box(start.elapsed())
        })
    });
    group.finish();
    let stats = host.finish();
    assert_eq!(stats.failed + stats.dropped + stats.lost, 0);
}

fn lua_bulk(c: &mut Criterion) {
    run(
        c,
        "lua_bulk_trivial",
        "trivial.lua",
        "n = 0\nfunction receiver_bulk(list) n = n + #list end\n",
    );
}

fn python_bulk(c: &mut Criterion) {
    run(
        c,
        "python_bulk_trivial",
        "trivial.py",
        "n = 0\nasync def receiver_bulk(records):\n    global n\n    n += len(records)\n",
    );
}

criterion_group!(benches, lua_bulk, python_bulk);
criterion_main!(benches);
