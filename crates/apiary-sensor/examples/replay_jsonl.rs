//! Replays a capture with tracking and writes PokieStream `packet_log` JSON lines to a file,
//! printing packets/s: `replay_jsonl FILE OUT`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use apiary_event::{Event, encode};
use apiary_sensor::{RecordSink, ReplayOptions, SensorConfig, replay_file};
use std::io::Write;

/// Encodes lines into one buffer and writes it out in 64 KiB pieces, like the sensor's output.
struct Jsonl {
    file: std::fs::File,
    buf: Vec<u8>,
    error: Option<std::io::Error>,
}

impl RecordSink for Jsonl {
    fn record(&mut self, e: Event) {
        encode::packet_log::json_line(&e, &mut self.buf);
        if self.buf.len() >= 1 << 16 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.file.write_all(&self.buf) {
            self.error.get_or_insert(e);
        }
        self.buf.clear();
    }

    /// The ten `packet_log` keys carry no summary text.
    fn wants_details(&self) -> bool {
        false
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: replay_jsonl FILE OUT");
        std::process::exit(2);
    };
    let file = std::fs::File::create(output)?;
    let mut sink = Jsonl { file, buf: Vec::with_capacity(1 << 17), error: None };
    let start = std::time::Instant::now();
    let stats = replay_file(
        &SensorConfig::default(),
        input.as_ref(),
        &mut sink,
        &ReplayOptions::default(),
    )?;
    sink.flush();
    if let Some(e) = sink.error {
        return Err(e.into());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} packets, {} records in {secs:.3} s: {:.0} packets/s",
        stats.packets,
        stats.records,
        stats.packets as f64 / secs
    );
    Ok(())
}
