//! A re-entrant lock with a condition's waiter queue in one object: what a pool future needs of
//! `threading.Condition(threading.RLock())` (acquire, release, wait, notify). The binding
//! (`rust/python/pool_future.rs`) exposes it as `FutureCondition`; one small allocation per
//! future that the cyclic GC never sees, where `threading.Condition()` makes seven tracked ones.
//!
//! Threads are named by `thread_token()`, never by an OS id that a later thread could reuse.
//! Waits take a deadline and return when it passes, so the binding can wait in slices with the
//! interpreter released and run signal handlers between them (rules 1 and 5 of docs/design.md).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::core::sync::{lock, wait, wait_timeout};

/// The caller does not hold the lock (what `RLock.release()` refuses with `RuntimeError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOwned;

/// This thread's name for the lock: unique for the process's lifetime, never 0.
pub fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|token| *token)
}

#[derive(Default)]
struct State {
    /// The holder's token; 0 when free.
    owner: u64,
    /// How many times the holder has acquired it.
    depth: usize,
    /// Threads waiting for the lock to be free: only they need a (system call) wake-up.
    contenders: usize,
    next_ticket: u64,
    /// Tickets of threads in `wait`, oldest first.
    waiting: VecDeque<u64>,
    /// Tickets notified but whose waiter has not yet seen it.
    notified: Vec<u64>,
}

/// The lock and its waiters. A `wait` is `begin_wait`, `wait_notified` until it says so or the
/// caller gives up, `end_wait`, then `acquire` again with the saved depth (`restore`).
#[derive(Default)]
pub struct ReentrantCondition {
    state: Mutex<State>,
    /// Signalled when the lock becomes free.
    freed: Condvar,
    /// Signalled when waiters are notified.
    woken: Condvar,
}

/// Waits on `condvar` until `until` (forever when `None`); false when `until` has passed.
fn wait_until<'a>(
    condvar: &Condvar,
    guard: MutexGuard<'a, State>,
    until: Option<Instant>,
) -> Option<MutexGuard<'a, State>> {
    match until {
        None => Some(wait(condvar, guard)),
        Some(until) => {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            Some(wait_timeout(condvar, guard, left).0)
        }
    }
}

impl ReentrantCondition {
    pub fn new() -> Self {
        Self::default()
    }

    fn take(state: &mut State, me: u64, depth: usize) -> bool {
        if state.owner == me {
            state.depth += depth;
            true
        } else if state.owner == 0 {
            state.owner = me;
            state.depth = depth;
            true
        } else {
            false
        }
    }

    fn free(mut state: MutexGuard<'_, State>, freed: &Condvar) {
        state.owner = 0;
        let contended = state.contenders > 0;
        drop(state);
        if contended {
            freed.notify_one();
        }
    }

    /// Takes the lock (again, if `me` holds it) without waiting; false when another holds it.
    pub fn try_acquire(&self, me: u64) -> bool {
        Self::take(&mut lock(&self.state), me, 1)
    }

    /// Takes the lock `depth` times, waiting until `until` at most; false when it passed first.
    pub fn acquire(&self, me: u64, depth: usize, until: Option<Instant>) -> bool {
        let mut state = lock(&self.state);
        loop {
            if Self::take(&mut state, me, depth) {
                return true;
            }
            state.contenders += 1;
            let waited = wait_until(&self.freed, state, until);
            let timed_out = waited.is_none();
            state = waited.unwrap_or_else(|| lock(&self.state));
            state.contenders -= 1;
            if timed_out {
                return Self::take(&mut state, me, depth);
            }
        }
    }

    /// Releases one level of `me`'s hold.
    pub fn release(&self, me: u64) -> Result<(), NotOwned> {
        let mut state = lock(&self.state);
        if state.owner != me || state.depth == 0 {
            return Err(NotOwned);
        }
        state.depth -= 1;
        if state.depth == 0 {
            Self::free(state, &self.freed);
        }
        Ok(())
    }

    pub fn is_owned(&self, me: u64) -> bool {
        lock(&self.state).owner == me
    }

