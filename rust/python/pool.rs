//! Python binding of `core::pool`: jobs that run Python callables into
//! `concurrent.futures.Future`s, and the `WorkStealingCore` class that the shared Python
//! front (`freeagentics_rs.executor._pool`) drives.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::detach::{detached, wait_detached, SIGNAL_CHECK};
use super::errors::{panic_error, BrokenThreadPool};
use super::pool_future;
use crate::core::meter::{Meter, MeterBatch, RunDelay};
use crate::core::pool::{self as core_pool, Discard, Job, Pool, Waker, WorkerBody, WorkerThread};

const INITIALIZER_FAILED: &str =
    "A thread initializer failed, the thread pool is not usable anymore";

/// `future.set_running_or_notify_cancel()`: false when the future was cancelled while queued.
fn start_running(py: Python<'_>, future: &Bound<'_, PyAny>) -> bool {
    let started = pool_future::try_start(py, future).and_then(|fast| match fast {
        Some(running) => Ok(running),
        None => future
            .call_method0(intern!(py, "set_running_or_notify_cancel"))
            .and_then(|running| running.is_truthy()),
    });
    match started {
        Ok(running) => running,
        Err(e) => {
            e.write_unraisable(py, Some(future));
            false
        }
    }
}

/// Settles a running future with a call's outcome; a panic becomes a `RustPanicError`.
fn settle(
    py: Python<'_>,
    future: &Bound<'_, PyAny>,
    outcome: thread::Result<PyResult<Bound<'_, PyAny>>>,
) {
    let settled = match outcome {
        Ok(Ok(value)) => match pool_future::try_finish(py, future, &value) {
            Ok(false) => future.call_method1(intern!(py, "set_result"), (value,)),
            finished => finished.map(|_| py.None().into_bound(py)),
        },
        Ok(Err(error)) => {
            future.call_method1(intern!(py, "set_exception"), (error.into_value(py),))
        }
        Err(payload) => {
            let error = panic_error(payload.as_ref()).into_value(py);
            future.call_method1(intern!(py, "set_exception"), (error,))
        }
    };
    if let Err(e) = settled {
        e.write_unraisable(py, Some(future));
    }
}

fn discard_future(future: Py<PyAny>, why: &Discard) {
    Python::attach(|py| {
        let future = future.bind(py);
        let result = match why {
            Discard::Cancelled => future.call_method0(intern!(py, "cancel")).map(drop),
            Discard::Broken(reason) => {
                // Like ThreadPoolExecutor: a queued future of a broken pool fails, it is not cancelled.
                let error = BrokenThreadPool::new_err(reason.clone()).into_value(py);
                future
                    .call_method1(intern!(py, "set_exception"), (error,))
                    .map(drop)
            }
        };
        if let Err(e) = result {
            e.write_unraisable(py, Some(future));
        }
    });
}

/// `fn(*args, **kwargs)` into `future`.
struct CallJob {
    future: Py<PyAny>,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
}

impl Job for CallJob {
    fn run(self: Box<Self>) -> bool {
        let CallJob {
            future,
            func,
            args,
            kwargs,
        } = *self;
        Python::attach(|py| {
            let future = future.bind(py);
            if !start_running(py, future) {
                return false;
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                func.bind(py)
                    .call(args.bind(py), kwargs.as_ref().map(|k| k.bind(py)))
            }));
            // Release the call's references before waking waiters, so that they see them gone.
            drop((func, args, kwargs));
            settle(py, future, outcome);
            true
        })
    }

    fn discard(self: Box<Self>, why: &Discard) {
        discard_future(self.future, why)
    }
}

/// One `map` chunk: calls `fn` on each item (unpacking tuples when `unpack`) and settles
/// `future` with `(results, error)`: the results before the first failure, and that failure.
struct ChunkJob {
    future: Py<PyAny>,
    func: Py<PyAny>,
    items: Py<PyList>,
    unpack: bool,
}

impl ChunkJob {
    fn call_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let func = self.func.bind(py);
        let results = PyList::empty(py);
        let mut error = py.None().into_bound(py);
        for item in self.items.bind(py).iter() {
            let called = if self.unpack {
                func.call1(item.cast::<PyTuple>()?)
            } else {
                func.call1((item,))
            };
            match called {
                Ok(value) => results.append(value)?,
                Err(e) => {
                    error = e.into_value(py).into_bound(py).into_any();
                    break;
                }
            }
        }
        Ok(PyTuple::new(py, [results.into_any(), error])?.into_any())
    }
}

impl Job for ChunkJob {
    fn run(self: Box<Self>) -> bool {
        Python::attach(|py| {
            let future = self.future.bind(py).clone();
            if !start_running(py, &future) {
                return false;
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| self.call_all(py)));
            drop(self);
            settle(py, &future, outcome);
            true
        })
    }

    fn discard(self: Box<Self>, why: &Discard) {
        discard_future(self.future, why)
    }
}

