//! The flow table: PokieStream's TCP and UDP state machines (reference sections 6 and 7),
//! ICMP records, payload filters, summaries, timeouts and a hard bound with eviction.
//!
//! All times are packet times, so replaying a file gives the same records every run.
//! Expiry is exact: before each packet every flow whose deadline has passed is reported at
//! its deadline, from a min-heap with lazy deletion (stale entries are skipped or re-queued).

pub mod community_id;
pub mod history;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;

use apiary_event::encode::packet_log::Field;
use apiary_event::{FlowState, Timestamp, Transport};
use uuid::Uuid;

use crate::config::TrackingConfig;
use crate::decode::tcp_flags::{ACK, FIN, RST, SYN};
use crate::decode::{L4, Packet, addr_bytes};
use crate::extract::{self, Extract, PayloadKind};
use crate::filter::{NameFilter, PayloadFilters};
use crate::record::{Community, Emitter, RecordSink, Spec, Summary};
use history::History;

const MICROS: i64 = 1_000_000;

/// A payload extractor over the initiator's bytes so far.
type Extractor = fn(&[u8]) -> Extract;

/// Flow key: TCP keys are unordered (both directions share one session, endpoints sorted);
/// UDP keys are directional, as PokieStream implements them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey {
    proto: u8,
    a: IpAddr,
    ap: u16,
    b: IpAddr,
    bp: u16,
}

impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Three words for IPv4 keys: cheaper than hashing the enums field by field.
        let word = |ip: IpAddr| -> (u64, u64) {
            match ip {
                IpAddr::V4(a) => (u64::from(u32::from(a)), 0),
                IpAddr::V6(a) => {
                    let v = u128::from(a);
                    (v as u64, (v >> 64) as u64 | 1 << 63)
                }
            }
        };
        let (a0, a1) = word(self.a);
        let (b0, b1) = word(self.b);
        state.write_u64(a0 ^ b0.rotate_right(32));
        state.write_u64(a1 ^ b1.rotate_left(17));
        state
            .write_u64(u64::from(self.ap) | u64::from(self.bp) << 16 | u64::from(self.proto) << 32);
    }
}

/// A seeded folded-multiply hasher (the construction of foldhash and ahash's fallback): fast
/// on the three words of a flow key, and keyed per process so an attacker cannot precompute
/// colliding flows.
#[derive(Clone)]
struct FlowHasherBuilder(u64, u64);

impl FlowHasherBuilder {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let rs = std::collections::hash_map::RandomState::new();
        let mut h = rs.build_hasher();
        h.write_u64(0x243f_6a88_85a3_08d3);
        let a = h.finish();
        h.write_u64(a);
        Self(a | 1, h.finish())
    }
}

impl std::hash::BuildHasher for FlowHasherBuilder {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher { state: self.1, key: self.0 }
    }
}

struct FlowHasher {
    state: u64,
    key: u64,
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a).wrapping_mul(u128::from(b));
    (p as u64) ^ ((p >> 64) as u64)
}

impl std::hash::Hasher for FlowHasher {
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.state = fold(self.state ^ v, self.key);
    }

    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w.iter_mut().zip(c).for_each(|(d, s)| *d = *s);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold(self.state, self.key.rotate_left(23) ^ 0x9e37_79b9_7f4a_7c15)
    }
}

impl FlowKey {
    fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        if (src, sport) <= (dst, dport) {
            Self { proto: 6, a: src, ap: sport, b: dst, bp: dport }
        } else {
            Self { proto: 6, a: dst, ap: dport, b: src, bp: sport }
        }
    }

    fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        Self { proto: 17, a: src, ap: sport, b: dst, bp: dport }
    }

    /// FNV-1a over the key: stable across runs and machines, for id entropy.
    fn stable_hash(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u32::from(*b);
                h = h.wrapping_mul(0x0100_0193);
            }
        };
        let (a, al) = addr_bytes(self.a);
        let (b, bl) = addr_bytes(self.b);
        eat(&[self.proto]);
        eat(a.get(..al).unwrap_or_default());
        eat(&self.ap.to_be_bytes());
        eat(b.get(..bl).unwrap_or_default());
        eat(&self.bp.to_be_bytes());
        h
    }
}