    /// Starts a wait: queues a ticket and releases the lock entirely. Returns the ticket and the
    /// depth to restore.
    pub fn begin_wait(&self, me: u64) -> Result<(u64, usize), NotOwned> {
        let mut state = lock(&self.state);
        if state.owner != me {
            return Err(NotOwned);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back(ticket);
        let depth = std::mem::take(&mut state.depth);
        Self::free(state, &self.freed);
        Ok((ticket, depth))
    }

    /// Waits until `ticket` is notified (true) or `until` passes (false).
    pub fn wait_notified(&self, ticket: u64, until: Option<Instant>) -> bool {
        let mut state = lock(&self.state);
        loop {
            if state.notified.contains(&ticket) {
                return true;
            }
            match wait_until(&self.woken, state, until) {
                Some(guard) => state = guard,
                None => return false,
            }
        }
    }

    /// Ends a wait: true when `ticket` was notified (a notification that raced with a timeout
    /// counts, as in `threading.Condition`).
    pub fn end_wait(&self, ticket: u64) -> bool {
        let mut state = lock(&self.state);
        if let Some(at) = state.notified.iter().position(|&t| t == ticket) {
            state.notified.swap_remove(at);
            return true;
        }
        if let Some(at) = state.waiting.iter().position(|&t| t == ticket) {
            state.waiting.remove(at);
        }
        false
    }

    /// Wakes up to `n` waiters, oldest first; `me` must hold the lock.
    pub fn notify(&self, me: u64, n: usize) -> Result<(), NotOwned> {
        let mut state = lock(&self.state);
        if state.owner != me {
            return Err(NotOwned);
        }
        let n = n.min(state.waiting.len());
        if n > 0 {
            let woken: Vec<u64> = state.waiting.drain(..n).collect();
            state.notified.extend(woken);
            drop(state);
            self.woken.notify_all();
        }
        Ok(())
    }

    /// True when some thread is in `wait` and not yet notified.
    pub fn has_waiters(&self) -> bool {
        !lock(&self.state).waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn reentrant_and_owned() {
        let c = ReentrantCondition::new();
        let me = thread_token();
        assert!(c.try_acquire(me));
        assert!(c.try_acquire(me));
        assert!(c.is_owned(me));
        assert_eq!(c.release(me), Ok(()));
        assert!(c.is_owned(me));
        assert_eq!(c.release(me), Ok(()));
        assert!(!c.is_owned(me));
        assert_eq!(c.release(me), Err(NotOwned));
    }

    #[test]
    fn another_thread_waits_for_the_lock() {
        let c = Arc::new(ReentrantCondition::new());
        let me = thread_token();
        assert!(c.try_acquire(me));
        let other = {
            let c = c.clone();
            thread::spawn(move || {
                let them = thread_token();
                assert!(!c.try_acquire(them));
                let soon = Instant::now() + Duration::from_millis(10);
                assert!(!c.acquire(them, 1, Some(soon)));
                assert!(c.acquire(them, 1, None));
                c.release(them).unwrap();
            })
        };
        thread::sleep(Duration::from_millis(50));
        c.release(me).unwrap();
        other.join().unwrap();
        assert!(c.try_acquire(me));
    }

    #[test]
    fn wait_releases_every_level_and_notify_wakes_in_order() {
        let c = Arc::new(ReentrantCondition::new());
        let me = thread_token();
        let (first, second) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let spawn_waiter = |woken: Arc<AtomicU64>| {
            let c = c.clone();
            thread::spawn(move || {
                let them = thread_token();
                assert!(c.acquire(them, 2, None));
                let (ticket, depth) = c.begin_wait(them).unwrap();
                assert_eq!(depth, 2);
                let notified = c.wait_notified(ticket, None);
                assert!(c.end_wait(ticket) && notified);
                assert!(c.acquire(them, depth, None));
                woken.store(1, Ordering::SeqCst);
                c.release(them).unwrap();
                c.release(them).unwrap();
            })
        };
        let a = spawn_waiter(first.clone());
        while !c.has_waiters() {
            thread::yield_now();
        }
        let b = spawn_waiter(second.clone());
        while lock(&c.state).waiting.len() < 2 {
            thread::yield_now();
        }
        assert!(c.try_acquire(me));
        c.notify(me, 1).unwrap();
        c.release(me).unwrap();
        a.join().unwrap();
        assert_eq!(second.load(Ordering::SeqCst), 0);
        assert!(c.try_acquire(me));
        c.notify(me, usize::MAX).unwrap();
        c.release(me).unwrap();
        b.join().unwrap();
        assert_eq!(
            first.load(Ordering::SeqCst) + second.load(Ordering::SeqCst),
            2
        );
    }

    #[test]
    fn a_wait_times_out_and_leaves_no_ticket() {
        let c = ReentrantCondition::new();
        let me = thread_token();
        assert!(c.try_acquire(me));
        assert_eq!(c.notify(me, 1), Ok(()));
        let (ticket, depth) = c.begin_wait(me).unwrap();
        assert!(!c.wait_notified(ticket, Some(Instant::now())));
        assert!(!c.end_wait(ticket));
        assert!(!c.has_waiters());
        assert!(c.acquire(me, depth, None));
        assert_eq!(thread_token(), me);
        assert_eq!(c.begin_wait(0).err(), Some(NotOwned));
    }
}
