//! Admission control: a global cap, a per-source cap and a per-source token bucket, all in
//! bounded tables so spoofed or distributed floods cannot grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Why a connection was refused before any service code ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The pot-wide connection cap is reached.
    Global,
    /// The source has too many open connections.
    PerIp,
    /// The source opens connections too fast.
    Rate,
}

impl RefuseReason {
    /// The name written in `session.refused` events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "max_connections",
            Self::PerIp => "max_connections_per_ip",
            Self::Rate => "new_connections_per_sec",
        }
    }
}

/// Token buckets keyed by source address, bounded to `cap` entries.
#[derive(Debug)]
pub(crate) struct RateTable {
    rate: f64,
    burst: f64,
    cap: usize,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateTable {
    pub(crate) fn new(rate: f64, burst: f64, cap: usize) -> Self {
        Self { rate, burst: burst.max(1.0), cap: cap.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `ip`; false when the source is over its rate.
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else { return false };
        if !buckets.contains_key(&ip) && buckets.len() >= self.cap {
            // Forget sources whose bucket has refilled: they are indistinguishable from new.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
            if buckets.len() >= self.cap {
                // Still full of active sources: fail closed rather than grow.
                return false;
            }
        }
        let (tokens, last) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// Connection admission for one pot.
#[derive(Debug)]
pub(crate) struct Admission {
    global: Arc<Semaphore>,
    per_ip_max: u32,
    per_ip: Arc<Mutex<HashMap<IpAddr, u32>>>,
    rate: RateTable,
}

/// Held for the life of an admitted connection; releases its slots when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    _global: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut map) = self.per_ip.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: &crate::Limits) -> Self {
        Self {
            global: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            per_ip_max: limits.max_connections_per_ip.max(1),
            per_ip: Arc::new(Mutex::new(HashMap::new())),
            rate: RateTable::new(
                limits.new_connections_per_sec,
                limits.new_connections_burst,
                limits.rate_table_size,
            ),
        }
    }

    /// Admits a connection from `ip` or says why not. The per-source table only holds
    /// sources with live connections, so it is bounded by the global cap.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Permit, RefuseReason> {
        let global =
            Arc::clone(&self.global).try_acquire_owned().map_err(|_| RefuseReason::Global)?;
        {
            let Ok(mut map) = self.per_ip.lock() else { return Err(RefuseReason::Global) };
            let n = map.entry(ip).or_insert(0);
            if *n >= self.per_ip_max {
                return Err(RefuseReason::PerIp);
            }
            if !self.rate.allow(ip) {
                if *n == 0 {
                    map.remove(&ip);
                }
                return Err(RefuseReason::Rate);
            }
            *n += 1;
        }
        Ok(Permit { _global: global, ip, per_ip: Arc::clone(&self.per_ip) })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(global: usize, per_ip: u32, rate: f64, burst: f64) -> crate::Limits {
        crate::Limits {
            max_connections: global,
            max_connections_per_ip: per_ip,
            new_connections_per_sec: rate,
            new_connections_burst: burst,
            ..crate::Limits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn caps_per_ip_and_globally_and_releases() {
        let a = Admission::new(&limits(3, 2, 0.0, 1.0));
        let ip1: IpAddr = "198.51.100.1".parse().unwrap();
        let ip2: IpAddr = "198.51.100.2".parse().unwrap();
        let p1 = a.admit(ip1).unwrap();
        let _p2 = a.admit(ip1).unwrap();
        assert_eq!(a.admit(ip1).unwrap_err(), RefuseReason::PerIp);
        let _p3 = a.admit(ip2).unwrap();
        assert_eq!(a.admit(ip2).unwrap_err(), RefuseReason::Global);
        drop(p1);
        assert!(a.admit(ip1).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_and_refills() {
        let a = Admission::new(&limits(100, 100, 1.0, 2.0));
        let ip: IpAddr = "2001:db8::5".parse().unwrap();
        let _x = a.admit(ip).unwrap();
        let _y = a.admit(ip).unwrap();
        assert_eq!(a.admit(ip).unwrap_err(), RefuseReason::Rate);
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(a.admit(ip).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn rate_table_stays_bounded_under_many_sources() {
        let t = RateTable::new(1.0, 1.0, 100);
        let mut allowed = 0;
        for i in 0..10_000u32 {
            if t.allow(IpAddr::from(i.to_be_bytes())) {
                allowed += 1;
            }
        }
        assert!(t.len() <= 100);
        assert_eq!(allowed, 100, "fails closed once full of active sources");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(t.allow("203.0.113.9".parse().unwrap()), "idle entries are evicted");
    }
}
