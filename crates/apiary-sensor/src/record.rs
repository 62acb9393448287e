//! Turning tracker decisions into [`Event`]s with deterministic ids, and the [`RecordSink`]
//! trait (plus a bounded queue with counted drops) that carries them out of the sensor.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use apiary_event::{Event, Flow, FlowState, Kind, Timestamp, Transport, new_id_at};
use uuid::Uuid;

use crate::extract::PayloadKind;
use crate::track::community_id;
use crate::track::history::History;

/// Where records go. The sensor never blocks on it: implementations that can fill up drop
/// and count (see [`QueueSink`]).
pub trait RecordSink {
    /// Takes one record.
    fn record(&mut self, event: Event);

    /// Hands on anything buffered (called when capture goes idle and at the end).
    fn flush(&mut self) {}

    /// Whether records need the summary's derived text (history, Community ID). Sinks that
    /// only write PokieStream's ten keys say no, and the sensor skips hashing and formatting
    /// what they would throw away.
    fn wants_details(&self) -> bool {
        true
    }
}

impl RecordSink for Vec<Event> {
    fn record(&mut self, event: Event) {
        self.push(event);
    }
}

impl<S: RecordSink + ?Sized> RecordSink for &mut S {
    fn record(&mut self, event: Event) {
        (**self).record(event);
    }

    fn flush(&mut self) {
        (**self).flush();
    }

    fn wants_details(&self) -> bool {
        (**self).wants_details()
    }
}

impl<S: RecordSink + ?Sized> RecordSink for Box<S> {
    fn record(&mut self, event: Event) {
        (**self).record(event);
    }

    fn flush(&mut self) {
        (**self).flush();
    }

    fn wants_details(&self) -> bool {
        (**self).wants_details()
    }
}

/// A sink that calls a closure.
pub struct FnSink<F>(pub F);

impl<F: FnMut(Event)> RecordSink for FnSink<F> {
    fn record(&mut self, event: Event) {
        (self.0)(event);
    }
}

/// The sending end of a bounded record queue (PokieStream's `queue_size`); a full queue drops
/// the record and counts it instead of stalling capture.
#[derive(Clone)]
pub struct QueueSink {
    tx: SyncSender<Event>,
    dropped: Arc<AtomicU64>,
    /// Wait for room instead of dropping (file replay, where nothing is lost by waiting).
    blocking: bool,
    /// The consumer uses the summary's derived text (see [`RecordSink::wants_details`]).
    details: bool,
}

impl QueueSink {
    /// Records dropped because the queue was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The shared drop counter.
    pub fn drop_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.dropped)
    }

    /// Tells the sensor whether the consumer uses the summary's derived text; a consumer
    /// that writes only PokieStream's keys sets `false` (default `true`).
    pub fn set_details(&mut self, details: bool) {
        self.details = details;
    }
}

impl RecordSink for QueueSink {
    fn record(&mut self, event: Event) {
        if self.blocking {
            if self.tx.send(event).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn wants_details(&self) -> bool {
        self.details
    }
}

/// A bounded queue of `size` records: the sink for capture threads and the receiver for the
/// output or plugin thread.
pub fn queue(size: usize) -> (QueueSink, Receiver<Event>) {
    let (tx, rx) = sync_channel(size.max(1));
    (QueueSink { tx, dropped: Arc::new(AtomicU64::new(0)), blocking: false, details: true }, rx)
}

/// A bounded queue whose sink waits for room (file replay: deterministic, nothing dropped).
pub fn blocking_queue(size: usize) -> (QueueSink, Receiver<Event>) {
    let (mut tx, rx) = queue(size);
    tx.blocking = true;
    (tx, rx)
}

/// Per-direction totals written on a session's last record. The history and Community ID
/// stay raw until the emitter knows the sink wants their text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) orig_packets: u64,
    pub(crate) orig_bytes: u64,
    pub(crate) resp_packets: u64,
    pub(crate) resp_bytes: u64,
    pub(crate) duration_us: u64,
    pub(crate) history: History,
    pub(crate) community: Community,
}

/// What a Community ID is computed from (a SHA-1 and base64, so only on demand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Community {
    /// TCP or UDP: initiator, responder, IP protocol.
    Ports((IpAddr, u16), (IpAddr, u16), u8),
    /// ICMP or ICMPv6 message: source, destination, v6, type, code.
    Icmp(IpAddr, IpAddr, bool, u8, u8),
}

impl Community {
    fn text(self) -> String {
        match self {
            Community::Ports(i, r, proto) => community_id::ports(i.0, i.1, r.0, r.1, proto),
            Community::Icmp(src, dst, v6, ty, code) => community_id::icmp(src, dst, v6, ty, code),
        }
    }
}

