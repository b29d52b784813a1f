//! The pool's own futures (`executor._futures._PoolFuture`) on the Rust backend: their condition,
//! `FutureCondition` (a re-entrant lock with a condition's waiter queue, `core::pool::condition`),
//! and starting and settling them without calling their Python methods: what
//! `set_running_or_notify_cancel()` and `set_result()` do on their common path, done here in one
//! go under the condition, taken and released from Rust. Anything off that path (a cancelled
//! future, one already settled, an exception to set, a future of another class or with another
//! condition) goes through the Python methods.

use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple, PyType};

use super::detach::wait_detached;
use crate::core::pool::condition::{thread_token, NotOwned, ReentrantCondition};
use crate::core::pool::on_a_worker_thread;

static POOL_FUTURE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static NATIVE_POOL_FUTURE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static HELPING_WAITERS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
const POOL_MODULE: &str = "freeagentics_rs.executor._futures";

/// The condition of a pool future: the subset of `threading.Condition(threading.RLock())` that
/// `concurrent.futures` uses, as one object that the cyclic GC does not track. Waits release
/// the interpreter and, on the main thread, run signal handlers every few tens of ms.
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct FutureCondition {
    inner: ReentrantCondition,
}

/// The earlier of a deadline and the end of a signal-check slice.
fn until(deadline: Option<Instant>, slice: Option<Duration>) -> Option<Instant> {
    let slice_end = slice.and_then(|s| Instant::now().checked_add(s));
    match (deadline, slice_end) {
        (Some(d), Some(s)) => Some(d.min(s)),
        (d, s) => d.or(s),
    }
}

/// A deadline `seconds` from now; `None` (never) when that is beyond what `Instant` holds.
fn deadline_after(seconds: f64) -> Option<Instant> {
    let now = Instant::now();
    Duration::try_from_secs_f64(seconds.max(0.0))
        .ok()
        .and_then(|d| now.checked_add(d))
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

fn not_owned(what: &str) -> impl FnOnce(NotOwned) -> PyErr + '_ {
    move |NotOwned| PyRuntimeError::new_err(format!("cannot {what} un-acquired lock"))
}

impl FutureCondition {
    /// Takes the lock `depth` times for thread `me`, waiting detached until `deadline`; false
    /// when it passed first. A signal handler's exception ends the wait without the lock.
    fn lock(
        &self,
        py: Python<'_>,
        me: u64,
        depth: usize,
        deadline: Option<Instant>,
    ) -> PyResult<bool> {
        if depth == 1 && self.inner.try_acquire(me) {
            return Ok(true);
        }
        wait_detached(py, |slice| {
            if self.inner.acquire(me, depth, until(deadline, slice)) {
                Some(true)
            } else {
                passed(deadline).then_some(false)
            }
        })
    }

    /// Takes the lock back after a wait, whatever happens: a signal handler's exception is
    /// raised once the lock is held again (as `threading.Condition.wait` does).
    fn restore(&self, py: Python<'_>, me: u64, depth: usize) -> PyResult<()> {
        match self.lock(py, me, depth, None) {
            Ok(_) => Ok(()),
            Err(error) => {
                py.detach(|| self.inner.acquire(me, depth, None));
                Err(error)
            }
        }
    }
}

#[pymethods]
impl FutureCondition {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Py<Self>> {
        let condition = Py::new(
            py,
            FutureCondition {
                inner: ReentrantCondition::new(),
            },
        )?;
        // PyO3 makes every class a GC type; this one holds no Python object, so it can never be
        // part of a reference cycle and the cyclic GC need not scan it (tens of thousands of
        // futures alive make it collect often). Safety: a live object, tracked once by `Py::new`.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(condition.as_ptr().cast()) };
        Ok(condition)
    }

