use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

/// A plain Rust job: runs a closure, records discards.
struct FnJob<F: FnOnce() + Send> {
    f: F,
    discarded: Option<mpsc::Sender<Discard>>,
}

impl<F: FnOnce() + Send> Job for FnJob<F> {
    fn run(self: Box<Self>) -> bool {
        (self.f)();
        true
    }
    fn discard(self: Box<Self>, why: &Discard) {
        if let Some(tx) = self.discarded {
            let _ = tx.send(why.clone());
        }
    }
}

fn job(f: impl FnOnce() + Send + 'static) -> BoxedJob {
    Box::new(FnJob { f, discarded: None })
}

fn plain_body() -> WorkerBody {
    Arc::new(|worker: &WorkerThread| worker.run(&|park| park()))
}

fn shutdown_and_join(pool: &Pool) {
    pool.shutdown(false);
    assert!(pool.wait_exited(Duration::from_secs(30)));
}

#[test]
fn runs_every_job_exactly_once() {
    let pool = Pool::new(4, "t", plain_body(), None).unwrap();
    let counts: Arc<Vec<AtomicUsize>> =
        Arc::new((0..10_000).map(|_| AtomicUsize::new(0)).collect());
    for i in 0..10_000 {
        let counts = counts.clone();
        pool.submit(job(move || {
            counts[i].fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
    }
    shutdown_and_join(&pool);
    assert!(counts.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    let stats = pool.stats();
    assert_eq!(
        (
            stats.submitted,
            stats.completed,
            stats.queued,
            stats.workers
        ),
        (10_000, 10_000, 0, 0)
    );
}

#[test]
fn zero_workers_is_an_error() {
    assert!(matches!(
        Pool::new(0, "t", plain_body(), None),
        Err(CoreError::InvalidArgument(_))
    ));
}

#[test]
fn submit_after_shutdown_fails() {
    let pool = Pool::new(1, "t", plain_body(), None).unwrap();
    shutdown_and_join(&pool);
    assert_eq!(pool.submit(job(|| {})).unwrap_err(), CoreError::Shutdown);
}

#[test]
fn nested_jobs_go_to_the_local_deque_and_get_stolen() {
    let pool = Arc::new(Pool::new(2, "t", plain_body(), None).unwrap());
    let done = Arc::new(AtomicUsize::new(0));
    let (p, d) = (pool.clone(), done.clone());
    pool.submit(job(move || {
        for _ in 0..2000 {
            let d = d.clone();
            p.submit(job(move || {
                std::thread::sleep(Duration::from_micros(50));
                d.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        }
    }))
    .unwrap();
    while done.load(Ordering::SeqCst) < 2000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        pool.stats().stolen > 0,
        "the idle sibling should steal nested jobs"
    );
    shutdown_and_join(&pool);
}

#[test]
fn a_waiting_worker_helps_instead_of_deadlocking() {
    let pool = Arc::new(Pool::new(1, "t", plain_body(), None).unwrap());
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    pool.submit(job(move || {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        p.submit(job(move || f.store(true, Ordering::SeqCst)))
            .unwrap();
        assert!(p.help_until(&flag, None, &|park| park()));
        tx.send(flag.load(Ordering::SeqCst)).unwrap();
    }))
    .unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    assert!(
        !pool.help_until(&AtomicBool::new(false), None, &|park| park()),
        "not a worker"
    );
    shutdown_and_join(&pool);
}

#[test]
fn cancel_discards_queued_jobs_and_runs_none_of_them() {
    let pool = Pool::new(1, "t", plain_body(), None).unwrap();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    pool.submit(job(move || {
        started_tx.send(()).unwrap();
        gate_rx.recv().unwrap();
    }))
    .unwrap();
    started_rx.recv().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for _ in 0..100 {
        let ran = ran.clone();
        let f = move || {
            ran.fetch_add(1, Ordering::SeqCst);
        };
        pool.submit(Box::new(FnJob {
            f,
            discarded: Some(tx.clone()),
        }))
        .unwrap();
    }
    pool.shutdown(true);
    gate_tx.send(()).unwrap();
    assert!(pool.wait_exited(Duration::from_secs(30)));
    drop(tx);
    assert_eq!(
        rx.iter().filter(|why| *why == Discard::Cancelled).count(),
        100
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(pool.stats().queued, 0);
}

#[test]
fn a_broken_pool_discards_and_refuses_work() {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let body: WorkerBody = Arc::new(move |worker: &WorkerThread| {
        let _ = rx.lock().unwrap().recv();
        worker.break_pool("initializer failed");
    });
    let pool = Pool::new(1, "t", body, None).unwrap();
    let (dtx, drx) = mpsc::channel();
    pool.submit(Box::new(FnJob {
        f: || {},
        discarded: Some(dtx),
    }))
    .unwrap();
    tx.send(()).unwrap();
    assert!(pool.wait_exited(Duration::from_secs(30)));
    assert_eq!(
        drx.recv().unwrap(),
        Discard::Broken("initializer failed".into())
    );
    assert_eq!(
        pool.submit(job(|| {})).unwrap_err(),
        CoreError::Broken("initializer failed".into())
    );
}

#[test]
fn a_panicking_job_does_not_kill_its_worker() {
    let pool = Pool::new(1, "t", plain_body(), None).unwrap();
    pool.submit(job(|| panic!("boom"))).unwrap();
    let (tx, rx) = mpsc::channel();
    pool.submit(job(move || tx.send(7).unwrap())).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
    assert_eq!(pool.stats().panics, 1);
    shutdown_and_join(&pool);
}

#[test]
fn idle_workers_park() {
    let pool = Pool::new(3, "t", plain_body(), None).unwrap();
    pool.resize(3).unwrap(); // a resize starts its threads at once
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.shared.sleepers.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "workers never parked");
        std::thread::sleep(Duration::from_millis(1));
    }
    shutdown_and_join(&pool);
}

#[test]
fn threads_start_on_demand() {
    let pool = Pool::new(4, "t", plain_body(), None).unwrap();
    assert_eq!(pool.stats().workers, 0);
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    pool.submit(job(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }))
    .unwrap();
    wait_for("the job", || ran.load(Ordering::SeqCst) == 1);
    assert_eq!(pool.stats().workers, 1);
    shutdown_and_join(&pool);
}

#[test]
fn concurrent_submitters_and_shutdown_lose_nothing() {
    for _ in 0..20 {
        let pool = Arc::new(Pool::new(2, "t", plain_body(), None).unwrap());
        let ran = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let submitters: Vec<_> = (0..3)
            .map(|_| {
                let (pool, ran, accepted) = (pool.clone(), ran.clone(), accepted.clone());
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let ran = ran.clone();
                        if pool
                            .submit(job(move || {
                                ran.fetch_add(1, Ordering::SeqCst);
                            }))
                            .is_ok()
                        {
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(200));
        shutdown_and_join(&pool);
        for s in submitters {
            s.join().unwrap();
        }
        assert_eq!(ran.load(Ordering::SeqCst), accepted.load(Ordering::SeqCst));
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn resizing_while_jobs_spawn_jobs_runs_each_exactly_once() {
    let pool = Arc::new(Pool::new(2, "t", plain_body(), None).unwrap());
    let counts: Arc<Vec<AtomicUsize>> =
        Arc::new((0..20_000).map(|_| AtomicUsize::new(0)).collect());
    for batch in 0..200 {
        let (p, c) = (pool.clone(), counts.clone());
        // Each job queues 99 more on its worker's own deque, which a retiring worker must hand on.
        pool.submit(job(move || {
            for i in 1..100 {
                let c = c.clone();
                p.submit(job(move || {
                    c[batch * 100 + i].fetch_add(1, Ordering::SeqCst);
                }))
                .unwrap();
            }
            c[batch * 100].fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
        pool.resize([1, 8, 3, 16, 2][batch % 5]).unwrap();
    }
    wait_for("every job", || pool.stats().completed == 20_000);
    assert!(counts.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    pool.resize(3).unwrap();
    wait_for("surplus workers to retire", || pool.stats().workers == 3);
    assert_eq!(pool.target(), 3);
    let slots = pool.shared.stealers.read().unwrap();
    assert_eq!(slots.iter().flatten().count(), 3);
    drop(slots);
    shutdown_and_join(&pool);
}

#[test]
fn a_resized_pool_reuses_free_slots_and_resize_after_shutdown_does_nothing() {
    let pool = Pool::new(4, "t", plain_body(), None).unwrap();
    pool.resize(1).unwrap();
    wait_for("retirement", || pool.stats().workers == 1);
    pool.resize(4).unwrap();
    assert_eq!(pool.shared.stealers.read().unwrap().len(), 4);
    assert_eq!(
        pool.resize(0).unwrap_err(),
        CoreError::InvalidArgument("workers must be greater than 0".into())
    );
    shutdown_and_join(&pool);
    pool.resize(8).unwrap();
    assert_eq!(pool.stats().workers, 0);
}

#[test]
fn a_metered_pool_reports_batches_of_the_jobs_that_ran() {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let seen = batches.clone();
    let meter = Meter::new(10, Arc::new(move |b| seen.lock().unwrap().push(b)));
    let pool = Pool::new(2, "t", plain_body(), Some(meter)).unwrap();
    for _ in 0..40 {
        pool.submit(job(|| std::thread::sleep(Duration::from_millis(1))))
            .unwrap();
    }
    shutdown_and_join(&pool);
    let batches = batches.lock().unwrap();
    assert_eq!(batches.iter().map(|b| b.count).sum::<u64>(), 40);
    // Sleeping jobs: wall time well above CPU time.
    let (cpu, wall): (f64, f64) = batches
        .iter()
        .fold((0.0, 0.0), |(c, w), b| (c + b.cpu, w + b.wall));
    assert!(wall >= 0.04 && cpu < wall / 2.0, "cpu {cpu} wall {wall}");
}
