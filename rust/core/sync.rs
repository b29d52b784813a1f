//! Lock guards that survive a panic of another holder. `std`'s locks are poisoned when a thread
//! panics while holding one; these helpers take the guard anyway.
//!
//! Why that is sound here: poisoning guards against *logical* corruption, not memory unsafety
//! (the data is a valid `T` either way). Every lock of the core guards state that each critical
//! section keeps consistent at every point where it could panic: no user code runs under a lock
//! (rule 2 of docs/design.md), allocations under a lock are fallible (`try_reserve`), and jobs
//! and kernels run outside the locks inside `catch_unwind` (rule 4). Propagating the poison
//! instead would turn one panic, already reported as `RustPanicError`, into a panic in every
//! later call, some on threads where a panic aborts the process.

use std::sync::{
    Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, WaitTimeoutResult,
};
use std::time::Duration;

pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `condvar.wait(guard)`, as poison-tolerant as `lock`.
pub fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `condvar.wait_timeout(guard, timeout)`, as poison-tolerant as `lock`.
pub fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
    condvar
        .wait_timeout(guard, timeout)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `condvar.wait_timeout_while(guard, timeout, condition)`, as poison-tolerant as `lock`.
pub fn wait_timeout_while<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
    condition: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
    condvar
        .wait_timeout_while(guard, timeout, condition)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    /// Panics on another thread while `hold` keeps a guard of `shared`.
    fn panic_holding<T: Send + Sync + 'static>(shared: &Arc<T>, hold: fn(&T)) {
        let shared = Arc::clone(shared);
        let _ = thread::spawn(move || hold(&shared)).join();
    }

    #[test]
    fn a_poisoned_mutex_is_still_usable() {
        let mutex = Arc::new(Mutex::new(1));
        panic_holding(&mutex, |m| {
            let _guard = m.lock().unwrap();
            panic!("a holder panics");
        });
        assert!(mutex.is_poisoned());
        *lock(&mutex) += 1;
        let condvar = Condvar::new();
        let (guard, timed_out) = wait_timeout(&condvar, lock(&mutex), Duration::from_millis(1));
        assert!(timed_out.timed_out());
        assert_eq!(*guard, 2);
    }

    #[test]
    fn a_poisoned_rwlock_is_still_usable() {
        let rwlock = Arc::new(RwLock::new(vec![1]));
        panic_holding(&rwlock, |l| {
            let _guard = l.write().unwrap();
            panic!("a writer panics");
        });
        assert!(rwlock.is_poisoned());
        write(&rwlock).push(2);
        assert_eq!(*read(&rwlock), vec![1, 2]);
    }
}
