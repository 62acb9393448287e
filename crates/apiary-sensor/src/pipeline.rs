//! One capture worker's packet path: decode, PokieStream's filters, then the flow table.

use std::sync::Arc;

use apiary_event::Timestamp;

use crate::config::SensorConfig;
use crate::decode::{self, LinkType, Skip};
use crate::filter::{PacketFilter, PayloadFilters};
use crate::record::{Emitter, RecordSink};
use crate::track::{Flush, TrackStats, Tracker};

/// Counters of one worker (or several added together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets handed to the sensor.
    pub packets: u64,
    /// Bytes captured.
    pub bytes: u64,
    /// Frames without IPv4 or IPv6 (ARP, ...).
    pub not_ip: u64,
    /// Truncated frames.
    pub truncated: u64,
    /// Malformed frames.
    pub malformed: u64,
    /// IP fragments (not reassembled).
    pub fragments: u64,
    /// IP packets with an untracked transport.
    pub other_transport: u64,
    /// Frames of a link type the decoder does not know.
    pub unknown_link: u64,
    /// Replayed packets rejected by the BPF expression.
    pub bpf_rejected: u64,
    /// Packets rejected by the address, protocol or port filters.
    pub filtered: u64,
    /// Records emitted.
    pub records: u64,
    /// Flows open now.
    pub flows_open: u64,
    /// Records dropped because the queue was full.
    pub queue_drops: u64,
    /// Packets the kernel dropped (live capture).
    pub kernel_drops: u64,
    /// Flow table counters.
    pub track: TrackStats,
}

impl Stats {
    /// Adds another worker's counters.
    pub fn add(&mut self, o: &Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.not_ip += o.not_ip;
        self.truncated += o.truncated;
        self.malformed += o.malformed;
        self.fragments += o.fragments;
        self.other_transport += o.other_transport;
        self.unknown_link += o.unknown_link;
        self.filtered += o.filtered;
        self.bpf_rejected += o.bpf_rejected;
        self.records += o.records;
        self.flows_open += o.flows_open;
        self.queue_drops += o.queue_drops;
        self.kernel_drops += o.kernel_drops;
        let (t, u) = (&mut self.track, &o.track);
        t.flows_created += u.flows_created;
        t.flows_expired += u.flows_expired;
        t.flows_evicted += u.flows_evicted;
        t.tcp_untracked += u.tcp_untracked;
        t.icmpv6_ignored += u.icmpv6_ignored;
        t.payload_names += u.payload_names;
        t.payload_suppressed += u.payload_suppressed;
        t.reassembly_abandoned += u.reassembly_abandoned;
    }
}

/// Decode, filter and track for one worker; call [`Pipeline::packet`] for every frame.
pub struct Pipeline {
    filter: PacketFilter,
    tracker: Tracker,
    stats: Stats,
}

impl Pipeline {
    /// A pipeline for `cfg` (validated), stamping `node` on records; `worker` keeps ids of
    /// parallel workers apart.
    pub fn new(cfg: &SensorConfig, node: Arc<str>, worker: u8) -> Self {
        let emitter = Emitter::new(node, Arc::from(cfg.name.as_str()), worker);
        Self {
            filter: PacketFilter::new(&cfg.filter),
            tracker: Tracker::new(&cfg.tracking, PayloadFilters::new(&cfg.filter), emitter),
            stats: Stats::default(),
        }
    }

    /// Handles one captured frame.
    #[inline]
    pub fn packet(
        &mut self,
        ts: Timestamp,
        link: LinkType,
        frame: &[u8],
        sink: &mut dyn RecordSink,
    ) {
        self.stats.packets += 1;
        self.stats.bytes += frame.len() as u64;
        match decode::decode(link, frame) {
            Ok(p) => {
                if self.filter.accept(&p) {
                    self.tracker.packet(ts, &p, sink);
                } else {
                    self.stats.filtered += 1;
                    // Filtered packets still move the clock for expiry.
                    self.tracker.expire(ts, sink);
                }
            }
            Err(skip) => {
                match skip {
                    Skip::NotIp => self.stats.not_ip += 1,
                    Skip::Truncated => self.stats.truncated += 1,
                    Skip::Malformed => self.stats.malformed += 1,
                    Skip::Fragment => self.stats.fragments += 1,
                    Skip::OtherTransport => self.stats.other_transport += 1,
                }
                self.tracker.expire(ts, sink);
            }
        }
    }

    /// Counts a frame the BPF filter rejected (replays; live filtering happens in the kernel).
    pub fn bpf_rejected(&mut self) {
        self.stats.packets += 1;
        self.stats.bpf_rejected += 1;
    }

    /// Counts a frame of an unknown link type.
    pub fn unknown_link(&mut self) {
        self.stats.packets += 1;
        self.stats.unknown_link += 1;
    }

    /// Moves the clock without a packet (idle live capture): reports expired flows.
    pub fn tick(&mut self, now: Timestamp, sink: &mut dyn RecordSink) {
        self.tracker.expire(now, sink);
    }

    /// Reports every open flow.
    pub fn flush(&mut self, how: Flush, sink: &mut dyn RecordSink) {
        self.tracker.flush(how, sink);
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.records = self.tracker.records();
        s.flows_open = self.tracker.open_flows() as u64;
        s.track = self.tracker.stats();
        s
    }
}
