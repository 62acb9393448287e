//! Writes the benchmark's mixed-traffic capture: `gen_pcap FILE [PACKETS]`.
#![allow(clippy::print_stderr)]

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: gen_pcap FILE [PACKETS]");
        std::process::exit(2);
    };
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    std::fs::write(&path, apiary_sensor::synth::mixed_traffic(n).to_pcap())?;
    eprintln!("wrote {n} packets to {path}");
    Ok(())
}
