//! The TCP accept loop and the life of one TCP session.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use apiary_event::{Kind, Transport};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runtime::{Service, Shared};
use crate::services::Handler;
use crate::session::{Conn, SessionCtx};

pub(crate) async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let Handler::Tcp(handler) = service.handler.clone() else { return };
    let local = listener.local_addr().ok();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(10);
                x
            }
            Err(e) => {
                // Out of file descriptors and similar: slow down instead of spinning.
                tracing::warn!(service = %service.name, error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let local = stream.local_addr().ok().or(local).unwrap_or(peer);
        let ctx =
            shared.session(&service, Transport::Tcp, peer, local, tokio::time::Instant::now());
        let permit = match shared.admission.admit(peer.ip().to_canonical()) {
            Ok(p) => p,
            Err(reason) => {
                shared.stats.refused.fetch_add(1, Relaxed);
                let mut e = ctx.event(Kind::SESSION_REFUSED);
                e.message = Some(reason.as_str().into());
                ctx.emit(e);
                // Dropping the stream closes it: the peer sees the connection end at once.
                drop(stream);
                continue;
            }
        };
        shared.stats.accepted.fetch_add(1, Relaxed);
        let handler = Arc::clone(&handler);
        let service = Arc::clone(&service);
        let shared = Arc::clone(&shared);
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _permit = permit;
            session(stream, ctx, handler, service.tls.clone(), &shared, cancel).await;
        });
    }
}

async fn session(
    stream: TcpStream,
    ctx: SessionCtx,
    handler: Arc<dyn crate::TcpService>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: &Shared,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    shared.stats.open_sessions.fetch_add(1, Relaxed);
    ctx.emit(ctx.event(Kind::SESSION_OPEN));
    let io: Box<dyn crate::session::Stream> = match tls {
        None => Box::new(stream),
        Some(cfg) => {
            let wait = shared.session_limits.read_timeout;
            let done = tokio::select! {
                s = crate::tls::accept(stream, cfg, &ctx, wait) => s,
                () = cancel.cancelled() => None,
            };
            match done {
                Some(s) => s,
                None => {
                    ctx.emit(ctx.close_event(0, 0, "tls"));
                    shared.stats.open_sessions.fetch_sub(1, Relaxed);
                    return;
                }
            }
        }
    };
    let mut conn = Conn::new(io, ctx.clone(), shared.session_limits);
    let reason = tokio::select! {
        r = handler.handle(&mut conn) => match r {
            Ok(()) => {
                conn.shutdown().await;
                // The service finished: if the peer had already closed, say so.
                if conn.peer_closed() { "peer" } else { "server" }
            }
            Err(e) => {
                tracing::debug!(session = %ctx.id, error = %e, "session ended");
                e.reason()
            }
        },
        () = cancel.cancelled() => "shutdown",
    };
    let (bytes_in, bytes_out) = conn.byte_counts();
    ctx.emit(ctx.close_event(bytes_in, bytes_out, reason));
    shared.stats.open_sessions.fetch_sub(1, Relaxed);
}