/// Whether endpoint `a` sorts at or before `b` when both are compared as PokieStream's
/// `(str(ip), str(port))` tuples; the text goes into reused buffers, not new strings.
fn text_order(a: (IpAddr, u16), b: (IpAddr, u16), scratch: &mut [Vec<u8>; 2]) -> bool {
    let [x, y] = scratch;
    let split = |(ip, port): (IpAddr, u16), buf: &mut Vec<u8>| {
        buf.clear();
        Field::Ip(ip).write_text(buf);
        let at = buf.len();
        Field::Int(u32::from(port)).write_text(buf);
        at
    };
    let (i, j) = (split(a, x), split(b, y));
    (x.get(..i), x.get(i..)) <= (y.get(..j), y.get(j..))
}

/// Records held back while a TCP payload filter waits for the initiator's first bytes.
#[derive(Debug)]
struct Pending {
    new_at: Timestamp,
    new_proto: u8,
    est: Option<(Timestamp, u8)>,
    buf: Vec<u8>,
    next_seq: Option<u32>,
}

#[derive(Debug)]
struct FlowEntry {
    id: Uuid,
    seq: u64,
    init: (IpAddr, u16),
    resp: (IpAddr, u16),
    established: bool,
    first: Timestamp,
    last: Timestamp,
    deadline: i64,
    timeout: i64,
    orig_packets: u64,
    orig_bytes: u64,
    resp_packets: u64,
    resp_bytes: u64,
    history: History,
    pending: Option<Box<Pending>>,
    suppressed: bool,
}

impl FlowEntry {
    fn summary(&self, proto: u8) -> Summary {
        Summary {
            orig_packets: self.orig_packets,
            orig_bytes: self.orig_bytes,
            resp_packets: self.resp_packets,
            resp_bytes: self.resp_bytes,
            duration_us: self.last.micros_since(self.first),
            history: self.history,
            community: Community::Ports(self.init, self.resp, proto),
        }
    }
}

/// Counters kept by the tracker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackStats {
    /// Flows created.
    pub flows_created: u64,
    /// Flows reported expired after their timeout.
    pub flows_expired: u64,
    /// Flows evicted because the table was full.
    pub flows_evicted: u64,
    /// TCP packets of sessions whose SYN was never seen (never reported, as in PokieStream).
    pub tcp_untracked: u64,
    /// ICMPv6 packets other than echo request/reply (not reported, as in PokieStream).
    pub icmpv6_ignored: u64,
    /// Payload names extracted.
    pub payload_names: u64,
    /// Flows whose records were dropped by `drop_unmatched`.
    pub payload_suppressed: u64,
    /// Reassemblies abandoned (gap, cap or buffer budget).
    pub reassembly_abandoned: u64,
}

/// Why open flows are being flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// End of a replay: each flow expires at its own deadline, as if time went on.
    AtDeadline,
    /// Shutdown of a live capture: flows are reported now with reason `shutdown`.
    Shutdown(Timestamp),
}

/// The flow table of one capture worker.
pub struct Tracker {
    tcp_timeout: i64,
    tcp_idle: bool,
    udp_timeout: i64,
    udp_dns_timeout: i64,
    max_flows: usize,
    reassembly_bytes: usize,
    max_reassembly_flows: usize,
    payload: PayloadFilters,
    flows: HashMap<FlowKey, FlowEntry, FlowHasherBuilder>,
    heap: BinaryHeap<Reverse<(i64, u64, FlowKey)>>,
    emitter: Emitter,
    counter: u64,
    reassembling: usize,
    stats: TrackStats,
    /// Reused buffers for comparing endpoints as text.
    scratch: [Vec<u8>; 2],
}