    /// `RLock.acquire(blocking=True, timeout=-1)`.
    #[pyo3(signature = (blocking=None, timeout=-1.0), text_signature = "($self, blocking=True, timeout=-1.0)")]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: f64,
    ) -> PyResult<bool> {
        let blocking = blocking.map_or(Ok(true), |b| b.is_truthy())?;
        if timeout.is_nan() {
            return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
        }
        if !blocking && timeout != -1.0 {
            return Err(PyValueError::new_err(
                "can't specify a timeout for a non-blocking call",
            ));
        }
        if timeout < 0.0 && timeout != -1.0 {
            return Err(PyValueError::new_err("timeout value must be positive"));
        }
        let me = thread_token();
        if !blocking {
            return Ok(self.inner.try_acquire(me));
        }
        let deadline = if timeout == -1.0 {
            None
        } else {
            deadline_after(timeout)
        };
        self.lock(py, me, 1, deadline)
    }

    fn release(&self) -> PyResult<()> {
        self.inner
            .release(thread_token())
            .map_err(not_owned("release"))
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.lock(py, thread_token(), 1, None)
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, _exc_info: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    fn _is_owned(&self) -> bool {
        self.inner.is_owned(thread_token())
    }

    fn _has_waiters(&self) -> bool {
        self.inner.has_waiters()
    }

    /// `threading.Condition.wait(timeout=None)`: True when notified, False on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if timeout.is_some_and(f64::is_nan) {
            return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
        }
        let me = thread_token();
        let (ticket, depth) = self.inner.begin_wait(me).map_err(not_owned("wait on"))?;
        // None waits until notified, as does a timeout too large for `Instant`.
        let deadline = timeout.and_then(deadline_after);
        let waited = wait_detached(py, |slice| {
            if self.inner.wait_notified(ticket, until(deadline, slice)) {
                Some(())
            } else {
                passed(deadline).then_some(())
            }
        });
        let notified = self.inner.end_wait(ticket);
        let restored = self.restore(py, me, depth);
        waited?;
        restored?;
        Ok(notified)
    }

    #[pyo3(signature = (n=1))]
    fn notify(&self, n: isize) -> PyResult<()> {
        self.inner
            .notify(thread_token(), n.max(0) as usize)
            .map_err(not_owned("notify on"))
    }

    fn notify_all(&self) -> PyResult<()> {
        self.inner
            .notify(thread_token(), usize::MAX)
            .map_err(not_owned("notify on"))
    }
}

/// `_waiters` of the Rust backend's pool futures (`_NativePoolFuture`): the list that
/// `wait()`/`as_completed()` install their waiters in, made on first use, without a Python
/// frame per access (they touch it twice per future). A plain list, except when first used
/// from a pool worker: then the helping list (`_futures._helping_waiters`), whose waiters run
/// queued jobs instead of blocking the worker.
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct PoolFutureWaiters;

#[pymethods]
impl PoolFutureWaiters {
    #[new]
    fn new() -> Self {
        PoolFutureWaiters
    }

    fn __get__<'py>(
        slf: Bound<'py, Self>,
        future: Option<Bound<'py, PyAny>>,
        owner: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = owner;
        let Some(future) = future.filter(|f| !f.is_none()) else {
            return Ok(slf.into_any()); // read on the class
        };
        let py = future.py();
        let waiters = future.getattr(intern!(py, "_waiter_list"))?;
        if waiters.is_none() && is_done(&future)? {
            // Read under the future's condition (by `wait()`, `as_completed()` and `Future`):
            // it stays done, so a waiter installed now would never be told anything.
            return Ok(DONE_WAITERS
                .get_or_try_init(py, || Py::new(py, DoneWaiters))?
                .bind(py)
                .clone()
                .into_any());
        }
        let on_worker = on_a_worker_thread();
        let plain = waiters.is_exact_instance_of::<PyList>();
        if !waiters.is_none() && (!on_worker || !plain) {
            return Ok(waiters); // made already, helping where it must
        }
        let waiters = if on_worker {
            HELPING_WAITERS
                .import(py, POOL_MODULE, "_helping_waiters")?
                .call1((&future, waiters))?
        } else {
            PyList::empty(py).into_any()
        };
        future.setattr(intern!(py, "_waiter_list"), &waiters)?;
        Ok(waiters)
    }
}

/// Whether a future is finished or cancelled with its waiters told: states it never leaves.
fn is_done(future: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = future.py();
    let state = future.getattr(intern!(py, "_state"))?;
    Ok(state_is(&state, intern!(py, "FINISHED"))?
        || state_is(&state, intern!(py, "CANCELLED_AND_NOTIFIED"))?)
}

static DONE_WAITERS: PyOnceLock<Py<DoneWaiters>> = PyOnceLock::new();

/// The waiter list of every done future that has none: `wait()` and `as_completed()` install
/// their waiter in each future they are given and remove it afterwards, done ones included;
/// a done future never tells its waiters anything, so there is nothing to keep. Saves a list
/// per future (and its GC tracking) when tens of thousands are waited for at once.
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct DoneWaiters;

