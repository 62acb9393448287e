//! Criterion bench: pcap replay + decode + tracking + PokieStream `packet_log` JSONL encoding on
//! one core, over a generated mixed-traffic file held in memory.

use apiary_event::{Event, encode};
use apiary_sensor::{RecordSink, ReplayOptions, SensorConfig, replay, synth};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Encodes every record as it arrives, like the JSONL output does.
struct Encode(Vec<u8>);

impl RecordSink for Encode {
    fn record(&mut self, e: Event) {
        encode::packet_log::json_line(&e, &mut self.0);
    }

    /// The ten `packet_log` keys carry no summary text.
    fn wants_details(&self) -> bool {
        false
    }
}

fn bench(c: &mut Criterion) {
    let packets = 200_000;
    let file = synth::mixed_traffic(packets).to_pcap();
    let cfg = SensorConfig::default();
    let opts = ReplayOptions::default();
    let mut g = c.benchmark_group("sensor");
    g.throughput(Throughput::Elements(packets as u64));
    g.sample_size(10);
    g.bench_function("replay_track_jsonl", |b| {
        b.iter(|| {
            let mut sink = Encode(Vec::with_capacity(16 << 20));
            let stats = replay(&cfg, file.as_slice(), &mut sink, &opts);
            std::hint::black_box((stats.is_ok(), sink.0.len()))
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