impl Tracker {
    pub(crate) fn new(cfg: &TrackingConfig, payload: PayloadFilters, emitter: Emitter) -> Self {
        let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX / MICROS).saturating_mul(MICROS);
        Self {
            tcp_timeout: secs(cfg.tcp_timeout_secs),
            tcp_idle: cfg.tcp_idle,
            udp_timeout: secs(cfg.udp_timeout_secs),
            udp_dns_timeout: secs(cfg.udp_dns_timeout_secs),
            max_flows: cfg.max_flows.max(1),
            reassembly_bytes: cfg.reassembly_bytes.min(1 << 20),
            max_reassembly_flows: cfg.max_reassembly_flows,
            payload,
            flows: HashMap::with_capacity_and_hasher(
                cfg.max_flows.min(65_536),
                FlowHasherBuilder::new(),
            ),
            heap: BinaryHeap::new(),
            emitter,
            counter: 0,
            reassembling: 0,
            stats: TrackStats::default(),
            scratch: [Vec::with_capacity(64), Vec::with_capacity(64)],
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> TrackStats {
        self.stats
    }

    /// Flows currently open.
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Records emitted so far.
    pub fn records(&self) -> u64 {
        self.emitter.emitted
    }

    /// Handles one packet that passed the filters.
    pub fn packet(&mut self, ts: Timestamp, p: &Packet<'_>, sink: &mut dyn RecordSink) {
        self.expire(ts, sink);
        match p.l4 {
            L4::Tcp { sport, dport, flags, seq, payload } => {
                self.tcp(ts, p, sport, dport, flags, seq, payload, sink);
            }
            L4::Udp { sport, dport, payload } => self.udp(ts, p, sport, dport, payload, sink),
            L4::Icmp { v6, ty, code } => self.icmp(ts, p, v6, ty, code, sink),
        }
    }

    /// Reports every flow whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Timestamp, sink: &mut dyn RecordSink) {
        let now = now.as_micros();
        while let Some(Reverse((dl, _, _))) = self.heap.peek() {
            if *dl > now {
                break;
            }
            let Some(Reverse((_, seq, key))) = self.heap.pop() else { break };
            let Some(f) = self.flows.get(&key) else { continue };
            if f.seq != seq {
                continue;
            }
            if f.deadline > now {
                self.heap.push(Reverse((f.deadline, seq, key)));
                continue;
            }
            let at = Timestamp::from_micros(f.deadline);
            self.stats.flows_expired += 1;
            self.end_flow(key, at, None, sink);
        }
    }

    /// Reports every open flow (end of a replay, or shutdown).
    pub fn flush(&mut self, how: Flush, sink: &mut dyn RecordSink) {
        match how {
            Flush::AtDeadline => self.expire(Timestamp::from_micros(i64::MAX), sink),
            Flush::Shutdown(now) => {
                self.expire(now, sink);
                let mut open: Vec<(i64, u64, FlowKey)> =
                    self.flows.iter().map(|(k, f)| (f.deadline, f.seq, *k)).collect();
                open.sort_unstable();
                for (_, _, key) in open {
                    self.end_flow(key, now, Some("shutdown"), sink);
                }
                self.heap.clear();
            }
        }
    }

    fn new_flow(
        &mut self,
        key: FlowKey,
        ts: Timestamp,
        init: (IpAddr, u16),
        resp: (IpAddr, u16),
        timeout: i64,
        sink: &mut dyn RecordSink,
    ) -> Uuid {
        if self.flows.len() >= self.max_flows {
            self.evict_one(ts, sink);
        }
        self.counter += 1;
        self.stats.flows_created += 1;
        let id = self.emitter.session_id(ts, self.counter, key.stable_hash());
        let deadline = ts.as_micros().saturating_add(timeout);
        self.flows.insert(
            key,
            FlowEntry {
                id,
                seq: self.counter,
                init,
                resp,
                established: false,
                first: ts,
                last: ts,
                deadline,
                timeout,
                orig_packets: 0,
                orig_bytes: 0,
                resp_packets: 0,
                resp_bytes: 0,
                history: History::default(),
                pending: None,
                suppressed: false,
            },
        );
        self.heap.push(Reverse((deadline, self.counter, key)));
        if self.heap.len() > self.flows.len() * 2 + 4096 {
            // Closed flows leave stale heap entries; rebuild so the heap stays bounded too.
            self.heap = self.flows.iter().map(|(k, f)| Reverse((f.deadline, f.seq, *k))).collect();
        }
        id
    }

