//! `GET /api/v1/stream`: live events as server-sent events, batched.
//!
//! Each SSE message (`event: events`) carries a JSON array of every event that was waiting
//! when the previous message went out, up to [`MAX_BATCH`]: one event per message when traffic
//! is light (no added latency), big batches under a flood (10,000 events/s cost a browser a
//! few hundred parses per second, not 10,000). A client too slow for the Core's broadcast
//! buffer gets `event: lagged` with how many events it missed, then continues.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::{Receiver, error::RecvError, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::api::ApiError;
use super::auth::Principal;

/// Most events in one SSE message.
const MAX_BATCH: usize = 2000;

/// Server-side filters (the dashboard filters as you type on its side).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamParams {
    kind: Option<String>,
    src_ip: Option<String>,
    service: Option<String>,
    node: Option<String>,
}

#[derive(Debug)]
struct Filter {
    kind: Option<String>,
    src_ip: Option<IpAddr>,
    service: Option<String>,
    node: Option<String>,
}

impl Filter {
    fn matches(&self, e: &Event) -> bool {
        self.kind.as_deref().is_none_or(|k| e.kind.as_str() == k)
            && self.src_ip.is_none_or(|ip| e.src_ip == Some(ip))
            && self.service.as_deref().is_none_or(|s| e.service.as_deref() == Some(s))
            && self.node.as_deref().is_none_or(|n| &*e.node == n)
    }
}

struct Feed {
    rx: Receiver<Arc<Event>>,
    filter: Filter,
    cancel: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

fn batch_message(events: &[Arc<Event>]) -> SseEvent {
    let mut out = Vec::with_capacity(events.len() * 400 + 2);
    out.push(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        apiary_event::encode::json_line(e, &mut out);
        out.pop();
    }
    out.push(b']');
    // json_line writes UTF-8 and escapes newlines inside strings, as SSE data needs.
    SseEvent::default().event("events").data(String::from_utf8(out).unwrap_or_default())
}

async fn next(mut feed: Feed) -> Option<(Result<SseEvent, Infallible>, Feed)> {
    loop {
        let first = tokio::select! {
            r = feed.rx.recv() => r,
            _ = feed.cancel.cancelled() => return None,
        };
        let mut batch = Vec::new();
        match first {
            Ok(e) => {
                if feed.filter.matches(&e) {
                    batch.push(e);
                }
            }
            Err(RecvError::Lagged(n)) => {
                let msg = SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}"));
                return Some((Ok(msg), feed));
            }
            Err(RecvError::Closed) => return None,
        }
        while batch.len() < MAX_BATCH {
            match feed.rx.try_recv() {
                Ok(e) => {
                    if feed.filter.matches(&e) {
                        batch.push(e);
                    }
                }
                Err(TryRecvError::Lagged(n)) => {
                    if batch.is_empty() {
                        let msg =
                            SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}"));
                        return Some((Ok(msg), feed));
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            return Some((Ok(batch_message(&batch)), feed));
        }
    }
}

pub(crate) async fn stream(
    State(st): State<Arc<AppState>>,
    _p: Principal,
    Query(q): Query<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Ok(permit) = st.streams.clone().try_acquire_owned() else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many live streams"));
    };
    let clean = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let src_ip = match clean(q.src_ip) {
        Some(s) => {
            Some(s.parse().map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad src_ip"))?)
        }
        None => None,
    };
    let filter =
        Filter { kind: clean(q.kind), src_ip, service: clean(q.service), node: clean(q.node) };
    let feed = Feed {
        rx: st.core.live_events.subscribe(),
        filter,
        cancel: st.cancel.clone(),
        _permit: permit,
    };
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(SseEvent::default().event("hello").data("{}"))
    });
    let events = futures_util::stream::unfold(feed, next);
    use futures_util::StreamExt as _;
    Ok(Sse::new(hello.chain(events))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive")))
}
