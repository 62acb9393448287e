//! Alert sinks (chat, webhook, e-mail, X) never flood: the first event of a kind of attack is
//! sent at once, repeats are counted, and one digest per window says what was held back.
//!
//! Events are grouped by (kind, service, source address). A group alerted once is quiet for
//! `repeat_after`; at most `max_per_window` immediate alerts go out per window; everything else
//! is summed into the next digest ("N similar events in the last M minutes"). The group table
//! is bounded: when full, the groups quiet the longest are forgotten.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use tokio::time::Instant;

use crate::{Sink, SinkError};

const MAX_GROUPS: usize = 10_000;

/// Alert pacing settings (`digest_window`, `alert_max`, `alert_repeat_after`).
#[derive(Debug, Clone, Copy)]
pub struct AlertPolicy {
    /// Length of a digest window.
    pub window: Duration,
    /// Immediate alerts allowed per window.
    pub max_per_window: usize,
    /// How long an alerted group stays quiet.
    pub repeat_after: Duration,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(600),
            max_per_window: 10,
            repeat_after: Duration::from_secs(3600),
        }
    }
}

/// One message for a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Plain text (the channel adds its own markup).
    pub text: String,
    /// What produced it.
    pub kind: AlertKind,
    /// The event that triggered an immediate alert.
    pub event: Option<Arc<Event>>,
}

/// Why an alert was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// First sight of a group.
    First,
    /// The periodic summary of held-back events.
    Digest,
    /// `apiary loggers test`.
    Test,
}

impl AlertKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::First => "alert",
            Self::Digest => "digest",
            Self::Test => "test",
        }
    }
}

/// A chat, webhook, mail or X endpoint that can post one message.
#[async_trait::async_trait]
pub trait AlertChannel: Send + 'static {
    /// Posts one message.
    async fn post(&mut self, alert: &Alert) -> Result<(), SinkError>;
}

#[derive(Debug)]
struct Group {
    last_alert: Option<Instant>,
    held: u64,
    last_seen: Instant,
    order: u64,
}

/// The dedupe and digest state.
#[derive(Debug)]
pub(crate) struct Digest {
    policy: AlertPolicy,
    groups: HashMap<(String, String, String), Group>,
    window_start: Instant,
    sent_in_window: usize,
    /// Arrival counter, to evict by recency even when the clock stands still.
    seq: u64,
    /// Held events of groups forgotten by eviction, still reported in the digest.
    evicted_held: u64,
}

/// HoneyPy's wording: "<node>: Possible *<service>* attack from <ip>".
fn headline(e: &Event) -> String {
    let service = e.service.as_deref().or(e.protocol.as_deref()).unwrap_or("unknown");
    let src = e.src_ip.map(|i| i.to_string()).unwrap_or_else(|| "unknown".into());
    format!("{}: Possible {service} attack from {src} ({})", e.node, e.kind)
}

impl Digest {
    pub(crate) fn new(policy: AlertPolicy) -> Self {
        Self {
            policy,
            groups: HashMap::new(),
            window_start: Instant::now(),
            sent_in_window: 0,
            seq: 0,
            evicted_held: 0,
        }
    }

    /// Takes one event; returns an alert to send now, if any.
    pub(crate) fn offer(&mut self, e: &Arc<Event>) -> Option<Alert> {
        if e.is_test() {
            return Some(Alert {
                text: format!("{}: apiary logger test event {}", e.node, e.id),
                kind: AlertKind::Test,
                event: Some(Arc::clone(e)),
            });
        }
        let now = Instant::now();
        self.roll_window(now);
        let key = (
            e.kind.as_str().to_owned(),
            e.service.as_deref().unwrap_or_default().to_owned(),
            e.src_ip.map(|i| i.to_string()).unwrap_or_default(),
        );
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_GROUPS {
            self.evict(now);
        }
        self.seq += 1;
        let g = self.groups.entry(key).or_insert(Group {
            last_alert: None,
            held: 0,
            last_seen: now,
            order: 0,
        });
        g.last_seen = now;
        g.order = self.seq;
        let quiet = g.last_alert.is_some_and(|t| now.duration_since(t) < self.policy.repeat_after);
        if !quiet && self.sent_in_window < self.policy.max_per_window {
            g.last_alert = Some(now);
            self.sent_in_window += 1;
            return Some(Alert {
                text: headline(e),
                kind: AlertKind::First,
                event: Some(Arc::clone(e)),
            });
        }
        g.held += 1;
        None
    }

    fn roll_window(&mut self, now: Instant) {
        if now.duration_since(self.window_start) >= self.policy.window {
            self.window_start = now;
            self.sent_in_window = 0;
        }
    }

    fn evict(&mut self, now: Instant) {
        let keep = self.policy.repeat_after;
        self.groups.retain(|_, g| g.held > 0 || now.duration_since(g.last_seen) < keep);
        if self.groups.len() >= MAX_GROUPS {
            let mut ages: Vec<u64> = self.groups.values().map(|g| g.order).collect();
            ages.sort_unstable();
            let cut = ages.get(MAX_GROUPS / 2).copied().unwrap_or(u64::MAX);
            let mut lost = 0;
            self.groups.retain(|_, g| {
                let keep = g.order >= cut;
                if !keep {
                    lost += g.held;
                }
                keep
            });
            self.evicted_held += lost;
        }
    }

