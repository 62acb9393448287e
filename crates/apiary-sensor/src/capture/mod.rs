//! Packet sources: pcap/pcapng files and live AF_PACKET rings, plus run-time BPF compilation.

pub mod afpacket;
pub mod bpf;
pub mod pcap;
