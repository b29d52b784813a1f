//! The scheduling state a pool's threads share: the injector, the workers' stealers, admission,
//! parking, and the job search order. `pool.rs` owns the threads and the public API.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use super::error::CoreError;
use super::pool::{BoxedJob, Discard};

#[derive(Default)]
pub(super) struct Admission {
    pub(super) shutdown: bool,
    pub(super) broken: Option<String>,
}

pub(super) struct Shared {
    pub(super) injector: Injector<BoxedJob>,
    pub(super) stealers: RwLock<Vec<Stealer<BoxedJob>>>,
    /// Submitters hold it shared while they push and shutdown takes it exclusively, so once
    /// `closing` is set no push can still be in flight and draining workers see every job.
    pub(super) admission: RwLock<Admission>,
    pub(super) closing: AtomicBool,
    pub(super) sleep: Mutex<()>,
    pub(super) wake: Condvar,
    pub(super) sleepers: AtomicUsize,
    pub(super) live: Mutex<usize>,
    pub(super) exited: Condvar,
    pub(super) submitted: AtomicU64,
    pub(super) completed: AtomicU64,
    pub(super) stolen: AtomicU64,
    pub(super) queued: AtomicU64,
    pub(super) panics: AtomicU64,
}

pub(super) struct Local {
    pub(super) shared: Arc<Shared>,
    pub(super) deque: Worker<BoxedJob>,
    pub(super) index: usize,
}

thread_local! {
    /// The pool this thread works for, if it is a worker thread.
    pub(super) static CURRENT: RefCell<Option<Rc<Local>>> = const { RefCell::new(None) };
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the protected data stays consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(super) fn new(stealers: Vec<Stealer<BoxedJob>>) -> Shared {
        Shared {
            injector: Injector::new(),
            stealers: RwLock::new(stealers),
            admission: RwLock::new(Admission::default()),
            closing: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            live: Mutex::new(0),
            exited: Condvar::new(),
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            stolen: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            panics: AtomicU64::new(0),
        }
    }

    pub(super) fn current_local(self: &Arc<Self>) -> Option<Rc<Local>> {
        CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|local| Arc::ptr_eq(&local.shared, self))
                .cloned()
        })
    }

    pub(super) fn push(self: &Arc<Self>, job: BoxedJob) -> Result<(), CoreError> {
        let admission = self.admission.read().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = &admission.broken {
            return Err(CoreError::Broken(reason.clone()));
        }
        if admission.shutdown {
            return Err(CoreError::Shutdown);
        }
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.current_local() {
            Some(local) => local.deque.push(job),
            None => self.injector.push(job),
        }
        drop(admission);
        self.notify_one();
        Ok(())
    }

    /// Pairs with the SeqCst increment of `sleepers` in `park`: either the parker sees the new
    /// job, or we see the parker and wake it under the sleep mutex.
    pub(super) fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&self.sleep);
            self.wake.notify_one();
        }
    }

    pub(super) fn notify_all(&self) {
        let _guard = lock(&self.sleep);
        self.wake.notify_all();
    }

    pub(super) fn has_work(&self) -> bool {
        !self.injector.is_empty()
            || self
                .stealers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|s| !s.is_empty())
    }

    /// Local pop, then a batch from the injector, then one job from a sibling.
    pub(super) fn find_job(&self, local: &Local) -> Option<BoxedJob> {
        if let Some(job) = local.deque.pop() {
            return Some(job);
        }
        loop {
            match self.injector.steal_batch_and_pop(&local.deque) {
                Steal::Success(job) => return Some(job),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        let stealers = self.stealers.read().unwrap_or_else(|e| e.into_inner());
        let n = stealers.len();
        loop {
            let mut retry = false;
            for k in 1..n {
                match stealers[(local.index + k) % n].steal() {
                    Steal::Success(job) => {
                        self.stolen.fetch_add(1, Ordering::Relaxed);
                        return Some(job);
                    }
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    pub(super) fn run_job(&self, job: BoxedJob) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        // Jobs catch their own panics; this is the backstop that keeps the worker alive.
        if catch_unwind(AssertUnwindSafe(|| job.run())).is_err() {
            self.panics.fetch_add(1, Ordering::Relaxed);
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Sleeps until there is work, the pool closes, `done` is set, or `deadline` passes.
    pub(super) fn park(&self, done: Option<&AtomicBool>, deadline: Option<Instant>) {
        let guard = lock(&self.sleep);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let ready = self.has_work()
            || self.closing.load(Ordering::SeqCst)
            || done.is_some_and(|d| d.load(Ordering::SeqCst));
        if !ready {
            match deadline {
                None => drop(self.wake.wait(guard).unwrap_or_else(|e| e.into_inner())),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    drop(
                        self.wake
                            .wait_timeout(guard, left)
                            .unwrap_or_else(|e| e.into_inner()),
                    );
                }
            }
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    pub(super) fn drain(&self) -> Vec<BoxedJob> {
        let mut jobs = Vec::new();
        loop {
            match self.injector.steal() {
                Steal::Success(job) => jobs.push(job),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        for stealer in self
            .stealers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            loop {
                match stealer.steal() {
                    Steal::Success(job) => jobs.push(job),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        self.queued.fetch_sub(jobs.len() as u64, Ordering::Relaxed);
        jobs
    }

    /// Stops admission; returns false if it was already stopped.
    pub(super) fn close(&self, broken: Option<String>) -> bool {
        let mut admission = self.admission.write().unwrap_or_else(|e| e.into_inner());
        let first = !admission.shutdown;
        admission.shutdown = true;
        if admission.broken.is_none() {
            admission.broken = broken;
        }
        self.closing.store(true, Ordering::SeqCst);
        drop(admission);
        self.notify_all();
        first
    }

    pub(super) fn discard_queued(&self, why: &Discard) {
        // No lock is held here: discarding a job touches its (Python) future.
        for job in self.drain() {
            job.discard(why);
        }
    }

    pub(super) fn live_workers(&self) -> usize {
        *lock(&self.live)
    }
}
