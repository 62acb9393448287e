//! The UDP loop: one session per peer (not per datagram, as HoneyPy did), idle expiry, a
//! bounded peer table, and a reply rate limit so the honeypot can never serve as a reflector.
//! Datagrams are taken and answered in batches (`mmsg`), so a flood costs two system calls per
//! batch, not two per datagram.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::Duration;

use apiary_event::{Event, Kind, Payload, SharedEmit, Transport};
use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::limits::RateTable;
use crate::mmsg::{self, BATCH, RecvBatch};
use crate::runtime::{PotStats, Service, Shared};
use crate::services::Handler;
use crate::session::UdpPeer;

/// Largest datagram read; anything longer is truncated by the kernel and recorded as such.
const MAX_DATAGRAM: usize = 65_536;
/// A UDP service that takes longer than this to answer one datagram gets no answer sent.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The reply rate guard of a UDP listener, for services that answer from another socket
/// (TFTP transfers come from a fresh port) and so bypass the listener's own check.
#[derive(Clone)]
pub(crate) struct ReplyGuard {
    table: Arc<RateTable>,
    stats: Arc<PotStats>,
}

impl ReplyGuard {
    /// Takes one reply token for `ip`; false (and counted as suppressed) when over its rate.
    pub(crate) fn allow(&self, ip: std::net::IpAddr) -> bool {
        let ok = self.table.allow(ip.to_canonical());
        if !ok {
            self.stats.udp_suppressed.fetch_add(1, Relaxed);
        }
        ok
    }
}

tokio::task_local! {
    static GUARD: ReplyGuard;
}

/// The guard of the listener whose datagram is being handled (`None` outside a handler).
pub(crate) fn reply_guard() -> Option<ReplyGuard> {
    GUARD.try_with(ReplyGuard::clone).ok()
}

pub(crate) async fn serve(
    socket: UdpSocket,
    service: Arc<Service>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let Handler::Udp(handler) = service.handler.clone() else { return };
    let Ok(local) = socket.local_addr() else { return };
    let fd = socket.as_raw_fd();
    let limits = &shared.limits;
    let replies = Arc::new(RateTable::new(
        limits.udp_replies_per_sec,
        limits.udp_replies_burst,
        limits.rate_table_size,
    ));
    let guard = ReplyGuard { table: Arc::clone(&replies), stats: Arc::clone(&shared.stats) };
    let mut peers: HashMap<SocketAddr, UdpPeer> = HashMap::new();
    let mut batch = RecvBatch::new(MAX_DATAGRAM);
    // The answers to one batch and their `session.tx` events, emitted once sent.
    let mut out: Vec<(SocketAddr, Bytes)> = Vec::with_capacity(BATCH);
    let mut sent: Vec<Event> = Vec::with_capacity(BATCH);
    let mut sweep = tokio::time::interval(Duration::from_secs(1).min(limits.udp_idle_timeout));
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                for (_, peer) in peers.drain() {
                    close(&peer, "shutdown");
                }
                return;
            }
            _ = sweep.tick() => {
                expire(&mut peers, limits.udp_idle_timeout, &shared);
                continue;
            }
            r = socket.readable() => if let Err(e) = r {
                tracing::debug!(service = %service.name, error = %e, "udp socket error");
                continue;
            },
        }
        let got = match socket.try_io(Interest::READABLE, || batch.recv(fd)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // ICMP port-unreachable from an earlier answer surfaces here on Linux.
                tracing::debug!(service = %service.name, error = %e, "udp receive error");
                continue;
            }
        };
        shared.stats.datagrams.fetch_add(got as u64, Relaxed);
        let now = Instant::now();
        for (data, from) in (0..got).filter_map(|i| batch.get(i)) {
            let n = data.len();
            if !peers.contains_key(&from) && peers.len() >= limits.udp_peers.max(1) {
                expire(&mut peers, limits.udp_idle_timeout, &shared);
                if peers.len() >= limits.udp_peers.max(1) {
                    evict_oldest(&mut peers, &shared);
                }
            }
            let peer = peers.entry(from).or_insert_with(|| {
                let ctx = shared.session(&service, Transport::Udp, from, local, now);
                ctx.emit(ctx.event(Kind::SESSION_OPEN));
                shared.stats.open_sessions.fetch_add(1, Relaxed);
                UdpPeer::new(ctx)
            });
            peer.last_seen = now;
            peer.bytes_in += n as u64;
            let keep = limits.max_recorded_bytes.saturating_sub(peer.recorded_in);
            peer.recorded_in += keep.min(n);
            let mut e = peer.ctx.event(Kind::SESSION_RX);
            e.payload = Some(Payload::new(data, keep));
            peer.ctx.emit(e);

            let Some(answers) =
                answer_in_time(GUARD.scope(guard.clone(), handler.datagram(peer, data))).await
            else {
                tracing::warn!(service = %service.name, "udp service too slow, no answer sent");
                continue;
            };
            if answers.is_empty() {
                continue;
            }
            if !replies.allow(from.ip().to_canonical()) {
                shared.stats.udp_suppressed.fetch_add(1, Relaxed);
                continue;
            }
            for answer in answers {
                peer.bytes_out += answer.len() as u64;
                let keep = limits.max_recorded_bytes.saturating_sub(peer.recorded_out);
                peer.recorded_out += keep.min(answer.len());
                let mut e = peer.ctx.event(Kind::SESSION_TX);
                e.payload = Some(Payload::new(&answer, keep));
                sent.push(e);
                out.push((from, answer));
            }
        }
        flush(&socket, &mut out, &mut sent, &mut peers, &shared.emit, &service.name).await;
    }
}