#[pymethods]
impl DoneWaiters {
    fn append(&self, waiter: &Bound<'_, PyAny>) {
        let _ = waiter;
    }

    fn remove(&self, waiter: &Bound<'_, PyAny>) {
        let _ = waiter;
    }

    fn __len__(&self) -> usize {
        0
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyTuple::empty(py).try_iter().map(Bound::into_any)
    }
}

/// The native condition of an instance of exactly `_PoolFuture` or `_NativePoolFuture` (whose
/// methods are the ones mirrored here); None for any other future.
fn native_condition<'py>(
    py: Python<'py>,
    future: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, FutureCondition>>> {
    let class = future.get_type();
    let is_pool_future = NATIVE_POOL_FUTURE
        .import(py, POOL_MODULE, "_NativePoolFuture")
        .is_ok_and(|c| class.is(c))
        || POOL_FUTURE
            .import(py, POOL_MODULE, "_PoolFuture")
            .is_ok_and(|c| class.is(c));
    if !is_pool_future {
        return Ok(None);
    }
    Ok(future
        .getattr(intern!(py, "_condition"))?
        .cast_into::<FutureCondition>()
        .ok())
}

/// `state == name`, where `name` is one of `concurrent.futures._base`'s state strings.
fn state_is(state: &Bound<'_, PyAny>, name: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(state.is(name) || state.eq(name)?)
}

/// Runs `body` holding the future's condition; released whatever `body` returns. No Rust lock
/// is held meanwhile (rule 2 of docs/design.md): the condition's own mutex is only held inside
/// its methods, and taking the condition waits detached when another thread holds it.
fn under_condition<T>(
    condition: &Bound<'_, FutureCondition>,
    body: impl FnOnce(&ReentrantCondition, u64) -> PyResult<T>,
) -> PyResult<T> {
    let py = condition.py();
    let condition = condition.get();
    let me = thread_token();
    condition.lock(py, me, 1, None)?;
    let result = body(&condition.inner, me);
    condition.inner.release(me).map_err(not_owned("release"))?;
    result
}

/// `set_running_or_notify_cancel()` of a pending `_PoolFuture`: Some(true) when it was pending
/// and is now running; None when it is another future or not pending (then the caller calls
/// the method, which notifies a cancellation or raises).
pub(super) fn try_start(py: Python<'_>, future: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
    let Some(condition) = native_condition(py, future)? else {
        return Ok(None);
    };
    under_condition(&condition, |_, _| {
        let state = future.getattr(intern!(py, "_state"))?;
        if !state_is(&state, intern!(py, "PENDING"))? {
            return Ok(None);
        }
        future.setattr(intern!(py, "_state"), intern!(py, "RUNNING"))?;
        Ok(Some(true))
    })
}

/// `set_result(value)` of a running (or pending) `_PoolFuture`: the result and the state are
/// set, `wait()`/`as_completed()` waiters told and `result()` waiters woken under its
/// condition, then its done-callbacks run with the condition released, as `set_result` does.
/// False when it is another future or already settled (then the caller calls the method).
pub(super) fn try_finish(
    py: Python<'_>,
    future: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let Some(condition) = native_condition(py, future)? else {
        return Ok(false);
    };
    let finished = under_condition(&condition, |condition, me| {
        let state = future.getattr(intern!(py, "_state"))?;
        if !(state_is(&state, intern!(py, "RUNNING"))? || state_is(&state, intern!(py, "PENDING"))?)
        {
            return Ok(false);
        }
        future.setattr(intern!(py, "_result"), value)?;
        future.setattr(intern!(py, "_state"), intern!(py, "FINISHED"))?;
        // `_waiters` is made on first use (`_LazyWaiters`): read what is there, make nothing.
        let waiters = future.getattr(intern!(py, "_waiter_list"))?;
        if !waiters.is_none() && waiters.len()? > 0 {
            for waiter in waiters.try_iter()? {
                waiter?.call_method1(intern!(py, "add_result"), (future,))?;
            }
        }
        condition
            .notify(me, usize::MAX)
            .map_err(not_owned("notify on"))?;
        Ok(true)
    })?;
    if finished
        && future
            .getattr(intern!(py, "_done_callbacks"))?
            .is_truthy()?
    {
        future.call_method0(intern!(py, "_invoke_callbacks"))?;
    }
    Ok(finished)
}