/// Test hook: a job whose own Rust code panics.
struct PanicJob {
    future: Py<PyAny>,
    message: String,
}

impl Job for PanicJob {
    fn run(self: Box<Self>) -> bool {
        Python::attach(|py| {
            let future = self.future.bind(py);
            if !start_running(py, future) {
                return false;
            }
            let outcome =
                catch_unwind(|| -> PyResult<Bound<'_, PyAny>> { panic!("{}", self.message) });
            settle(py, future, outcome);
            true
        })
    }

    fn discard(self: Box<Self>, why: &Discard) {
        discard_future(self.future, why)
    }
}

/// Added as a done-callback to a future that a worker waits on, to wake it from parking.
#[pyclass(frozen, module = "freeagentics_rs._native")]
struct DoneWaker {
    done: Arc<AtomicBool>,
    waker: Waker,
}

#[pymethods]
impl DoneWaker {
    fn __call__(&self, _future: &Bound<'_, PyAny>) {
        self.done.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

/// Makes this Rust thread a named `threading.Thread` (its Rust name, `{prefix}_{slot}`), so that
/// `threading.current_thread()`, `threading.enumerate()` and logging see it by name.
fn register_thread(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    let name = thread::current().name().unwrap_or_default().to_owned();
    let registered = py
        .import(intern!(py, "freeagentics_rs.executor._threads"))
        .and_then(|threads| threads.call_method1(intern!(py, "WorkerThread"), (name,)));
    match registered {
        Ok(thread) => Some(thread),
        Err(e) => {
            e.write_unraisable(py, None);
            None
        }
    }
}

fn log_initializer_failure(py: Python<'_>, error: PyErr) {
    // The same log line as ThreadPoolExecutor.
    let logged = py.import("logging").and_then(|logging| {
        let logger = logging.call_method1("getLogger", ("concurrent.futures",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", error.into_value(py))?;
        logger.call_method("critical", ("Exception in initializer:",), Some(&kwargs))
    });
    if let Err(e) = logged {
        e.write_unraisable(py, None);
    }
}

/// Calls `on_samples(count, cpu, wall, first_end, last_end, first_cpu, delay)` for each batch of
/// measured jobs, on the worker thread that finished the batch.
fn python_meter(on_samples: Py<PyAny>, batch_size: usize, run_delay: Option<Py<PyAny>>) -> Meter {
    Meter::with_run_delay(
        batch_size,
        Arc::new(move |b: MeterBatch| {
            Python::attach(|py| {
                let args = (
                    b.count,
                    b.cpu,
                    b.wall,
                    b.first_end,
                    b.last_end,
                    b.first_cpu,
                    b.delay,
                );
                if let Err(e) = on_samples.call1(py, args) {
                    e.write_unraisable(py, Some(on_samples.bind(py)));
                }
            })
        }),
        run_delay.map(python_run_delay),
    )
}

/// A run-delay source that calls a Python function returning this thread's total run delay in
/// seconds (tests drive the meter with it); a failure or a bad value reads as zero.
fn python_run_delay(read: Py<PyAny>) -> RunDelay {
    Arc::new(move || {
        Python::attach(|py| {
            let seconds = read
                .call0(py)
                .and_then(|value| value.extract::<f64>(py))
                .unwrap_or_else(|e| {
                    e.write_unraisable(py, Some(read.bind(py)));
                    0.0
                });
            Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
        })
    })
}

/// The Rust core of `WorkStealingThreadPool` and `AdaptiveThreadPoolExecutor`: worker threads
/// attach to the interpreter once and detach only while parked.
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct WorkStealingCore {
    pool: Pool,
}

#[pymethods]
impl WorkStealingCore {
    #[new]
    #[pyo3(signature = (
        max_workers, thread_name_prefix, initializer=None, initargs=None, on_samples=None,
        sample_batch=16, run_delay=None
    ))]
    // The Python constructor's parameters, one for one.
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_workers: usize,
        thread_name_prefix: &str,
        initializer: Option<Py<PyAny>>,
        initargs: Option<Py<PyTuple>>,
        on_samples: Option<Py<PyAny>>,
        sample_batch: usize,
        run_delay: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let initargs = initargs.unwrap_or_else(|| PyTuple::empty(py).unbind());
        let body: WorkerBody = Arc::new(move |worker: &WorkerThread| {
            // None: the interpreter is finalizing; the thread just exits.
            Python::try_attach(|py| {
                let registered = register_thread(py);
                let initialized = match &initializer {
                    Some(init) => init.bind(py).call1(initargs.bind(py)).map(drop),
                    None => Ok(()),
                };
                match initialized {
                    Ok(()) => worker.run(&|park| py.detach(park)),
                    Err(error) => {
                        log_initializer_failure(py, error);
                        worker.break_pool(INITIALIZER_FAILED);
                    }
                }
                if let Some(thread) = registered {
                    if let Err(e) = thread.call_method0(intern!(py, "unregister")) {
                        e.write_unraisable(py, None);
                    }
                }
            });
        });
        let meter = on_samples.map(|f| python_meter(f, sample_batch, run_delay));
        Ok(WorkStealingCore {
            pool: Pool::new(max_workers, thread_name_prefix, body, meter)?,
        })
    }

