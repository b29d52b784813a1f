//! The scheduling state a pool's threads share: the injector, the workers' stealers, admission,
//! parking, and the job search order. `pool.rs` owns the threads and the public API.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use super::error::CoreError;
use super::meter::Meter;
use super::pool::{BoxedJob, Discard};
use super::sync::{lock, read, wait, wait_timeout, write};

#[derive(Default)]
pub(super) struct Admission {
    pub(super) shutdown: bool,
    pub(super) broken: Option<String>,
}

/// The target worker count (high half) and the workers that have not retired (low half), in one
/// word so that a retiring worker and a resize never both act on a stale view of the other.
#[derive(Clone, Copy)]
pub(super) struct Size {
    pub(super) target: usize,
    pub(super) active: usize,
}

impl Size {
    fn pack(self) -> u64 {
        ((self.target as u64) << 32) | self.active as u64
    }
    fn unpack(word: u64) -> Size {
        Size {
            target: (word >> 32) as usize,
            active: (word & 0xFFFF_FFFF) as usize,
        }
    }
}

pub(super) struct Shared {
    pub(super) injector: Injector<BoxedJob>,
    /// One slot per worker; a retired worker's slot is empty until a new worker reuses it.
    pub(super) stealers: RwLock<Vec<Option<Stealer<BoxedJob>>>>,
    size: AtomicU64,
    pub(super) meter: Option<Meter>,
    /// Submitters hold it shared while they push and shutdown takes it exclusively, so once
    /// `closing` is set no push can still be in flight and draining workers see every job.
    pub(super) admission: RwLock<Admission>,
    pub(super) closing: AtomicBool,
    /// Under it: wake-ups handed to idle workers that have not yet woken to take them.
    pub(super) sleep: Mutex<usize>,
    pub(super) wake: Condvar,
    pub(super) sleepers: AtomicUsize,
    /// Workers parked between jobs and not yet claimed by a submit: a submit that finds none
    /// starts a thread (up to the target), as `ThreadPoolExecutor` does.
    idle: AtomicUsize,
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

impl Shared {
    pub(super) fn new(meter: Option<Meter>) -> Shared {
        Shared {
            injector: Injector::new(),
            stealers: RwLock::new(Vec::new()),
            size: AtomicU64::new(0),
            meter,
            admission: RwLock::new(Admission::default()),
            closing: AtomicBool::new(false),
            sleep: Mutex::new(0),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
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

    /// Queues `job`; returns true when an idle worker was woken for it (else the caller may
    /// start a thread).
    pub(super) fn push(self: &Arc<Self>, job: BoxedJob) -> Result<bool, CoreError> {
        let admission = read(&self.admission);
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
        Ok(self.claim_idle())
    }

    /// Wakes an idle worker for a new job and takes it off the idle count; wakes a parked
    /// helper otherwise. Pairs with the SeqCst increments in `park`, as `notify_one` does.
    fn claim_idle(&self) -> bool {
        fence(Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) > 0 {
            let mut wakeups = lock(&self.sleep);
            let claimed = self
                .idle
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if claimed {
                *wakeups += 1;
            }
            self.wake.notify_one();
            return claimed;
        }
        self.notify_one();
        false
    }

    /// Reserves one more worker if the pool has fewer than its target; true if reserved.
    pub(super) fn reserve_one(&self) -> bool {
        let mut word = self.size.load(Ordering::SeqCst);
        loop {
            let size = Size::unpack(word);
            if size.active >= size.target {
                return false;
            }
            let new = Size {
                target: size.target,
                active: size.active + 1,
            };
            match self
                .size
                .compare_exchange(word, new.pack(), Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(current) => word = current,
            }
        }
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
        !self.injector.is_empty() || read(&self.stealers).iter().flatten().any(|s| !s.is_empty())
    }

    /// Local pop, then the injector's oldest job, then one job from a sibling. The injector is
    /// read one job at a time, never in batches into the local deque: a sibling stealing from a
    /// batch would start external submits out of order.
    pub(super) fn find_job(&self, local: &Local) -> Option<BoxedJob> {
        if let Some(job) = local.deque.pop() {
            return Some(job);
        }
        loop {
            match self.injector.steal() {
                Steal::Success(job) => return Some(job),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        let stealers = read(&self.stealers);
        let n = stealers.len();
        loop {
            let mut retry = false;
            for k in 1..n {
                let Some(stealer) = &stealers[(local.index + k) % n] else {
                    continue;
                };
                match stealer.steal() {
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
        let started = self.meter.as_ref().map(Meter::start);
        // Jobs catch their own panics; this is the backstop that keeps the worker alive.
        let ran = match catch_unwind(AssertUnwindSafe(|| job.run())) {
            Ok(ran) => ran,
            Err(_) => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                true
            }
        };
        self.completed.fetch_add(1, Ordering::Relaxed);
        if let (Some(meter), Some(started)) = (&self.meter, started) {
            // The meter's sink calls into the binding: keep a panic there from ending the worker.
            if catch_unwind(AssertUnwindSafe(|| meter.finish(started, ran))).is_err() {
                self.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn size(&self) -> Size {
        Size::unpack(self.size.load(Ordering::SeqCst))
    }

    /// Sets the target and, with `grow`, reserves the workers to start to reach it; returns
    /// how many (without `grow`, threads start on demand, one per submit that finds none idle).
    pub(super) fn set_target(&self, target: usize, grow: bool) -> usize {
        let mut word = self.size.load(Ordering::SeqCst);
        loop {
            let size = Size::unpack(word);
            let spawn = if grow {
                target.saturating_sub(size.active)
            } else {
                0
            };
            let new = Size {
                target,
                active: size.active + spawn,
            };
            match self
                .size
                .compare_exchange(word, new.pack(), Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return spawn,
                Err(current) => word = current,
            }
        }
    }

    /// Gives back a reservation whose thread could not be started.
    pub(super) fn unreserve(&self) {
        self.size.fetch_sub(1, Ordering::SeqCst);
    }

    /// True (and this worker is no longer counted) when there are more workers than the target.
    pub(super) fn try_retire(&self) -> bool {
        let mut word = self.size.load(Ordering::SeqCst);
        loop {
            let size = Size::unpack(word);
            if size.active <= size.target {
                return false;
            }
            let new = Size {
                target: size.target,
                active: size.active - 1,
            };
            match self
                .size
                .compare_exchange(word, new.pack(), Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(current) => word = current,
            }
        }
    }

    /// Takes a free slot (or a new one) for a new worker's stealer; returns its index.
    pub(super) fn add_slot(&self, stealer: Stealer<BoxedJob>) -> usize {
        let mut slots = write(&self.stealers);
        match slots.iter().position(Option::is_none) {
            Some(index) => {
                slots[index] = Some(stealer);
                index
            }
            None => {
                slots.push(Some(stealer));
                slots.len() - 1
            }
        }
    }

    /// A retiring worker hands its queued jobs to the injector and frees its slot.
    pub(super) fn remove_worker(&self, local: &Local) {
        while let Some(job) = local.deque.pop() {
            self.injector.push(job);
        }
        write(&self.stealers)[local.index] = None;
        if self.has_work() {
            self.notify_one();
        }
    }

    /// Counts a worker that found no job as idle, before it releases the interpreter to park:
    /// a submit made as soon as the interpreter is free (say, by the thread its last job woke)
    /// finds it idle and starts no thread. `park(.., may_retire = true)` must follow.
    pub(super) fn enter_idle(&self) {
        self.idle.fetch_add(1, Ordering::SeqCst);
    }

    /// Sleeps until there is work, the pool closes, `done` is set, `deadline` passes, or (with
    /// `may_retire`, for a worker between jobs) the pool has more workers than its target.
    pub(super) fn park(
        &self,
        done: Option<&AtomicBool>,
        deadline: Option<Instant>,
        may_retire: bool,
    ) {
        let mut guard = lock(&self.sleep);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // A worker between jobs (not a helper) was counted idle by `enter_idle`.
        let idle = may_retire;
        // Checked under the sleep lock, which `resize` notifies under: no wake-up is lost.
        let ready = self.has_work()
            || self.closing.load(Ordering::SeqCst)
            || done.is_some_and(|d| d.load(Ordering::SeqCst))
            || (may_retire && {
                let size = self.size();
                size.active > size.target
            });
        if !ready {
            guard = match deadline {
                None => wait(&self.wake, guard),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    wait_timeout(&self.wake, guard, left).0
                }
            };
        }
        if idle {
            // Idle workers = `idle` + pending wake-ups: take a wake-up if one is pending (a
            // submit already uncounted an idle worker), else uncount this one.
            if *guard > 0 {
                *guard -= 1;
            } else {
                self.idle.fetch_sub(1, Ordering::SeqCst);
            }
        }
        drop(guard);
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
        for stealer in read(&self.stealers).iter().flatten() {
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
        let mut admission = write(&self.admission);
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