/// Everything one record says, before it becomes an [`Event`].
pub(crate) struct Spec<'a> {
    pub(crate) time: Timestamp,
    pub(crate) state: Option<FlowState>,
    pub(crate) src: IpAddr,
    pub(crate) sport: Option<u16>,
    pub(crate) dst: IpAddr,
    pub(crate) dport: Option<u16>,
    pub(crate) protocol_num: u8,
    pub(crate) transport: Transport,
    pub(crate) session: Option<Uuid>,
    pub(crate) payload: Option<(PayloadKind, &'a str)>,
    pub(crate) summary: Option<Summary>,
    pub(crate) reason: Option<&'static str>,
    pub(crate) icmp: Option<(u8, u8)>,
    pub(crate) community_id: Option<Community>,
}

/// Builds events: stamps node and pot names and derives ids from packet time and counters.
#[derive(Debug)]
pub(crate) struct Emitter {
    node: Arc<str>,
    pot: Arc<str>,
    worker: u8,
    events: u64,
    pub(crate) emitted: u64,
}

impl Emitter {
    pub(crate) fn new(node: Arc<str>, pot: Arc<str>, worker: u8) -> Self {
        Self { node, pot, worker, events: 0, emitted: 0 }
    }

    /// A session id for the `counter`-th flow with key hash `key_hash`.
    pub(crate) fn session_id(&self, time: Timestamp, counter: u64, key_hash: u32) -> Uuid {
        new_id_at(time, entropy(self.worker, counter, key_hash))
    }

    pub(crate) fn emit(&mut self, spec: Spec<'_>, sink: &mut dyn RecordSink) {
        self.events += 1;
        // 0x5e marks event ids so they never equal a session id with the same counter.
        let id = new_id_at(spec.time, entropy(self.worker, self.events, 0x5e5e_5e5e));
        let kind = match spec.state {
            Some(FlowState::New) => Kind::FLOW_NEW,
            Some(FlowState::Established) => Kind::FLOW_ESTABLISHED,
            Some(FlowState::Close) => Kind::FLOW_CLOSE,
            Some(FlowState::Abort) => Kind::FLOW_ABORT,
            Some(FlowState::Expired) => Kind::FLOW_EXPIRED,
            None => Kind::FLOW_ICMP,
        };
        let mut e = Event::at(kind, Arc::clone(&self.node), spec.time, id);
        e.pot = Some(Arc::clone(&self.pot));
        e.transport = Some(spec.transport);
        e.src_ip = Some(spec.src);
        e.src_port = spec.sport;
        e.dst_ip = Some(spec.dst);
        e.dst_port = spec.dport;
        e.session = spec.session;
        let mut flow =
            Flow { state: spec.state, protocol_num: spec.protocol_num, ..Flow::default() };
        if let Some((k, name)) = spec.payload {
            flow.payload.insert(k.key().to_owned(), name.to_owned());
        }
        let details = sink.wants_details();
        if let Some(s) = spec.summary {
            flow.orig_packets = Some(s.orig_packets);
            flow.orig_bytes = Some(s.orig_bytes);
            flow.resp_packets = Some(s.resp_packets);
            flow.resp_bytes = Some(s.resp_bytes);
            flow.duration_us = Some(s.duration_us);
            if details {
                flow.history = Some(s.history.as_str().to_owned());
                flow.community_id = Some(s.community.text());
            }
        }
        if let Some(c) = spec.community_id.filter(|_| details) {
            flow.community_id = Some(c.text());
        }
        if let Some((t, c)) = spec.icmp {
            flow.icmp_type = Some(t);
            flow.icmp_code = Some(c);
        }
        flow.reason = spec.reason.map(str::to_owned);
        e.flow = Some(Box::new(flow));
        self.emitted += 1;
        sink.record(e);
    }
}

/// Ten bytes of UUIDv7 entropy from a worker number, a counter and a key hash. The uuid
/// builder overwrites the top nibble of byte 0 (version) and the top two bits of byte 2
/// (variant), so the counter lives in bytes 1 and 3..8 where nothing is lost.
fn entropy(worker: u8, counter: u64, key_hash: u32) -> [u8; 10] {
    let c = counter.to_be_bytes();
    let k = key_hash.to_be_bytes();
    [worker & 0x0f, c[2], k[0], c[3], c[4], c[5], c[6], c[7], k[2], k[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_counts_drops() {
        let (mut tx, rx) = queue(2);
        for _ in 0..5 {
            tx.record(Event::at(Kind::FLOW_NEW, "n".into(), Timestamp::EPOCH, Uuid::nil()));
        }
        assert_eq!(tx.dropped(), 3);
        assert_eq!(rx.try_iter().count(), 2);
    }

    #[test]
    fn ids_differ_by_counter_and_worker() {
        let t = Timestamp::from_secs_micros(1_700_000_000, 0);
        let a = Emitter::new("n".into(), "p".into(), 0);
        let b = Emitter::new("n".into(), "p".into(), 1);
        assert_ne!(a.session_id(t, 1, 9), a.session_id(t, 2, 9));
        assert_ne!(a.session_id(t, 1, 9), b.session_id(t, 1, 9));
        assert_eq!(a.session_id(t, 1, 9), a.session_id(t, 1, 9));
        assert_eq!(a.session_id(t, 1, 9).get_version_num(), 7);
    }
}
