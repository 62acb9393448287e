//! Sink throughput: JSONL on one core, the disk spool, and PostgreSQL and NATS against the
//! local servers (skipped with a note when a server is absent).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiary_event::{Event, Kind, Payload, Transport};
use apiary_sinks::sinks::jsonl::JsonlSink;
use apiary_sinks::{Encoder, SinkConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn event(i: u32) -> Arc<Event> {
    let mut e = Event::new(Kind::SESSION_RX, Arc::from("bench-node"));
    e.service = Some(Arc::from("Telnet"));
    e.protocol = Some(Arc::from("telnet"));
    e.transport = Some(Transport::Tcp);
    e.src_ip = Some("203.0.113.7".parse().unwrap());
    e.src_port = Some((i % 65_536) as u16);
    e.dst_ip = Some("192.0.2.1".parse().unwrap());
    e.dst_port = Some(23);
    e.session = Some(apiary_event::new_id());
    e.payload = Some(Payload::new(b"root\r\nadmin\r\n", 256));
    Arc::new(e)
}

fn logger(text: &str) -> SinkConfig {
    #[derive(serde::Deserialize)]
    struct File {
        logger: Vec<SinkConfig>,
    }
    toml::from_str::<File>(text).unwrap().logger.remove(0)
}

fn up(addr: &str) -> bool {
    let ok = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))
        .is_ok();
    if !ok {
        eprintln!("note: {addr} not reachable; benchmark skipped");
    }
    ok
}

fn jsonl(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut sink =
        JsonlSink::open(dir.path().join("bench.jsonl"), 1 << 30, Duration::from_secs(3600), 2)
            .unwrap();
    let batch: Vec<_> = (0..1024).map(event).collect();
    let mut g = c.benchmark_group("jsonl");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("write_batch_1024", |b| b.iter(|| sink.write_batch(&batch).unwrap()));
    // The encoding alone, to tell CPU from the file system.
    let enc = Encoder::default();
    let mut buf = Vec::with_capacity(1 << 20);
    g.bench_function("encode_only_1024", |b| {
        b.iter(|| {
            buf.clear();
            for e in &batch {
                enc.write_line(e, &mut buf);
            }
            buf.len()
        })
    });
    g.finish();
}

fn remote(c: &mut Criterion, name: &str, cfg: &str, batch_size: usize) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = logger(cfg).build(&[], dir.path()).unwrap();
    let per_iter = 100_000u32;
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(u64::from(per_iter)));
    g.bench_function("send_100k", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Fresh ids each time, so PostgreSQL inserts rather than skips conflicts.
                    let events: Vec<_> = (0..per_iter).map(event).collect();
                    let start = Instant::now();
                    for chunk in events.chunks(batch_size) {
                        spec.sink.send(chunk).await.unwrap();
                    }
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.finish();
}

fn postgres(c: &mut Criterion) {
    if !up("127.0.0.1:5432") {
        return;
    }
    let table = format!("bench_{}", apiary_event::new_id().simple());
    remote(
        c,
        "postgres",
        &format!(
            "[[logger]]\ntype = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:5432/test\"\ntable = \"{table}\"\n"
        ),
        5000,
    );
}

fn nats(c: &mut Criterion) {
    if !up("127.0.0.1:4222") {
        return;
    }
    remote(c, "nats", "[[logger]]\ntype = \"nats\"\nsubject = \"apiary.bench\"\n", 5000);
}

criterion_group!(benches, jsonl, postgres, nats);
criterion_main!(benches);
