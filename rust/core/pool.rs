//! Work-stealing pool core: one LIFO deque per worker, a global FIFO injector, stealing between
//! siblings, and parking on a condvar when idle (no polling). Pure Rust: the Python binding
//! supplies the jobs (trait `Job`) and a `Detach` hook that releases the interpreter around
//! every wait, so this file never names Python.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_deque::Worker;

use super::error::CoreError;
use super::scheduler::{lock, Local, Shared, CURRENT};

/// Why a queued job is dropped without running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discard {
    Cancelled,
    Broken(String),
}

/// A unit of work. `run` or `discard` is called exactly once, on whichever thread takes it.
pub trait Job: Send {
    fn run(self: Box<Self>);
    fn discard(self: Box<Self>, why: &Discard);
}

pub type BoxedJob = Box<dyn Job>;

/// Runs `park` with the caller's interpreter released (the binding passes `py.detach`);
/// pure Rust callers pass `&|park| park()`.
pub type Detach<'a> = &'a dyn Fn(&(dyn Fn() + Sync));

/// What a worker thread runs: it receives its handle and must call `WorkerThread::run`
/// (after any per-thread set-up, which may instead break the pool).
pub type WorkerBody = Arc<dyn Fn(&WorkerThread) + Send + Sync>;

/// Worker threads get a larger stack than Rust's 2 MiB default: a helping worker runs other
/// jobs (and their Python frames) on top of the one that is waiting.
const WORKER_STACK_BYTES: usize = 16 << 20;

/// Every pool of this process, so that all threads can be joined before the interpreter exits.
static POOLS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub workers: usize,
    pub submitted: u64,
    pub completed: u64,
    pub stolen: u64,
    pub queued: u64,
    pub panics: u64,
}

/// The handle a worker thread's body receives.
pub struct WorkerThread {
    local: Rc<Local>,
}

impl WorkerThread {
    pub fn index(&self) -> usize {
        self.local.index
    }

    /// Runs jobs until the pool is shut down and no job is left, parking when idle.
    pub fn run(&self, detach: Detach) {
        let shared = &self.local.shared;
        loop {
            if let Some(job) = shared.find_job(&self.local) {
                shared.run_job(job);
                continue;
            }
            if shared.closing.load(Ordering::SeqCst) {
                // Re-check: a push admitted before closing may have landed after our search.
                match shared.find_job(&self.local) {
                    Some(job) => shared.run_job(job),
                    None => return,
                }
                continue;
            }
            detach(&|| shared.park(None, None));
        }
    }

    /// Marks the pool unusable (a failed initializer): queued jobs are discarded with `reason`,
    /// later submits fail with it, and every worker exits.
    pub fn break_pool(&self, reason: &str) {
        let shared = &self.local.shared;
        shared.close(Some(reason.to_owned()));
        shared.discard_queued(&Discard::Broken(reason.to_owned()));
    }
}

/// Wakes the pool's parked threads; handed to futures so that a helping worker parked on one
/// wakes when it completes.
#[derive(Clone)]
pub struct Waker {
    shared: Weak<Shared>,
}

impl Waker {
    pub fn wake(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.notify_all();
        }
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The process that started the threads; in a forked child the pool is never touched.
    owner_pid: u32,
}

impl Pool {
    /// Starts `workers` threads named `{name_prefix}_{index}`, each running `body`.
    pub fn new(workers: usize, name_prefix: &str, body: WorkerBody) -> Result<Pool, CoreError> {
        if workers == 0 {
            return Err(CoreError::InvalidArgument(
                "max_workers must be greater than 0".into(),
            ));
        }
        let deques: Vec<Worker<BoxedJob>> = (0..workers).map(|_| Worker::new_lifo()).collect();
        let shared = Arc::new(Shared::new(deques.iter().map(Worker::stealer).collect()));
        {
            let mut pools = lock(&POOLS);
            pools.retain(|weak| weak.strong_count() > 0);
            pools.push(Arc::downgrade(&shared));
        }
        let pool = Pool {
            shared,
            threads: Mutex::new(Vec::with_capacity(workers)),
            owner_pid: std::process::id(),
        };
        for (index, deque) in deques.into_iter().enumerate() {
            if let Err(e) = pool.spawn(index, deque, name_prefix, body.clone()) {
                pool.shared.close(None);
                return Err(e);
            }
        }
        Ok(pool)
    }

