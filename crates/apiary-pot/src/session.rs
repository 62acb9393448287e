//! Sessions: the context every event of a connection or UDP peer is stamped with, and
//! [`Conn`], the TCP session API services use (HoneyPy's `rx()`/`tx()`, plus line framing).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use apiary_event::{Close, Event, Kind, Payload, SharedEmit, Transport};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use uuid::Uuid;

/// Who, where and which service: stamped on every event of one session.
#[derive(Clone)]
pub struct SessionCtx {
    /// Session id (UUIDv7).
    pub id: Uuid,
    /// The remote (attacker) end.
    pub peer: SocketAddr,
    /// The local (honeypot) end.
    pub local: SocketAddr,
    /// TCP or UDP.
    pub transport: Transport,
    /// Node name.
    pub node: Arc<str>,
    /// Pot id.
    pub pot: Arc<str>,
    /// Service name.
    pub service: Arc<str>,
    /// Application protocol.
    pub protocol: Arc<str>,
    /// Where events go.
    pub emit: SharedEmit,
    /// When the session began.
    pub started: Instant,
}

impl std::fmt::Debug for SessionCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCtx")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl SessionCtx {
    /// A new event of `kind` carrying this session's fields.
    pub fn event(&self, kind: Kind) -> Event {
        let mut e = Event::new(kind, Arc::clone(&self.node));
        e.pot = Some(Arc::clone(&self.pot));
        e.service = Some(Arc::clone(&self.service));
        e.protocol = Some(Arc::clone(&self.protocol));
        e.transport = Some(self.transport);
        e.src_ip = Some(self.peer.ip().to_canonical());
        e.src_port = Some(self.peer.port());
        e.dst_ip = Some(self.local.ip().to_canonical());
        e.dst_port = Some(self.local.port());
        e.session = Some(self.id);
        e
    }

    /// Emits an event.
    pub fn emit(&self, event: Event) {
        self.emit.emit(event);
    }

    /// The `session.close` event with its summary.
    pub(crate) fn close_event(&self, bytes_in: u64, bytes_out: u64, reason: &str) -> Event {
        let mut e = self.event(Kind::SESSION_CLOSE);
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        e.close = Some(Box::new(Close {
            duration_ms: ms,
            bytes_in,
            bytes_out,
            reason: reason.to_owned(),
        }));
        e
    }
}

/// Why a session ended early; the runtime turns it into the `reason` of `session.close`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer sent nothing for the idle timeout.
    #[error("idle timeout")]
    Idle,
    /// The session reached its longest allowed duration.
    #[error("session time limit")]
    Timeout,
    /// A framed read (a line, a request) grew past its cap.
    #[error("input too long")]
    TooLong,
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The service decided the input is not worth answering further.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl SessionError {
    /// The `reason` written on `session.close`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Timeout => "timeout",
            Self::TooLong => "limit",
            Self::Io(_) => "error",
            Self::Protocol(_) => "protocol",
        }
    }
}

/// Byte stream of a session: a TCP socket, or TLS over one.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Stands in for the stream while a handshake owns it: reads see EOF, writes fail.
struct Detached;

impl AsyncRead for Detached {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Detached {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Per-session limits copied from the pot's [`Limits`](crate::Limits).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    pub(crate) read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_session: Duration,
    pub(crate) max_recorded: usize,
}

/// Read sizes adapt between these: an idle session holds only a small buffer, a bulk upload
/// reads in large chunks.
const READ_MIN: usize = 512;
const READ_MAX: usize = 16 * 1024;

/// A TCP session as a service sees it. Every byte in and out is recorded as an event by
/// `rx`/`tx`; services never write to the socket directly.
pub struct Conn {
    io: Box<dyn Stream>,
    ctx: SessionCtx,
    limits: SessionLimits,
    /// Bytes read but not yet handed to the service (line framing reads ahead).
    pending: BytesMut,
    last_activity: Instant,
    bytes_in: u64,
    bytes_out: u64,
    recorded_in: usize,
    recorded_out: usize,
    eof: bool,
    /// Next read size.
    read_size: usize,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("ctx", &self.ctx).finish_non_exhaustive()
    }
}