/// Runs a handler's answer, arming the answer timeout only when it does not finish at once:
/// most services answer without waiting, and a timer per datagram would cost more than the
/// answer.
async fn answer_in_time(fut: impl Future<Output = Vec<Bytes>>) -> Option<Vec<Bytes>> {
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(a) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Some(a);
    }
    tokio::time::timeout(ANSWER_TIMEOUT, fut).await.ok()
}

/// Sends a batch's answers and emits the `session.tx` event of each one that went; one that
/// the kernel refuses is skipped, and its bytes taken off its session's count.
async fn flush(
    socket: &UdpSocket,
    out: &mut Vec<(SocketAddr, Bytes)>,
    sent: &mut Vec<Event>,
    peers: &mut HashMap<SocketAddr, UdpPeer>,
    emit: &SharedEmit,
    service: &str,
) {
    let fd = socket.as_raw_fd();
    let mut events = sent.drain(..);
    let mut at = 0;
    while let Some(rest) = out.get(at..).filter(|r| !r.is_empty()) {
        match socket.async_io(Interest::WRITABLE, || mmsg::send(fd, rest)).await {
            Ok(n) => {
                for e in events.by_ref().take(n) {
                    emit.emit(e);
                }
                at += n;
            }
            Err(e) => {
                tracing::debug!(service, error = %e, "udp send failed");
                let _ = events.next();
                if let Some((to, data)) = rest.first()
                    && let Some(peer) = peers.get_mut(to)
                {
                    peer.bytes_out = peer.bytes_out.saturating_sub(data.len() as u64);
                }
                at += 1;
            }
        }
    }
    drop(events);
    out.clear();
}

fn close(peer: &UdpPeer, reason: &str) {
    // A UDP session's length is first to last datagram, not first datagram to expiry.
    let mut e = peer.ctx.close_event(peer.bytes_in, peer.bytes_out, reason);
    if let Some(c) = e.close.as_mut() {
        c.duration_ms =
            u64::try_from(peer.last_seen.duration_since(peer.ctx.started).as_millis()).unwrap_or(0);
    }
    peer.ctx.emit(e);
}

fn expire(peers: &mut HashMap<SocketAddr, UdpPeer>, idle: Duration, shared: &Shared) {
    let now = Instant::now();
    peers.retain(|_, peer| {
        let keep = now.duration_since(peer.last_seen) < idle;
        if !keep {
            close(peer, "idle");
            shared.stats.open_sessions.fetch_sub(1, Relaxed);
        }
        keep
    });
}

fn evict_oldest(peers: &mut HashMap<SocketAddr, UdpPeer>, shared: &Shared) {
    let oldest = peers.iter().min_by_key(|(_, p)| p.last_seen).map(|(a, _)| *a);
    if let Some(peer) = oldest.and_then(|a| peers.remove(&a)) {
        close(&peer, "evicted");
        shared.stats.udp_evicted.fetch_add(1, Relaxed);
        shared.stats.open_sessions.fetch_sub(1, Relaxed);
    }
}