    /// Removes the flow closest to its deadline and reports it with reason `evicted`.
    fn evict_one(&mut self, now: Timestamp, sink: &mut dyn RecordSink) {
        while let Some(Reverse((dl, seq, key))) = self.heap.pop() {
            let Some(f) = self.flows.get(&key) else { continue };
            if f.seq != seq {
                continue;
            }
            if f.deadline > dl {
                self.heap.push(Reverse((f.deadline, seq, key)));
                continue;
            }
            self.stats.flows_evicted += 1;
            self.end_flow(key, now, Some("evicted"), sink);
            return;
        }
    }

    /// Removes a flow and writes its EXPIRED record (timeout, eviction or shutdown).
    fn end_flow(
        &mut self,
        key: FlowKey,
        at: Timestamp,
        reason: Option<&'static str>,
        sink: &mut dyn RecordSink,
    ) {
        let Some(mut f) = self.flows.remove(&key) else { return };
        self.release(&mut f, None, sink);
        if f.suppressed {
            return;
        }
        let (src, sport, dst, dport, transport) = if key.proto == 6 {
            // PokieStream reports TCP expiry in its canonical key order: (ip, port) compared
            // as strings, smaller first.
            if text_order((key.a, key.ap), (key.b, key.bp), &mut self.scratch) {
                (key.a, key.ap, key.b, key.bp, Transport::Tcp)
            } else {
                (key.b, key.bp, key.a, key.ap, Transport::Tcp)
            }
        } else {
            (f.init.0, f.init.1, f.resp.0, f.resp.1, Transport::Udp)
        };
        let summary = f.summary(key.proto);
        self.emitter.emit(
            Spec {
                time: at,
                state: Some(FlowState::Expired),
                src,
                sport: Some(sport),
                dst,
                dport: Some(dport),
                protocol_num: key.proto,
                transport,
                session: Some(f.id),
                payload: None,
                summary: Some(summary),
                reason,
                icmp: None,
                community_id: None,
            },
            sink,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        ts: Timestamp,
        p: &Packet<'_>,
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        payload: &[u8],
        sink: &mut dyn RecordSink,
    ) {
        let key = FlowKey::tcp(p.src, sport, p.dst, dport);
        let syn_only = flags & SYN != 0 && flags & ACK == 0;
        // One lookup for the usual packet of a known flow.
        let Some(f) = self.flows.get_mut(&key) else {
            if !syn_only {
                self.stats.tcp_untracked += 1;
                return;
            }
            // Rule 1: a SYN without a session creates it.
            let timeout = self.tcp_timeout;
            let id = self.new_flow(key, ts, (p.src, sport), (p.dst, dport), timeout, sink);
            let watch = self.payload.tcp_watches(dport);
            if let Some(f) = self.flows.get_mut(&key) {
                f.orig_packets = 1;
                f.orig_bytes = u64::from(p.ip_len);
                f.history.tcp(flags, payload.len(), true);
                if watch {
                    f.pending = Some(Box::new(Pending {
                        new_at: ts,
                        new_proto: p.ip_proto,
                        est: None,
                        buf: Vec::new(),
                        next_seq: None,
                    }));
                }
            }
            if !watch {
                self.emitter.emit(
                    Spec {
                        time: ts,
                        state: Some(FlowState::New),
                        src: p.src,
                        sport: Some(sport),
                        dst: p.dst,
                        dport: Some(dport),
                        protocol_num: p.ip_proto,
                        transport: Transport::Tcp,
                        session: Some(id),
                        payload: None,
                        summary: None,
                        reason: None,
                        icmp: None,
                        community_id: None,
                    },
                    sink,
                );
            }
            return;
        };
        // Every packet counts in its direction and moves the flow's clock, in place.
        let from_init = (p.src, sport) == f.init;
        if from_init {
            f.orig_packets += 1;
            f.orig_bytes += u64::from(p.ip_len);
        } else {
            f.resp_packets += 1;
            f.resp_bytes += u64::from(p.ip_len);
        }
        f.last = ts;
        f.history.tcp(flags, payload.len(), from_init);
        if self.tcp_idle {
            f.deadline = ts.as_micros().saturating_add(f.timeout);
        }
        // Fast path: most packets change nothing else.
        let quiet = f.pending.is_none()
            && (syn_only || (f.established || from_init) && flags & (FIN | RST) == 0);
        if quiet {
            return;
        }
        let Some(mut f) = self.flows.remove(&key) else { return };
        if from_init && !payload.is_empty() && f.pending.is_some() {
            self.feed_payload(&mut f, seq, payload, sink);
        }
        let mut end: Option<FlowState> = None;
        if syn_only {
            // Rule 2: a retransmitted or reused SYN changes nothing.
        } else if !f.established && !from_init {
            // Rule 3: any packet from the responder establishes, even a RST.
            f.established = true;
            f.deadline = ts.as_micros().saturating_add(f.timeout);
            match f.pending.as_mut() {
                Some(pend) => pend.est = Some((ts, p.ip_proto)),
                None if !f.suppressed => self.emitter.emit(
                    Spec {
                        time: ts,
                        state: Some(FlowState::Established),
                        src: p.src,
                        sport: Some(sport),
                        dst: p.dst,
                        dport: Some(dport),
                        protocol_num: p.ip_proto,
                        transport: Transport::Tcp,
                        session: Some(f.id),
                        payload: None,
                        summary: None,
                        reason: None,
                        icmp: None,
                        community_id: None,
                    },
                    sink,
                ),
                None => {}
            }
        } else if flags & FIN != 0 {
            end = Some(FlowState::Close);
        } else if flags & RST != 0 {
            end = Some(FlowState::Abort);
        }
        let Some(state) = end else {
            // A later deadline stays in the flow only: expire() re-queues the heap entry lazily.
            self.flows.insert(key, f);
            return;
        };
        // Rules 4 and 5: the first FIN or RST ends the session; the rest of the teardown is silent.
        self.release(&mut f, None, sink);
        if f.suppressed {
            return;
        }
        let summary = f.summary(6);
        self.emitter.emit(
            Spec {
                time: ts,
                state: Some(state),
                src: p.src,
                sport: Some(sport),
                dst: p.dst,
                dport: Some(dport),
                protocol_num: p.ip_proto,
                transport: Transport::Tcp,
                session: Some(f.id),
                payload: None,
                summary: Some(summary),
                reason: None,
                icmp: None,
                community_id: None,
            },
            sink,
        );
    }

    /// Feeds initiator bytes to the TCP payload extractors; decides when they can.
    fn feed_payload(
        &mut self,
        f: &mut FlowEntry,
        seq: u32,
        payload: &[u8],
        sink: &mut dyn RecordSink,
    ) {
        let Some(pend) = f.pending.as_mut() else { return };
        let port = f.resp.1;
        // Fast path: the first segment alone decides, no buffer.
        if pend.next_seq.is_none() {
            let found = self.extract_tcp(port, payload);
            if found != Extract::NeedMore {
                self.decide(f, found, sink);
                return;
            }
            if self.reassembling >= self.max_reassembly_flows
                || payload.len() >= self.reassembly_bytes
            {
                self.stats.reassembly_abandoned += 1;
                self.decide(f, Extract::NoName, sink);
                return;
            }
            self.reassembling += 1;
            if let Some(pend) = f.pending.as_mut() {
                pend.buf = Vec::with_capacity(self.reassembly_bytes.min(4096));
                pend.buf.extend_from_slice(payload);
                pend.next_seq = Some(seq.wrapping_add(payload.len() as u32));
            }
            return;
        }
        let Some(next) = pend.next_seq else { return };
        let offset = next.wrapping_sub(seq) as i32;
        let fresh = if offset < 0 {
            // A gap: bytes are missing and cannot be reassembled.
            self.stats.reassembly_abandoned += 1;
            self.decide(f, Extract::NoName, sink);
            return;
        } else {
            payload.get(offset as usize..).unwrap_or_default()
        };
        if fresh.is_empty() {
            return;
        }
        if pend.buf.len() + fresh.len() > self.reassembly_bytes {
            self.stats.reassembly_abandoned += 1;
            self.decide(f, Extract::NoName, sink);
            return;
        }
        pend.buf.extend_from_slice(fresh);
        pend.next_seq = Some(next.wrapping_add(fresh.len() as u32));
        let buf = std::mem::take(&mut pend.buf);
        let found = self.extract_tcp(port, &buf);
        if let Some(pend) = f.pending.as_mut() {
            pend.buf = buf;
        }
        if found != Extract::NeedMore {
            self.decide(f, found, sink);
        }
    }

    fn extract_tcp(&self, port: u16, bytes: &[u8]) -> Extract {
        let mut need_more = false;
        let filters: [(&Option<NameFilter>, Extractor); 3] = [
            (&self.payload.dns, extract::dns::tcp_question),
            (&self.payload.tls, extract::tls::client_hello_sni),
            (&self.payload.http, extract::http::request_host),
        ];
        for (filter, run) in filters {
            if filter.as_ref().is_some_and(|f| f.ports.contains(port)) {
                match run(bytes) {
                    Extract::Name(n) => return Extract::Name(n),
                    Extract::NeedMore => need_more = true,
                    Extract::NoName => {}
                }
            }
        }
        if need_more { Extract::NeedMore } else { Extract::NoName }
    }

    /// Which filter produced a TCP name on `port`, and whether it matches its patterns.
    fn match_name(&self, port: u16, name: &str, udp: bool) -> Option<PayloadKind> {
        let norm = extract::normalize(name);
        let candidates: [(&Option<NameFilter>, PayloadKind); 3] = [
            (&self.payload.dns, PayloadKind::Dns),
            (&self.payload.tls, PayloadKind::Sni),
            (&self.payload.http, PayloadKind::Host),
        ];
        candidates
            .into_iter()
            .take(if udp { 1 } else { 3 })
            .find(|(f, _)| {
                f.as_ref().is_some_and(|f| f.ports.contains(port) && f.patterns.matches(&norm))
            })
            .map(|(_, k)| k)
    }

    fn decide(&mut self, f: &mut FlowEntry, found: Extract, sink: &mut dyn RecordSink) {
        let matched = match found {
            Extract::Name(n) => {
                self.stats.payload_names += 1;
                let kind = self.match_name(f.resp.1, &n, false);
                kind.map(|k| (k, n.strip_suffix('.').map(str::to_owned).unwrap_or(n)))
            }
            _ => None,
        };
        self.release(f, matched, sink);
    }

    /// Emits the held NEW (with the payload match) and ESTABLISHED records, or suppresses the
    /// flow when `drop_unmatched` is set and nothing matched.
    fn release(
        &mut self,
        f: &mut FlowEntry,
        matched: Option<(PayloadKind, String)>,
        sink: &mut dyn RecordSink,
    ) {
        let Some(pend) = f.pending.take() else { return };
        if pend.next_seq.is_some() {
            self.reassembling = self.reassembling.saturating_sub(1);
        }
        if matched.is_none() && self.payload.drop_unmatched {
            f.suppressed = true;
            self.stats.payload_suppressed += 1;
            return;
        }
        self.emitter.emit(
            Spec {
                time: pend.new_at,
                state: Some(FlowState::New),
                src: f.init.0,
                sport: Some(f.init.1),
                dst: f.resp.0,
                dport: Some(f.resp.1),
                protocol_num: pend.new_proto,
                transport: Transport::Tcp,
                session: Some(f.id),
                payload: matched.as_ref().map(|(k, n)| (*k, n.as_str())),
                summary: None,
                reason: None,
                icmp: None,
                community_id: None,
            },
            sink,
        );
        if let Some((at, proto)) = pend.est {
            self.emitter.emit(
                Spec {
                    time: at,
                    state: Some(FlowState::Established),
                    src: f.resp.0,
                    sport: Some(f.resp.1),
                    dst: f.init.0,
                    dport: Some(f.init.1),
                    protocol_num: proto,
                    transport: Transport::Tcp,
                    session: Some(f.id),
                    payload: None,
                    summary: None,
                    reason: None,
                    icmp: None,
                    community_id: None,
                },
                sink,
            );
        }
    }

    fn udp(
        &mut self,
        ts: Timestamp,
        p: &Packet<'_>,
        sport: u16,
        dport: u16,
        payload: &[u8],
        sink: &mut dyn RecordSink,
    ) {
        let key = FlowKey::udp(p.src, sport, p.dst, dport);
        if let Some(f) = self.flows.get_mut(&key) {
            f.orig_packets += 1;
            f.orig_bytes += u64::from(p.ip_len);
            f.last = ts;
            f.history.udp(payload.len(), true);
            // Idle expiry: unlike PokieStream, a flow that sees a second packet still expires.
            f.deadline = ts.as_micros().saturating_add(f.timeout);
            return;
        }
        let timeout = if dport == 53 { self.udp_dns_timeout } else { self.udp_timeout };
        let id = self.new_flow(key, ts, (p.src, sport), (p.dst, dport), timeout, sink);
        let dns_port = self.payload.dns.as_ref().is_some_and(|d| d.ports.contains(dport));
        let matched = if dns_port {
            match extract::dns::udp_question(payload) {
                Extract::Name(n) => {
                    self.stats.payload_names += 1;
                    self.match_name(dport, &n, true)
                        .map(|k| (k, n.strip_suffix('.').map(str::to_owned).unwrap_or(n)))
                }
                _ => None,
            }
        } else {
            None
        };
        let suppress = dns_port && matched.is_none() && self.payload.drop_unmatched;
        if let Some(f) = self.flows.get_mut(&key) {
            f.orig_packets = 1;
            f.orig_bytes = u64::from(p.ip_len);
            f.history.udp(payload.len(), true);
            f.suppressed = suppress;
        }
        if suppress {
            self.stats.payload_suppressed += 1;
            return;
        }
        self.emitter.emit(
            Spec {
                time: ts,
                state: Some(FlowState::New),
                src: p.src,
                sport: Some(sport),
                dst: p.dst,
                dport: Some(dport),
                protocol_num: p.ip_proto,
                transport: Transport::Udp,
                session: Some(id),
                payload: matched.as_ref().map(|(k, n)| (*k, n.as_str())),
                summary: None,
                reason: None,
                icmp: None,
                community_id: None,
            },
            sink,
        );
    }

    fn icmp(
        &mut self,
        ts: Timestamp,
        p: &Packet<'_>,
        v6: bool,
        ty: u8,
        code: u8,
        sink: &mut dyn RecordSink,
    ) {
        if v6 && !matches!(ty, 128 | 129) {
            self.stats.icmpv6_ignored += 1;
            return;
        }
        self.emitter.emit(
            Spec {
                time: ts,
                state: None,
                src: p.src,
                sport: None,
                dst: p.dst,
                dport: None,
                protocol_num: p.ip_proto,
                transport: if v6 { Transport::Icmpv6 } else { Transport::Icmp },
                session: None,
                payload: None,
                summary: None,
                reason: None,
                icmp: Some((ty, code)),
                community_id: Some(Community::Icmp(p.src, p.dst, v6, ty, code)),
            },
            sink,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_compare_as_text_like_pokiestream() {
        let mut scratch = [Vec::new(), Vec::new()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // "10.0.0.10" < "10.0.0.9" as text, the opposite of numeric order.
        assert!(!text_order((ip("10.0.0.9"), 1), (ip("10.0.0.10"), 1), &mut scratch));
        assert!(text_order((ip("10.0.0.10"), 1), (ip("10.0.0.9"), 1), &mut scratch));
        // Same address: ports as text, "443" < "80".
        assert!(text_order((ip("10.0.0.1"), 443), (ip("10.0.0.1"), 80), &mut scratch));
        assert!(!text_order((ip("10.0.0.1"), 80), (ip("10.0.0.1"), 443), &mut scratch));
        assert!(text_order((ip("::1"), 80), (ip("::1"), 80), &mut scratch));
    }
}