    /// The digest of held-back events, once per window, when there is anything to say.
    pub(crate) fn due(&mut self, node: &str) -> Option<Alert> {
        let now = Instant::now();
        if now.duration_since(self.window_start) < self.policy.window {
            return None;
        }
        let mut held: Vec<(&(String, String, String), u64)> =
            self.groups.iter().filter(|(_, g)| g.held > 0).map(|(k, g)| (k, g.held)).collect();
        let total: u64 = held.iter().map(|(_, n)| n).sum::<u64>() + self.evicted_held;
        let out = if total == 0 {
            None
        } else {
            held.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let minutes = self.policy.window.as_secs().div_ceil(60).max(1);
            let mut text = format!("{node}: {total} similar events in the last {minutes} minutes:");
            for ((kind, service, src), n) in held.iter().take(10) {
                let _ = write!(text, "\n{n} x {kind} {service} from {src}");
            }
            if held.len() > 10 || self.evicted_held > 0 {
                let _ = write!(
                    text,
                    "\n... and more from {} other groups",
                    held.len().saturating_sub(10)
                );
            }
            Some(Alert { text, kind: AlertKind::Digest, event: None })
        };
        for g in self.groups.values_mut() {
            g.held = 0;
        }
        self.evicted_held = 0;
        self.window_start = now;
        self.sent_in_window = 0;
        out
    }
}

/// A sink that paces a channel with a [`Digest`].
pub struct AlertSink<C> {
    channel: C,
    digest: Digest,
    node: String,
    /// Messages decided but not yet posted (kept across failed sends so a retried batch is
    /// not counted twice).
    pending: std::collections::VecDeque<Alert>,
    /// The last event absorbed into the digest, to recognise a retried batch.
    absorbed: Option<uuid::Uuid>,
}

impl<C: AlertChannel> AlertSink<C> {
    /// Wraps `channel`.
    pub fn new(channel: C, policy: AlertPolicy) -> Self {
        Self {
            channel,
            digest: Digest::new(policy),
            node: String::new(),
            pending: Default::default(),
            absorbed: None,
        }
    }

    async fn post_pending(&mut self) -> Result<(), SinkError> {
        while let Some(alert) = self.pending.front() {
            self.channel.post(alert).await?;
            self.pending.pop_front();
        }
        Ok(())
    }

    /// The wrapped channel (tests).
    pub fn channel(&self) -> &C {
        &self.channel
    }
}

#[async_trait::async_trait]
impl<C: AlertChannel> Sink for AlertSink<C> {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let last = batch.last().map(|e| e.id);
        if last.is_some() && last != self.absorbed {
            for e in batch {
                if self.node.is_empty() {
                    self.node = e.node.to_string();
                }
                if let Some(a) = self.digest.offer(e) {
                    // Bound the backlog of a dead channel: the oldest decisions go first.
                    if self.pending.len() >= 1000 {
                        self.pending.pop_front();
                    }
                    self.pending.push_back(a);
                }
            }
            self.absorbed = last;
        }
        self.post_pending().await
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(
            (self.digest.policy.window / 10)
                .clamp(Duration::from_millis(10), Duration::from_secs(30)),
        )
    }

    async fn tick(&mut self) -> Result<(), SinkError> {
        if let Some(d) = self.digest.due(&self.node) {
            self.pending.push_back(d);
        }
        self.post_pending().await
    }
}

#[cfg(test)]
mod tests {
    use apiary_event::Kind;

    use super::*;

    fn ev(ip: &str) -> Arc<Event> {
        let mut e = Event::new(Kind::SESSION_OPEN, Arc::from("edge"));
        e.service = Some(Arc::from("Telnet"));
        e.src_ip = Some(ip.parse().unwrap());
        Arc::new(e)
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_are_held_and_summarised_once_per_window() {
        let mut d = Digest::new(AlertPolicy {
            window: Duration::from_secs(60),
            max_per_window: 2,
            repeat_after: Duration::from_secs(600),
        });
        assert_eq!(d.offer(&ev("192.0.2.1")).unwrap().kind, AlertKind::First);
        for _ in 0..99 {
            assert!(d.offer(&ev("192.0.2.1")).is_none());
        }
        assert!(d.offer(&ev("192.0.2.2")).is_some());
        // The window's budget is spent: a third source is held too.
        assert!(d.offer(&ev("192.0.2.3")).is_none());
        assert!(d.due("edge").is_none());
        tokio::time::advance(Duration::from_secs(61)).await;
        let digest = d.due("edge").unwrap();
        assert!(
            digest.text.contains("100 similar events in the last 1 minutes"),
            "{}",
            digest.text
        );
        assert!(digest.text.contains("99 x session.open Telnet from 192.0.2.1"), "{}", digest.text);
        assert!(d.due("edge").is_none());
        // Still quiet for repeat_after; a new window allows the new source.
        assert!(d.offer(&ev("192.0.2.1")).is_none());
        assert!(d.offer(&ev("192.0.2.4")).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn group_table_is_bounded() {
        let mut d = Digest::new(AlertPolicy { max_per_window: 0, ..AlertPolicy::default() });
        for i in 0..(MAX_GROUPS as u32 * 2) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let mut e = Event::new(Kind::SESSION_OPEN, Arc::from("edge"));
            e.src_ip = Some(ip.into());
            d.offer(&Arc::new(e));
        }
        assert!(d.groups.len() <= MAX_GROUPS);
    }
}