    fn spawn(
        &self,
        index: usize,
        deque: Worker<BoxedJob>,
        name_prefix: &str,
        body: WorkerBody,
    ) -> Result<(), CoreError> {
        let shared = self.shared.clone();
        *lock(&shared.live) += 1;
        let spawned = thread::Builder::new()
            .name(format!("{name_prefix}_{index}"))
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || {
                let local = Rc::new(Local {
                    shared: shared.clone(),
                    deque,
                    index,
                });
                CURRENT.with(|c| *c.borrow_mut() = Some(local.clone()));
                let worker = WorkerThread { local };
                // The body catches job panics itself; this keeps the live count right regardless.
                let _ = catch_unwind(AssertUnwindSafe(|| body(&worker)));
                CURRENT.with(|c| c.borrow_mut().take());
                drop(worker);
                let mut live = lock(&shared.live);
                *live -= 1;
                shared.exited.notify_all();
            });
        match spawned {
            Ok(handle) => {
                lock(&self.threads).push(handle);
                Ok(())
            }
            Err(e) => {
                *lock(&self.shared.live) -= 1;
                Err(CoreError::Spawn(e.to_string()))
            }
        }
    }

    pub fn submit(&self, job: BoxedJob) -> Result<(), CoreError> {
        self.shared.push(job)
    }

    pub fn max_workers(&self) -> usize {
        self.shared
            .stealers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_worker_thread(&self) -> bool {
        self.shared.current_local().is_some()
    }

    pub fn is_shutdown(&self) -> bool {
        self.shared.closing.load(Ordering::SeqCst)
    }

    pub fn waker(&self) -> Waker {
        Waker {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Called from a worker of this pool that waits for `done`: runs queued jobs (its own first,
    /// then the injector's, then its siblings') and parks while there are none, until `done` is
    /// set or `deadline` passes. Returns false at once on any other thread.
    pub fn help_until(&self, done: &AtomicBool, deadline: Option<Instant>, detach: Detach) -> bool {
        let Some(local) = self.shared.current_local() else {
            return false;
        };
        let shared = &self.shared;
        while !done.load(Ordering::SeqCst) {
            if let Some(job) = shared.find_job(&local) {
                shared.run_job(job);
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            detach(&|| shared.park(Some(done), deadline));
        }
        true
    }

    /// Stops accepting work. With `cancel`, queued jobs are discarded as cancelled; otherwise
    /// the workers run every queued job before they exit.
    pub fn shutdown(&self, cancel: bool) {
        self.shared.close(None);
        if cancel {
            self.shared.discard_queued(&Discard::Cancelled);
        }
    }

    /// Called from a worker of this pool during shutdown: runs what is queued, since this
    /// thread cannot exit while it is inside a job.
    pub fn drain_from_worker(&self) {
        if let Some(local) = self.shared.current_local() {
            while let Some(job) = self.shared.find_job(&local) {
                self.shared.run_job(job);
            }
        }
    }

    /// Waits up to `timeout` for every worker thread (but the calling one, if it is a worker)
    /// to exit, then joins them. Returns true when they have all exited.
    pub fn wait_exited(&self, timeout: Duration) -> bool {
        let me = thread::current().id();
        let own = usize::from(self.is_worker_thread());
        let live = lock(&self.shared.live);
        let (live, _) = self
            .shared
            .exited
            .wait_timeout_while(live, timeout, |live| *live > own)
            .unwrap_or_else(|e| e.into_inner());
        if *live > own {
            return false;
        }
        drop(live);
        join_others(&mut lock(&self.threads), me);
        true
    }

    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        PoolStats {
            workers: s.live_workers(),
            submitted: s.submitted.load(Ordering::Relaxed),
            completed: s.completed.load(Ordering::Relaxed),
            stolen: s.stolen.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            panics: s.panics.load(Ordering::Relaxed),
        }
    }
}

fn join_others(threads: &mut Vec<JoinHandle<()>>, me: ThreadId) {
    let (own, others): (Vec<_>, Vec<_>) = threads.drain(..).partition(|h| h.thread().id() == me);
    *threads = own;
    for handle in others {
        let _ = handle.join();
    }
}

impl Drop for Pool {
    /// A pool dropped without shutdown still runs its queued jobs, then its threads exit.
    fn drop(&mut self) {
        if std::process::id() == self.owner_pid {
            self.shared.close(None);
        } else {
            // A forked child's copy: its locks may be held by threads that do not exist here,
            // and its join handles name threads of another process. Leak it untouched.
            std::mem::forget(self.shared.clone());
            std::mem::forget(std::mem::take(
                self.threads.get_mut().unwrap_or_else(|e| e.into_inner()),
            ));
        }
    }
}

/// Shuts down every pool of this process and waits for all their threads (interpreter exit).
pub fn shutdown_all_and_wait() {
    let pools: Vec<Arc<Shared>> = lock(&POOLS).iter().filter_map(Weak::upgrade).collect();
    for shared in &pools {
        shared.close(None);
    }
    for shared in &pools {
        let live = lock(&shared.live);
        drop(
            shared
                .exited
                .wait_while(live, |live| *live > 0)
                .unwrap_or_else(|e| e.into_inner()),
        );
    }
}

/// In a forked child the parent's threads do not exist: forget its pools without touching them.
/// Called on the forking thread, the only thread of the child.
pub fn forget_pools_after_fork() {
    std::mem::forget(std::mem::take(&mut *lock(&POOLS)));
    // If the fork happened inside a job, this thread is no worker of anything in the child.
    std::mem::forget(CURRENT.with(|c| c.borrow_mut().take()));
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
