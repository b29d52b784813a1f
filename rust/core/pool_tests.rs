use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

/// A plain Rust job: runs a closure, records discards.
struct FnJob<F: FnOnce() + Send> {
    f: F,
    discarded: Option<mpsc::Sender<Discard>>,
}

impl<F: FnOnce() + Send> Job for FnJob<F> {
    fn run(self: Box<Self>) {
        (self.f)()
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
    let pool = Pool::new(4, "t", plain_body()).unwrap();
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
        Pool::new(0, "t", plain_body()),
        Err(CoreError::InvalidArgument(_))
    ));
}

#[test]
fn submit_after_shutdown_fails() {
    let pool = Pool::new(1, "t", plain_body()).unwrap();
    shutdown_and_join(&pool);
    assert_eq!(pool.submit(job(|| {})).unwrap_err(), CoreError::Shutdown);
}

#[test]
fn nested_jobs_go_to_the_local_deque_and_get_stolen() {
    let pool = Arc::new(Pool::new(2, "t", plain_body()).unwrap());
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
    let pool = Arc::new(Pool::new(1, "t", plain_body()).unwrap());
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
    let pool = Pool::new(1, "t", plain_body()).unwrap();
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
    let pool = Pool::new(1, "t", body).unwrap();
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
    let pool = Pool::new(1, "t", plain_body()).unwrap();
    pool.submit(job(|| panic!("boom"))).unwrap();
    let (tx, rx) = mpsc::channel();
    pool.submit(job(move || tx.send(7).unwrap())).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
    assert_eq!(pool.stats().panics, 1);
    shutdown_and_join(&pool);
}

#[test]
fn idle_workers_park() {
    let pool = Pool::new(3, "t", plain_body()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.shared.sleepers.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "workers never parked");
        std::thread::sleep(Duration::from_millis(1));
    }
    shutdown_and_join(&pool);
}

#[test]
fn concurrent_submitters_and_shutdown_lose_nothing() {
    for _ in 0..20 {
        let pool = Arc::new(Pool::new(2, "t", plain_body()).unwrap());
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
