//! Per-task CPU and wall time, measured on the worker thread around each job and handed over in
//! batches: what an adaptive pool classifies its workload from. Queue wait is never included
//! (the clocks start when a worker starts the job), and a job that started before the last
//! resize is not counted, so every batch describes the pool at its current size. On Linux the
//! threads' run delay is measured too: time runnable but waiting for a core (other processes,
//! oversubscription), which is neither I/O nor the jobs' own CPU time.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::scheduler::lock;

/// The sums over one batch of finished jobs; times in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterBatch {
    pub count: u64,
    /// Thread CPU time of all jobs in the batch.
    pub cpu: f64,
    /// Wall time of all jobs in the batch.
    pub wall: f64,
    /// When the batch's first and last jobs ended, on the meter's busy clock: it runs only
    /// while at least one job runs, so an idle pause between jobs is not time tasks waited.
    pub first_end: f64,
    pub last_end: f64,
    /// CPU time of the first job: a rate over (first_end, last_end] leaves it out.
    pub first_cpu: f64,
    /// Time the jobs' threads waited for a core (0 where unknown). Read at most every
    /// `DELAY_READ_EVERY` per thread and counted in the batch of the job that read it; a thread
    /// accrues none while parked, so this is its delay during jobs, give or take its scheduling.
    pub delay: f64,
}

/// Receives each full batch, on the worker thread that finished it, with no lock held.
pub type MeterSink = Arc<dyn Fn(MeterBatch) + Send + Sync>;

/// The busy clock: running jobs, busy seconds before the current busy spell, and its start.
struct Activity {
    running: usize,
    busy: f64,
    since: Instant,
}

pub struct Meter {
    activity: Mutex<Activity>,
    epoch: AtomicU64,
    batch_size: AtomicUsize,
    batch: Mutex<MeterBatch>,
    sink: MeterSink,
}

/// A job's clocks at its start.
pub struct Started {
    epoch: u64,
    wall: Instant,
    cpu: Duration,
}

/// Reading the run delay costs a file read: not more often than this per thread.
const DELAY_READ_EVERY: Duration = Duration::from_millis(1);

thread_local! {
    /// This thread's scheduler statistics file, opened once; None where there is none.
    static SCHEDSTAT: RefCell<Option<Option<File>>> = const { RefCell::new(None) };
    /// When this thread last read its run delay, and the value it read.
    static LAST_DELAY: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// The run delay this thread accrued since it last called this, if at least `DELAY_READ_EVERY`
/// ago (else zero: it is counted by a later call).
fn run_delay_since_last_read(now: Instant) -> Duration {
    LAST_DELAY.with(|last| match last.get() {
        Some((at, _)) if now.duration_since(at) < DELAY_READ_EVERY => Duration::ZERO,
        previous => {
            let total = thread_run_delay();
            last.set(Some((now, total)));
            previous.map_or(Duration::ZERO, |(_, before)| total.saturating_sub(before))
        }
    })
}

/// Time the calling thread has spent runnable but waiting for a core (Linux schedstat).
#[cfg(target_os = "linux")]
pub fn thread_run_delay() -> Duration {
    use std::os::unix::fs::FileExt;
    SCHEDSTAT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let file = cell.get_or_insert_with(|| File::open("/proc/thread-self/schedstat").ok());
        let Some(file) = file else {
            return Duration::ZERO;
        };
        // "<ns on cpu> <ns waiting on a runqueue> <timeslices>"
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|text| text.split_whitespace().nth(1))
            .and_then(|field| field.parse().ok())
            .map_or(Duration::ZERO, Duration::from_nanos)
    })
}

#[cfg(not(target_os = "linux"))]
pub fn thread_run_delay() -> Duration {
    Duration::ZERO
}

/// CPU time the calling thread has used (user + system).
#[cfg(unix)]
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; this clock exists on every supported unix.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(unix))]
pub fn thread_cpu_time() -> Duration {
    Duration::ZERO
}

impl Meter {
    pub fn new(batch_size: usize, sink: MeterSink) -> Meter {
        Meter {
            activity: Mutex::new(Activity {
                running: 0,
                busy: 0.0,
                since: Instant::now(),
            }),
            epoch: AtomicU64::new(0),
            batch_size: AtomicUsize::new(batch_size.max(1)),
            batch: Mutex::new(MeterBatch::default()),
            sink,
        }
    }

    pub fn set_batch_size(&self, batch_size: usize) {
        self.batch_size.store(batch_size.max(1), Ordering::Relaxed);
    }

    /// Drops what was collected; jobs already running are not counted when they finish.
    pub fn new_epoch(&self) {
        let mut batch = lock(&self.batch);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        *batch = MeterBatch::default();
    }

    pub fn start(&self) -> Started {
        let wall = Instant::now();
        if LAST_DELAY.with(Cell::get).is_none() {
            // Read once before the thread's first job, so that its run delay is counted too.
            run_delay_since_last_read(wall);
        }
        {
            let mut activity = lock(&self.activity);
            if activity.running == 0 {
                activity.since = wall;
            }
            activity.running += 1;
        }
        Started {
            epoch: self.epoch.load(Ordering::SeqCst),
            wall,
            cpu: thread_cpu_time(),
        }
    }

    /// Ends a job's measurement; `ran` is false for a job that did not start (cancelled),
    /// which only stops its share of the busy clock.
    pub fn finish(&self, started: Started, ran: bool) {
        let cpu = thread_cpu_time().saturating_sub(started.cpu).as_secs_f64();
        let now = Instant::now();
        let end = {
            let mut activity = lock(&self.activity);
            let end = activity.busy + now.duration_since(activity.since).as_secs_f64();
            activity.running -= 1;
            if activity.running == 0 {
                activity.busy = end;
            }
            end
        };
        if !ran {
            return;
        }
        let wall = now.duration_since(started.wall).as_secs_f64();
        let delay = run_delay_since_last_read(now).as_secs_f64();
        let full = {
            let mut batch = lock(&self.batch);
            if self.epoch.load(Ordering::SeqCst) != started.epoch {
                return;
            }
            if batch.count == 0 {
                batch.first_end = end;
                batch.first_cpu = cpu;
            }
            batch.count += 1;
            batch.cpu += cpu;
            batch.wall += wall;
            batch.delay += delay;
            batch.last_end = batch.last_end.max(end);
            if batch.count < self.batch_size.load(Ordering::Relaxed) as u64 {
                return;
            }
            std::mem::take(&mut *batch)
        };
        (self.sink)(full);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_sum_jobs_and_skip_jobs_of_an_old_epoch() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let meter = Meter::new(3, Arc::new(move |b: MeterBatch| lock(&sink_seen).push(b)));
        let stale = meter.start();
        meter.new_epoch();
        meter.finish(stale, true);
        for _ in 0..7 {
            let started = meter.start();
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(2) {}
            meter.finish(started, true);
        }
        let seen = lock(&seen);
        assert_eq!(seen.len(), 2);
        for b in seen.iter() {
            assert_eq!(b.count, 3);
            assert!(b.wall >= 0.006 && b.cpu > 0.0 && b.cpu <= b.wall + 0.001);
            assert!(b.last_end > b.first_end);
            assert!(b.delay >= 0.0);
        }
    }
}