    #[pyo3(signature = (future, func, args, kwargs=None))]
    fn submit(
        &self,
        future: Py<PyAny>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        kwargs: Option<Py<PyDict>>,
    ) -> PyResult<()> {
        Ok(self.pool.submit(Box::new(CallJob {
            future,
            func,
            args,
            kwargs,
        }))?)
    }

    /// Schedules one job that calls `func` on every item of `items`.
    fn submit_chunk(
        &self,
        future: Py<PyAny>,
        func: Py<PyAny>,
        items: Py<PyList>,
        unpack: bool,
    ) -> PyResult<()> {
        Ok(self.pool.submit(Box::new(ChunkJob {
            future,
            func,
            items,
            unpack,
        }))?)
    }

    fn _submit_panic(&self, future: Py<PyAny>, message: String) -> PyResult<()> {
        Ok(self.pool.submit(Box::new(PanicJob { future, message }))?)
    }

    /// From a worker of this pool: run queued jobs until `future` is done or `timeout` passes,
    /// and return True. From any other thread: return False at once.
    #[pyo3(signature = (future, timeout=None))]
    fn help_until_done(
        &self,
        py: Python<'_>,
        future: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        if !self.pool.is_worker_thread() {
            return Ok(false);
        }
        let done = Arc::new(AtomicBool::new(false));
        let waker = DoneWaker {
            done: done.clone(),
            waker: self.pool.waker(),
        };
        future.call_method1(intern!(py, "add_done_callback"), (waker,))?;
        let deadline = timeout
            .and_then(|t| Duration::try_from_secs_f64(t.max(0.0)).ok())
            .and_then(|t| Instant::now().checked_add(t));
        Ok(self
            .pool
            .help_until(&done, deadline, &|park| py.detach(park)))
    }

    fn is_worker_thread(&self) -> bool {
        self.pool.is_worker_thread()
    }

    /// Grows at once, or lets surplus workers retire between jobs; measurements restart.
    fn resize(&self, py: Python<'_>, workers: usize) -> PyResult<()> {
        Ok(detached(py, || self.pool.resize(workers))??)
    }

    fn set_sample_batch(&self, sample_batch: usize) {
        self.pool.set_meter_batch(sample_batch)
    }

    #[getter]
    fn target_workers(&self) -> usize {
        self.pool.target()
    }

    #[pyo3(signature = (wait=true, cancel_futures=false))]
    fn shutdown(&self, py: Python<'_>, wait: bool, cancel_futures: bool) -> PyResult<()> {
        self.pool.shutdown(cancel_futures);
        if wait {
            self.pool.drain_from_worker();
            wait_detached(py, |_| self.pool.wait_exited(SIGNAL_CHECK).then_some(()))?;
        }
        Ok(())
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.pool.stats();
        let d = PyDict::new(py);
        d.set_item("workers", s.workers)?;
        d.set_item("target_workers", s.target)?;
        d.set_item("submitted", s.submitted)?;
        d.set_item("completed", s.completed)?;
        d.set_item("stolen", s.stolen)?;
        d.set_item("queued", s.queued)?;
        d.set_item("panics", s.panics)?;
        Ok(d)
    }
}

/// Shuts down every Rust pool of this process and waits for its threads (interpreter exit);
/// Ctrl-C ends the wait, as it ends `ThreadPoolExecutor`'s exit-time join.
#[pyfunction]
fn shutdown_all_pools(py: Python<'_>) -> PyResult<()> {
    core_pool::shutdown_all();
    wait_detached(py, |_| {
        core_pool::wait_all_exited(SIGNAL_CHECK).then_some(())
    })?;
    Ok(())
}

/// In a forked child: forget the parent's pools, whose threads do not exist here.
#[pyfunction]
fn forget_pools_after_fork() {
    core_pool::forget_pools_after_fork()
}

/// CPUs this process may use (affinity and cgroup quota respected).
#[pyfunction]
fn available_parallelism() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<WorkStealingCore>()?;
    m.add_class::<pool_future::FutureCondition>()?;
    m.add_class::<pool_future::PoolFutureWaiters>()?;
    m.add_class::<pool_future::DoneWaiters>()?;
    m.add_function(wrap_pyfunction!(shutdown_all_pools, m)?)?;
    m.add_function(wrap_pyfunction!(forget_pools_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(available_parallelism, m)?)?;
    Ok(())
}