impl Conn {
    pub(crate) fn new(io: Box<dyn Stream>, ctx: SessionCtx, limits: SessionLimits) -> Self {
        Self {
            io,
            ctx,
            limits,
            pending: BytesMut::new(),
            last_activity: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            recorded_in: 0,
            recorded_out: 0,
            eof: false,
            read_size: READ_MIN,
        }
    }

    /// The session's context (ids, endpoints, emitter).
    pub fn ctx(&self) -> &SessionCtx {
        &self.ctx
    }

    /// The attacker's address.
    pub fn peer(&self) -> SocketAddr {
        self.ctx.peer
    }

    /// Whether the peer has closed its side.
    pub fn peer_closed(&self) -> bool {
        self.eof
    }

    /// Bytes received and sent so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.bytes_in, self.bytes_out)
    }

    /// A new event of `kind` carrying this session's fields.
    pub fn event(&self, kind: Kind) -> Event {
        self.ctx.event(kind)
    }

    /// Emits an event (credentials, commands, ...).
    pub fn emit(&self, event: Event) {
        self.ctx.emit(event);
    }

    /// Replaces the byte stream (after a TLS handshake on the same socket).
    pub fn replace_stream(&mut self, io: Box<dyn Stream>) {
        self.io = io;
    }

    /// Takes the byte stream out for a handshake; put it back with [`Conn::replace_stream`].
    pub fn take_stream(&mut self) -> Box<dyn Stream> {
        std::mem::replace(&mut self.io, Box::new(Detached))
    }

    fn deadline(&self) -> Result<Duration, SessionError> {
        let now = Instant::now();
        let session_left = self
            .limits
            .max_session
            .checked_sub(now.duration_since(self.ctx.started))
            .ok_or(SessionError::Timeout)?;
        let idle_left = self
            .limits
            .idle_timeout
            .checked_sub(now.duration_since(self.last_activity))
            .ok_or(SessionError::Idle)?;
        Ok(self.limits.read_timeout.min(session_left).min(idle_left))
    }

    /// Reads one chunk from the socket into `pending`, recording it. Returns false on EOF.
    async fn fill(&mut self) -> Result<bool, SessionError> {
        if self.eof {
            return Ok(false);
        }
        let wait = self.deadline()?;
        if self.pending.is_empty() && self.pending.capacity() > READ_MAX {
            // Do not keep a large buffer alive through a long idle wait.
            self.pending = BytesMut::new();
        }
        self.pending.reserve(self.read_size);
        let room = self.pending.capacity() - self.pending.len();
        let read = tokio::time::timeout(wait, self.io.read_buf(&mut self.pending)).await;
        let n = match read {
            Err(_) => {
                // Which limit fired decides the reason the operator sees.
                return Err(match self.deadline() {
                    Err(e) => e,
                    Ok(_) => SessionError::Idle,
                });
            }
            Ok(r) => r?,
        };
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.read_size = if n >= room {
            (self.read_size * 2).min(READ_MAX)
        } else {
            (self.read_size / 2).max(READ_MIN)
        };
        self.last_activity = Instant::now();
        self.bytes_in += n as u64;
        let start = self.pending.len() - n;
        let chunk = self.pending.get(start..).unwrap_or_default();
        let keep = self.limits.max_recorded.saturating_sub(self.recorded_in);
        self.recorded_in += keep.min(n);
        let mut e = self.ctx.event(Kind::SESSION_RX);
        e.payload = Some(Payload::new(chunk, keep));
        self.ctx.emit(e);
        Ok(true)
    }

    /// The next chunk from the peer, as one read returned it (HoneyPy's `rx`), or `None` when
    /// the peer closed. Bytes pushed back or read ahead come first.
    pub async fn rx(&mut self) -> Result<Option<Bytes>, SessionError> {
        if self.pending.is_empty() && !self.fill().await? {
            return Ok(None);
        }
        Ok(Some(self.pending.split().freeze()))
    }

    /// The next line without its `\n` or `\r\n`, or `None` at EOF. A line longer than `max`
    /// bytes ends the session with [`SessionError::TooLong`]. A final line without a newline is
    /// returned at EOF.
    pub async fn read_line(&mut self, max: usize) -> Result<Option<Bytes>, SessionError> {
        let mut searched = 0;
        loop {
            if let Some(pos) =
                self.pending.get(searched..).and_then(|s| s.iter().position(|b| *b == b'\n'))
            {
                let mut line = self.pending.split_to(searched + pos + 1);
                line.truncate(line.len() - 1);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                return Ok(Some(line.freeze()));
            }
            searched = self.pending.len();
            if searched > max {
                return Err(SessionError::TooLong);
            }
            if !self.fill().await? {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.pending.split().freeze()));
            }
        }
    }

    /// Reads exactly `n` bytes (capped by the caller), or `None` if the peer closed first.
    pub async fn read_exact(&mut self, n: usize) -> Result<Option<Bytes>, SessionError> {
        while self.pending.len() < n {
            if !self.fill().await? {
                return Ok(None);
            }
        }
        Ok(Some(self.pending.split_to(n).freeze()))
    }

    /// Puts bytes back in front of the input (a parser that read too far).
    pub fn unread(&mut self, data: &[u8]) {
        let mut joined = BytesMut::with_capacity(data.len() + self.pending.len());
        joined.extend_from_slice(data);
        joined.extend_from_slice(&self.pending);
        self.pending = joined;
    }

    /// Sends bytes to the peer and records them (HoneyPy's `tx`).
    pub async fn tx(&mut self, data: &[u8]) -> Result<(), SessionError> {
        if data.is_empty() {
            return Ok(());
        }
        let wait = self.limits.read_timeout;
        match tokio::time::timeout(wait, self.io.write_all(data)).await {
            Err(_) => return Err(SessionError::Idle),
            Ok(r) => r?,
        }
        self.last_activity = Instant::now();
        self.bytes_out += data.len() as u64;
        let keep = self.limits.max_recorded.saturating_sub(self.recorded_out);
        self.recorded_out += keep.min(data.len());
        let mut e = self.ctx.event(Kind::SESSION_TX);
        e.payload = Some(Payload::new(data, keep));
        self.ctx.emit(e);
        Ok(())
    }

    /// Waits, counting towards the session's limits (HoneyPy plugins `sleep`).
    pub async fn sleep(&mut self, d: Duration) -> Result<(), SessionError> {
        let wait = self.deadline()?;
        tokio::time::sleep(d.min(wait)).await;
        if d > wait { Err(SessionError::Timeout) } else { Ok(()) }
    }

    /// Closes the write side so the peer sees EOF after everything sent.
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.io.shutdown()).await;
    }
}

/// One UDP peer's session as a service sees it: its context and the service's own state.
pub struct UdpPeer {
    /// The session context.
    pub ctx: SessionCtx,
    /// Service-private state for this peer (counters, transfer state).
    pub state: Option<Box<dyn std::any::Any + Send>>,
    pub(crate) last_seen: Instant,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) recorded_in: usize,
    pub(crate) recorded_out: usize,
}

impl std::fmt::Debug for UdpPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpPeer").field("ctx", &self.ctx).finish_non_exhaustive()
    }
}

impl UdpPeer {
    pub(crate) fn new(ctx: SessionCtx) -> Self {
        Self {
            ctx,
            state: None,
            last_seen: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            recorded_in: 0,
            recorded_out: 0,
        }
    }

    /// The service state of type `T`, created with `init` on first use.
    pub fn state_or<T: Send + 'static>(&mut self, init: impl FnOnce() -> T) -> &mut T {
        if !self.state.as_ref().is_some_and(|s| s.is::<T>()) {
            self.state = Some(Box::new(init()));
        }
        // The branch above guarantees the state holds a T.
        match self.state.as_mut().and_then(|s| s.downcast_mut::<T>()) {
            Some(t) => t,
            None => unreachable!("state was just set to T"),
        }
    }
}
