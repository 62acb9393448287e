//! Sink throughput: JSONL on one core (the writer alone and the whole emit-to-file pipeline),
//! and PostgreSQL and NATS against the local servers (skipped with a note when a server is
//! absent). Select groups by name: `cargo bench -p apiary-sinks --bench sinks -- jsonl`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiary_event::{Event, Kind, Payload, Transport};
use apiary_sinks::sinks::jsonl::JsonlSink;
use apiary_sinks::{Encoder, SinkConfig};
use criterion::measurement::{Measurement, ValueFormatter};
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

/// CPU time of the benchmarking thread (user and system, `CLOCK_THREAD_CPUTIME_ID`).
///
/// The machine is shared: wall-clock figures there measure the other builds as much as the
/// code, while the thread's own CPU time is what "events per second on one core" means. It
/// leaves out time spent asleep, such as the kernel throttling a writer for dirty pages,
/// which is why the wall-clock group runs too.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e6);
        "ms (CPU)"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let per = match t {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => *n,
            _ => 1,
        } as f64;
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v / 1e3);
        "K/CPU-s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn jsonl(c: &mut Criterion) {
    jsonl_in("jsonl", c);
}

fn jsonl_cpu(c: &mut Criterion<ThreadCpu>) {
    jsonl_in("jsonl_cpu", c);
}

fn jsonl_in<M: Measurement + 'static>(group: &str, c: &mut Criterion<M>) {
    let batch: Vec<_> = (0..1024).map(event).collect();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(batch.len() as u64));
    // The same writer on the VM's disk and on tmpfs: the difference is what the disk (dirty
    // page write-back) costs, not the CPU.
    let disk = tempfile::tempdir().unwrap();
    let shm = std::path::Path::new("/dev/shm");
    let shm = shm.is_dir().then(|| tempfile::tempdir_in(shm).unwrap());
    for (name, dir) in
        [("write_batch_1024_disk", Some(&disk)), ("write_batch_1024_tmpfs", shm.as_ref())]
    {
        let Some(dir) = dir else {
            eprintln!("note: /dev/shm missing; {name} skipped");
            continue;
        };
        // Rotation at 256 MiB keeping one old file bounds the space either run takes.
        let mut sink = JsonlSink::open(
            dir.path().join("bench.jsonl"),
            256 << 20,
            Duration::from_secs(3600),
            1,
        )
        .unwrap();
        g.bench_function(name, |b| b.iter(|| sink.write_batch(&batch).unwrap()));
    }
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
    // Anchor: the same bytes through serde_json's derived Serialize impls (the encoder before
    // the hand-written one; the impls themselves no longer allocate).
    g.bench_function("encode_serde_anchor_1024", |b| {
        b.iter(|| {
            buf.clear();
            for e in &batch {
                serde_json::to_writer(&mut buf, &**e).unwrap();
                buf.push(b'\n');
            }
            buf.len()
        })
    });
    g.finish();
}

/// The whole path a listener's event takes to the file: `Emitter::emit` (the `Arc`, the
/// queue hand-off) on the benchmark thread, the sink task batching and writing on one tokio
/// worker. Wall clock from the first emit until the sink has confirmed the last event; the
/// queue holds a whole iteration, so nothing is dropped (checked).
fn jsonl_pipeline(c: &mut Criterion) {
    let per_iter = 100_000u64;
    let template = (*event(1)).clone();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut g = c.benchmark_group("jsonl_pipeline");
    g.throughput(Throughput::Elements(per_iter));
    let disk = tempfile::tempdir().unwrap();
    let shm = std::path::Path::new("/dev/shm");
    let shm = shm.is_dir().then(|| tempfile::tempdir_in(shm).unwrap());
    for (name, dir) in [("emit_to_disk_100k", Some(&disk)), ("emit_to_tmpfs_100k", shm.as_ref())] {
        let Some(dir) = dir else { continue };
        let spec = logger(&format!(
            "[[logger]]\ntype = \"jsonl\"\npath = \"{}/p.jsonl\"\nmax_bytes = 268435456\nkeep = 1\nspool = false\nqueue = 262144\n",
            dir.path().display()
        ))
        .build(&[], dir.path())
        .unwrap();
        let pipeline = {
            let _guard = rt.enter();
            apiary_sinks::Pipeline::start(vec![spec])
        };
        let emitter = pipeline.emitter();
        let delivered = || pipeline.stats()[0].1.delivered;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut want = delivered();
                for _ in 0..iters {
                    for _ in 0..per_iter {
                        emitter.emit(template.clone());
                    }
                    want += per_iter;
                    while delivered() < want {
                        std::thread::yield_now();
                    }
                }
                start.elapsed()
            })
        });
        let dropped = pipeline.stats()[0].1.dropped;
        assert_eq!(dropped, 0, "the queue overflowed; the figure would not count every event");
        rt.block_on(pipeline.shutdown(Duration::from_secs(5)));
    }
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
    // One fresh table per variant, dropped afterwards; `connections = 1` against the default 2
    // shows what the second server core adds on this machine.
    for connections in [1, 2] {
        let table = format!("bench_{}", apiary_event::new_id().simple());
        remote(
            c,
            &format!("postgres_{connections}conn"),
            &format!(
                "[[logger]]\ntype = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:5432/test\"\ntable = \"{table}\"\nconnections = {connections}\n"
            ),
            5000,
        );
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use sqlx::Connection as _;
            let url = "postgres://postgres@127.0.0.1:5432/test";
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let drop = format!("DROP TABLE IF EXISTS {table}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await.unwrap();
        });
    }
}

fn nats(c: &mut Criterion) {
    if !up("127.0.0.1:4222") {
        return;
    }
    remote(c, "nats", "[[logger]]\ntype = \"nats\"\nsubject = \"apiary.bench\"\n", 5000);
}

criterion_group!(benches, jsonl, jsonl_pipeline, postgres, nats);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = jsonl_cpu
}
criterion_main!(benches, cpu);
