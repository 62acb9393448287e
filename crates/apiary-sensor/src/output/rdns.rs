//! Reverse DNS for `plain` lines: a bounded cache (results and failures kept 120 s, like
//! PokieStream's plugin) filled by resolver threads, so a slow resolver only delays the output
//! thread by a capped wait and never touches capture.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Looks up a host name for an address.
pub trait Rdns: Send {
    /// The name of `ip`, if known within the implementation's wait budget.
    fn name(&mut self, ip: IpAddr) -> Option<String>;
}

/// No reverse lookups (the address is printed instead).
pub struct NoRdns;

impl Rdns for NoRdns {
    fn name(&mut self, _ip: IpAddr) -> Option<String> {
        None
    }
}

/// How long an answer (or a failure) stays cached.
const TTL: Duration = Duration::from_secs(120);

enum Slot {
    Pending,
    Done(Option<String>, Instant),
}

struct Cache {
    map: HashMap<IpAddr, Slot>,
    order: VecDeque<IpAddr>,
    cap: usize,
}

impl Cache {
    fn insert(&mut self, ip: IpAddr, slot: Slot) {
        if self.map.insert(ip, slot).is_none() {
            self.order.push_back(ip);
            while self.map.len() > self.cap {
                let Some(old) = self.order.pop_front() else { break };
                self.map.remove(&old);
            }
        }
    }
}

/// A cached resolver backed by the system resolver (`getnameinfo`) on two threads.
pub struct CachedRdns {
    shared: Arc<(Mutex<Cache>, Condvar)>,
    tx: SyncSender<IpAddr>,
    wait: Duration,
}

impl CachedRdns {
    /// A resolver keeping at most `cap` addresses and waiting at most `wait` per miss.
    pub fn new(cap: usize, wait: Duration) -> Self {
        Self::with_lookup(cap, wait, Arc::new(system_lookup))
    }

    /// Same with an injected lookup function (tests).
    pub fn with_lookup(
        cap: usize,
        wait: Duration,
        lookup: Arc<dyn Fn(IpAddr) -> Option<String> + Send + Sync>,
    ) -> Self {
        let shared = Arc::new((
            Mutex::new(Cache { map: HashMap::new(), order: VecDeque::new(), cap: cap.max(1) }),
            Condvar::new(),
        ));
        let (tx, rx) = sync_channel::<IpAddr>(256);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..2 {
            let rx = Arc::clone(&rx);
            let shared = Arc::clone(&shared);
            let lookup = Arc::clone(&lookup);
            std::thread::Builder::new()
                .name("sensor-rdns".into())
                .spawn(move || {
                    loop {
                        let ip = match rx.lock() {
                            Ok(r) => match r.recv() {
                                Ok(ip) => ip,
                                Err(_) => return,
                            },
                            Err(_) => return,
                        };
                        let name = lookup(ip);
                        let (lock, cv) = &*shared;
                        if let Ok(mut c) = lock.lock() {
                            c.insert(ip, Slot::Done(name, Instant::now()));
                        }
                        cv.notify_all();
                    }
                })
                .ok();
        }
        Self { shared, tx, wait }
    }
}

impl Rdns for CachedRdns {
    fn name(&mut self, ip: IpAddr) -> Option<String> {
        let (lock, cv) = &*self.shared;
        let mut c = lock.lock().ok()?;
        match c.map.get(&ip) {
            Some(Slot::Done(name, at)) if at.elapsed() < TTL => return name.clone(),
            Some(Slot::Pending) => {}
            _ => match self.tx.try_send(ip) {
                Ok(()) => c.insert(ip, Slot::Pending),
                // Resolver backlog full: print the address now rather than wait.
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return None,
            },
        }
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(Slot::Done(name, _)) = c.map.get(&ip) {
                return name.clone();
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            c = cv.wait_timeout(c, left).ok()?.0;
        }
    }
}

/// `getnameinfo` with `NI_NAMEREQD`: a name or nothing.
fn system_lookup(ip: IpAddr) -> Option<String> {
    let mut host = [0 as libc::c_char; 1025];
    let rc = match ip {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain old data; zeroed is a valid value.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.octets()) };
            // SAFETY: pointers and lengths describe live, correctly sized buffers.
            unsafe {
                libc::getnameinfo(
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
        IpAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain old data; zeroed is a valid value.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_addr = libc::in6_addr { s6_addr: a.octets() };
            // SAFETY: as above.
            unsafe {
                libc::getnameinfo(
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo succeeded, so `host` holds a NUL-terminated string.
    let s = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn cached_and_bounded() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = Arc::clone(&calls);
        let mut r = CachedRdns::with_lookup(
            2,
            Duration::from_secs(5),
            Arc::new(move |ip: IpAddr| {
                c2.fetch_add(1, Ordering::SeqCst);
                Some(format!("host-{ip}"))
            }),
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(r.name(a).as_deref(), Some("host-192.0.2.1"));
        assert_eq!(r.name(a).as_deref(), Some("host-192.0.2.1"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        for i in 2..10u8 {
            r.name(IpAddr::from([192, 0, 2, i]));
        }
        let len = r.shared.0.lock().unwrap().map.len();
        assert!(len <= 2, "{len}");
    }

    #[test]
    fn slow_lookup_does_not_block_past_the_wait() {
        let mut r = CachedRdns::with_lookup(
            8,
            Duration::from_millis(20),
            Arc::new(|_| {
                std::thread::sleep(Duration::from_millis(300));
                Some("late".into())
            }),
        );
        assert_eq!(r.name("192.0.2.9".parse().unwrap()), None);
    }
}
