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
use super::meter::Meter;
use super::scheduler::{Local, Shared, CURRENT};
use super::sync::{lock, wait_timeout_while, write};

pub mod condition;

/// Why a queued job is dropped without running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discard {
    Cancelled,
    Broken(String),
}

/// A unit of work. `run` or `discard` is called exactly once, on whichever thread takes it.
pub trait Job: Send {
    /// Returns false when the work did not start (its future was cancelled while queued).
    fn run(self: Box<Self>) -> bool;
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
    /// Threads alive now (retiring ones included until they exit).
    pub workers: usize,
    pub target: usize,
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

    /// Runs jobs until the pool is shut down and no job is left, parking when idle. Returns
    /// early, between jobs, when the pool has more workers than its target.
    pub fn run(&self, detach: Detach) {
        let shared = &self.local.shared;
        loop {
            if shared.try_retire() {
                shared.remove_worker(&self.local);
                // A shutdown that began meanwhile may have looked for jobs before they reached
                // the injector: run what is left rather than strand it.
                if shared.closing.load(Ordering::SeqCst) {
                    while let Some(job) = shared.find_job(&self.local) {
                        shared.run_job(job);
                    }
                }
                return;
            }
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
            shared.enter_idle();
            detach(&|| shared.park(None, None, true));
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
    name_prefix: String,
    body: WorkerBody,
    /// Join handles; its lock also orders starting threads against shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The process that started the threads; in a forked child the pool is never touched.
    owner_pid: u32,
}

impl Pool {
    /// A pool of at most `workers` threads named `{name_prefix}_{slot}`, each running `body`,
    /// started on demand: a submit that finds no idle worker starts one, as
    /// `ThreadPoolExecutor` does. With a `meter`, every job's CPU and wall time is measured.
    pub fn new(
        workers: usize,
        name_prefix: &str,
        body: WorkerBody,
        meter: Option<Meter>,
    ) -> Result<Pool, CoreError> {
        if workers == 0 {
            return Err(CoreError::InvalidArgument(
                "max_workers must be greater than 0".into(),
            ));
        }
        let shared = Arc::new(Shared::new(meter));
        {
            let mut pools = lock(&POOLS);
            pools.retain(|weak| weak.strong_count() > 0);
            pools.push(Arc::downgrade(&shared));
        }
        let pool = Pool {
            shared,
            name_prefix: name_prefix.to_owned(),
            body,
            threads: Mutex::new(Vec::with_capacity(workers)),
            owner_pid: std::process::id(),
        };
        if let Err(e) = pool.set_size(workers, false) {
            pool.shared.close(None);
            return Err(e);
        }
        Ok(pool)
    }

    /// Sets the number of workers: starts threads at once to grow; to shrink, surplus workers
    /// retire between jobs, handing their queued jobs to the others (none is dropped or run
    /// twice). A shut-down pool keeps its size.
    pub fn resize(&self, workers: usize) -> Result<(), CoreError> {
        self.set_size(workers, true)
    }

    fn set_size(&self, workers: usize, grow: bool) -> Result<(), CoreError> {
        if workers == 0 {
            return Err(CoreError::InvalidArgument(
                "workers must be greater than 0".into(),
            ));
        }
        if workers > u32::MAX as usize {
            // The size word packs the count in 32 bits; no machine runs that many threads.
            return Err(CoreError::InvalidArgument(format!(
                "workers must be at most {}",
                u32::MAX
            )));
        }
        let mut threads = lock(&self.threads);
        if self.shared.closing.load(Ordering::SeqCst) {
            return Ok(());
        }
        threads.retain(|handle| !handle.is_finished());
        if let Some(meter) = &self.shared.meter {
            meter.new_epoch();
        }
        let spawn = self.shared.set_target(workers, grow);
        if spawn == 0 {
            self.shared.notify_all(); // idle surplus workers wake up to retire
        }
        for started in 0..spawn {
            match self.spawn() {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    for _ in started..spawn {
                        self.shared.unreserve();
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Starts one worker; the caller holds `threads` and has reserved it in the pool's size.
    fn spawn(&self) -> Result<JoinHandle<()>, CoreError> {
        let deque = Worker::new_lifo();
        let index = self.shared.add_slot(deque.stealer());
        let shared = self.shared.clone();
        let body = self.body.clone();
        *lock(&shared.live) += 1;
        let spawned = thread::Builder::new()
            .name(format!("{}_{index}", self.name_prefix))
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
        spawned.map_err(|e| {
            *lock(&self.shared.live) -= 1;
            write(&self.shared.stealers)[index] = None;
            CoreError::Spawn(e.to_string())
        })
    }

    pub fn submit(&self, job: BoxedJob) -> Result<(), CoreError> {
        if !self.shared.push(job)? && self.shared.reserve_one() {
            self.start_reserved()?;
        }
        Ok(())
    }

    /// Starts the worker `reserve_one` made room for. Also while shutting down: the job that
    /// asked for it was admitted, and a pool that never started a thread must still run it.
    fn start_reserved(&self) -> Result<(), CoreError> {
        let mut threads = lock(&self.threads);
        threads.retain(|handle| !handle.is_finished());
        match self.spawn() {
            Ok(handle) => {
                threads.push(handle);
                Ok(())
            }
            Err(e) => {
                self.shared.unreserve();
                // The job stays queued for the workers there are; with none, say why.
                if self.shared.size().active == 0 {
                    Err(e)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The number of workers the pool is sized to now.
    pub fn target(&self) -> usize {
        self.shared.size().target
    }

    pub fn set_meter_batch(&self, batch_size: usize) {
        if let Some(meter) = &self.shared.meter {
            meter.set_batch_size(batch_size);
        }
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
            detach(&|| shared.park(Some(done), deadline, false));
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
        let (live, _) = wait_timeout_while(&self.shared.exited, live, timeout, |live| *live > own);
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
            target: s.size().target,
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

/// Whether the calling thread is a worker of some pool of this process.
pub fn on_a_worker_thread() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// Shuts down every pool of this process (interpreter exit); `wait_all_exited` then waits.
pub fn shutdown_all() {
    for shared in lock(&POOLS).iter().filter_map(Weak::upgrade) {
        shared.close(None);
    }
}

/// Waits up to `timeout` for every thread of every pool to exit; true when all have. Bounded,
/// so that the caller can check for Ctrl-C between calls.
pub fn wait_all_exited(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let pools: Vec<Arc<Shared>> = lock(&POOLS).iter().filter_map(Weak::upgrade).collect();
    pools.iter().all(|shared| {
        let left = deadline.saturating_duration_since(Instant::now());
        let live = lock(&shared.live);
        let (live, _) = wait_timeout_while(&shared.exited, live, left, |live| *live > 0);
        *live == 0
    })
}

/// In a forked child the parent's threads do not exist: forget its pools without touching them.
/// Called on the forking thread, the only thread of the child.
pub fn forget_pools_after_fork() {
    std::mem::forget(std::mem::take(&mut *lock(&POOLS)));
    // If the fork happened inside a job, this thread is no worker of anything in the child.
    std::mem::forget(CURRENT.with(|c| c.borrow_mut().take()));
}

#[cfg(test)]
mod tests;
