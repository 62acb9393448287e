//! Replays a capture with tracking and writes PokieStream `packet_log` JSON lines to a file,
//! printing packets/s: `replay_jsonl FILE OUT`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use apiary_event::{Event, encode};
use apiary_sensor::{RecordSink, ReplayOptions, SensorConfig, replay_file};
use std::io::Write;

struct Jsonl(std::io::BufWriter<std::fs::File>, Vec<u8>);

impl RecordSink for Jsonl {
    fn record(&mut self, e: Event) {
        self.1.clear();
        encode::packet_log::json_line(&e, &mut self.1);
        let _ = self.0.write_all(&self.1);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: replay_jsonl FILE OUT");
        std::process::exit(2);
    };
    let mut sink = Jsonl(std::io::BufWriter::new(std::fs::File::create(output)?), Vec::new());
    let start = std::time::Instant::now();
    let stats = replay_file(
        &SensorConfig::default(),
        input.as_ref(),
        &mut sink,
        &ReplayOptions::default(),
    )?;
    sink.0.flush()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} packets, {} records in {secs:.3} s: {:.0} packets/s",
        stats.packets,
        stats.records,
        stats.packets as f64 / secs
    );
    Ok(())
}
