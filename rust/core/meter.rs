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

use super::sync::lock;

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
    /// Time the jobs' threads waited for a core while they ran (0 where unknown). Read at a
    /// job's start and end, at most every `DELAY_READ_EVERY` per thread: the jobs that were read
    /// stand for the others (their delay per wall second is applied to the batch's wall time).
    /// Delay between jobs (a parked worker's wake-up) never counts.
    pub delay: f64,
}

/// A batch being summed, and the wall time of its jobs whose run delay was read.
#[derive(Default)]
struct Pending {
    batch: MeterBatch,
    delay_wall: f64,
}

/// Receives each full batch, on the worker thread that finished it, with no lock held.
pub type MeterSink = Arc<dyn Fn(MeterBatch) + Send + Sync>;

/// The calling thread's total run delay so far (`thread_run_delay`, or a fake in tests).
pub type RunDelay = Arc<dyn Fn() -> Duration + Send + Sync>;

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
    batch: Mutex<Pending>,
    sink: MeterSink,
    run_delay: Option<RunDelay>,
}

/// A job's clocks at its start.
pub struct Started {
    epoch: u64,
    wall: Instant,
    cpu: Duration,
    /// The thread's run delay at the start, if it was read (see `MeterBatch::delay`).
    delay: Option<Duration>,
}

/// Reading the run delay costs a file read: not more often than this per thread.
/// Every 10 ms, as the Python meter: two file reads per 1 ms I/O task were most of the meter's
/// cost per task (the jobs that were read stand for the others).
const DELAY_READ_EVERY: Duration = Duration::from_millis(10);

thread_local! {
    /// This thread's scheduler statistics file, opened once; None where there is none.
    static SCHEDSTAT: RefCell<Option<Option<File>>> = const { RefCell::new(None) };
    /// When this thread last read its run delay.
    static LAST_DELAY_READ: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// This thread's total run delay, read now and remembered as read now.
fn read_run_delay(now: Instant, source: Option<&RunDelay>) -> Duration {
    LAST_DELAY_READ.with(|last| last.set(Some(now)));
    source.map_or_else(thread_run_delay, |read| read())
}

/// Whether a job starting now reads the run delay: not within `DELAY_READ_EVERY` of this
/// thread's last read, so that tiny jobs cost at most two reads per thread and interval.
fn delay_read_due(now: Instant) -> bool {
    LAST_DELAY_READ.with(|last| {
        last.get()
            .is_none_or(|at| now.duration_since(at) >= DELAY_READ_EVERY)
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
        Meter::with_run_delay(batch_size, sink, None)
    }

    /// A meter that reads the threads' run delay from `run_delay` (None: the scheduler's).
    pub fn with_run_delay(
        batch_size: usize,
        sink: MeterSink,
        run_delay: Option<RunDelay>,
    ) -> Meter {
        Meter {
            activity: Mutex::new(Activity {
                running: 0,
                busy: 0.0,
                since: Instant::now(),
            }),
            epoch: AtomicU64::new(0),
            batch_size: AtomicUsize::new(batch_size.max(1)),
            batch: Mutex::new(Pending::default()),
            sink,
            run_delay,
        }
    }

    pub fn set_batch_size(&self, batch_size: usize) {
        self.batch_size.store(batch_size.max(1), Ordering::Relaxed);
    }

    /// Drops what was collected; jobs already running are not counted when they finish.
    pub fn new_epoch(&self) {
        let mut batch = lock(&self.batch);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        *batch = Pending::default();
    }

    pub fn start(&self) -> Started {
        let wall = Instant::now();
        // The baseline is read here, not taken from the thread's previous job: the delay
        // between two jobs (a parked worker waiting for a core once woken) is not this job's.
        // Charged to the next job, it exceeded that job's wall time less its CPU time, its CPU
        // share read 1.0, and an I/O workload was classified "cpu" (docs/design.md, 5.1).
        let delay = delay_read_due(wall).then(|| read_run_delay(wall, self.run_delay.as_ref()));
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
            delay,
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
        // Waiting for a core is part of the job's wall time that was not its CPU time.
        let delay = started.delay.map(|before| {
            let during = read_run_delay(now, self.run_delay.as_ref()).saturating_sub(before);
            during.as_secs_f64().min((wall - cpu).max(0.0))
        });
        let full = {
            let mut pending = lock(&self.batch);
            if self.epoch.load(Ordering::SeqCst) != started.epoch {
                return;
            }
            let Pending { batch, delay_wall } = &mut *pending;
            if batch.count == 0 {
                batch.first_end = end;
                batch.first_cpu = cpu;
            }
            batch.count += 1;
            batch.cpu += cpu;
            batch.wall += wall;
            if let Some(delay) = delay {
                batch.delay += delay;
                *delay_wall += wall;
            }
            batch.last_end = batch.last_end.max(end);
            if batch.count < self.batch_size.load(Ordering::Relaxed) as u64 {
                return;
            }
            let Pending {
                mut batch,
                delay_wall,
            } = std::mem::take(&mut *pending);
            // The jobs whose delay was read stand for the batch.
            if delay_wall > 0.0 {
                batch.delay =
                    (batch.delay * batch.wall / delay_wall).min((batch.wall - batch.cpu).max(0.0));
            }
            batch
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

    #[test]
    fn delay_between_jobs_is_not_charged_to_the_next_job() {
        // A fake run delay: 0.5 ms during each job, 50 ms between jobs (a woken worker waiting
        // for a core). Only the in-job delay counts.
        let total = Arc::new(Mutex::new(Duration::ZERO));
        let read = total.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let meter = Meter::with_run_delay(
            1,
            Arc::new(move |b: MeterBatch| lock(&sink_seen).push(b)),
            Some(Arc::new(move || *lock(&read))),
        );
        for _ in 0..5 {
            std::thread::sleep(DELAY_READ_EVERY + Duration::from_millis(1)); // past the read interval
            let started = meter.start();
            std::thread::sleep(Duration::from_millis(3));
            *lock(&total) += Duration::from_micros(500);
            meter.finish(started, true);
            *lock(&total) += Duration::from_millis(50);
        }
        for b in lock(&seen).iter() {
            assert!((b.delay - 0.0005).abs() < 1e-9, "{b:?}");
        }
    }

    #[test]
    fn the_run_delay_is_read_at_most_twice_per_interval_and_thread() {
        // Two reads per 1 ms job were most of the meter's cost per task.
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = reads.clone();
        let meter = Meter::with_run_delay(
            1,
            Arc::new(|_b: MeterBatch| {}),
            Some(Arc::new(move || {
                counted.fetch_add(1, Ordering::Relaxed);
                Duration::ZERO
            })),
        );
        let started_all = Instant::now();
        for _ in 0..40 {
            let started = meter.start();
            std::thread::sleep(Duration::from_millis(1));
            meter.finish(started, true);
        }
        let intervals = started_all.elapsed().as_secs_f64() / 0.01 + 1.0;
        assert!((reads.load(Ordering::Relaxed) as f64) <= 2.0 * intervals);
    }
}
