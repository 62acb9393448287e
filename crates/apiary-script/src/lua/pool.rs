//! Session states built ahead of time: a background thread keeps a few ready per loaded
//! script, so a new TCP session takes one instead of building a sandbox on the accept path.
//! Each state serves one session and is never reused; spent states go back to the same thread
//! to be closed, off the session's task.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::service::{LuaCode, Prepared, prepare};
use crate::{Limits, Output, ScriptError};

/// Most states a pool keeps ready (each is a full sandbox, about 25 KiB of Lua heap).
pub const MAX_POOL: usize = 256;
/// After a failed build the thread waits this long before trying again.
const RETRY: Duration = Duration::from_secs(1);

struct Queues {
    ready: Vec<Prepared>,
    spent: Vec<Prepared>,
    closed: bool,
}

struct Shared {
    code: Arc<LuaCode>,
    limits: Limits,
    output: Output,
    size: usize,
    queues: Mutex<Queues>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // A panic while holding the lock can only come from a bug in this file; the queues
        // are still consistent (plain pushes and pops), so carry on with them.
        self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The ready states of one loaded script. Dropping it (the script was reloaded or the
/// service stopped) stops its thread, which closes the states it still holds.
pub(crate) struct SessionPool {
    shared: Arc<Shared>,
}

impl SessionPool {
    /// Starts the thread that keeps `size` (at most [`MAX_POOL`]) states of `code` ready.
    pub(crate) fn start(
        code: Arc<LuaCode>,
        limits: &Limits,
        output: Output,
        size: usize,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            code,
            limits: limits.clone(),
            output,
            size: size.min(MAX_POOL),
            queues: Mutex::new(Queues { ready: Vec::new(), spent: Vec::new(), closed: false }),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new().name("apiary-lua-pool".into()).spawn(move || fill(&worker))?;
        Ok(Self { shared })
    }

    /// A state nobody has used, from the pool or, when it is empty, built now.
    pub(crate) fn take(&self) -> Result<Prepared, ScriptError> {
        let ready = {
            let mut q = self.shared.lock();
            q.ready.pop()
        };
        self.shared.wake.notify_one();
        match ready {
            Some(state) => Ok(state),
            None => {
                let s = &self.shared;
                prepare(&s.code, &s.limits, s.output.clone())
            }
        }
    }

    /// Hands a spent state to the pool's thread to be closed; closed here when that thread
    /// is behind (the backlog is bounded like the pool).
    pub(crate) fn retire(&self, state: Prepared) {
        let backlog = {
            let mut q = self.shared.lock();
            if q.spent.len() < self.shared.size.max(1) * 2 {
                q.spent.push(state);
                None
            } else {
                Some(state)
            }
        };
        if backlog.is_none() {
            self.shared.wake.notify_one();
        }
        drop(backlog);
    }

    /// How many states are ready now.
    pub(crate) fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }
}

impl Drop for SessionPool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

/// The pool's thread: closes spent states and tops the pool up until it is dropped.
fn fill(shared: &Shared) {
    let mut q = shared.lock();
    loop {
        if q.closed {
            let (ready, spent) = (std::mem::take(&mut q.ready), std::mem::take(&mut q.spent));
            drop(q);
            drop((ready, spent));
            return;
        }
        if !q.spent.is_empty() {
            let spent = std::mem::take(&mut q.spent);
            drop(q);
            drop(spent);
            q = shared.lock();
            continue;
        }
        if q.ready.len() < shared.size {
            drop(q);
            let built = prepare(&shared.code, &shared.limits, shared.output.clone());
            q = shared.lock();
            match built {
                Ok(state) => q.ready.push(state),
                Err(e) => {
                    tracing::error!("cannot build a Lua session state ahead of time: {e}");
                    q = shared
                        .wake
                        .wait_timeout(q, RETRY)
                        .map_or_else(|e| e.into_inner().0, |r| r.0);
                }
            }
            continue;
        }
        q = shared.wake.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_state_is_small_and_the_pool_fills_to_its_size() {
        let src = b"function handle() tx(md5('x')) end";
        let code = Arc::new(LuaCode::compile(std::path::Path::new("t.lua"), src).unwrap());
        let limits = Limits::default();
        let state = prepare(&code, &limits, Output::Tracing).unwrap();
        // What `lua_pool` costs per state (docs/plugins.md says about 25 KiB).
        let used = state.lua().used_memory();
        assert!((8 << 10..256 << 10).contains(&used), "{used} bytes");

        let pool = SessionPool::start(code, &limits, Output::Tracing, 3).unwrap();
        let filled = |pool: &SessionPool| {
            for _ in 0..1000 {
                if pool.ready() == 3 {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        assert!(filled(&pool), "ready: {}", pool.ready());
        // Taking one wakes the thread, which builds a replacement (possibly before `ready()`
        // could see two, so the count in between is not asserted) and the pool is full again.
        let taken = pool.take().unwrap();
        pool.retire(taken);
        assert!(filled(&pool), "ready: {}", pool.ready());
        // And it stops there.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pool.ready(), 3);
    }
}
