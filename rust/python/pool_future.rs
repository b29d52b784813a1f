//! Starting and settling the pool's own futures (`executor._pool._PoolFuture`) without calling
//! their Python methods: what `set_running_or_notify_cancel()` and `set_result()` do on their
//! common path, done here in one go under the future's condition. A worker pays for two Python
//! frames less per job. Anything off that path (a cancelled future, one already settled, an
//! exception to set, a future of another class) goes through the Python methods as before.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static POOL_FUTURE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// True for an instance of exactly `_PoolFuture`: its methods are the ones mirrored here.
fn is_pool_future(py: Python<'_>, future: &Bound<'_, PyAny>) -> bool {
    POOL_FUTURE
        .import(py, "freeagentics_rs.executor._pool", "_PoolFuture")
        .is_ok_and(|class| future.get_type().is(class))
}

/// `state == name`, where `name` is one of `concurrent.futures._base`'s state strings.
fn state_is(state: &Bound<'_, PyAny>, name: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(state.is(name) || state.eq(name)?)
}

/// Runs `body` holding the future's condition (a re-entrant lock, taken with its C methods);
/// the lock is released whatever `body` returns. No Rust lock is held meanwhile (rule 2 of
/// docs/design.md); the calls are short and never block for long (the condition is only held
/// by the future's own short sections).
fn under_condition<T>(
    future: &Bound<'_, PyAny>,
    body: impl FnOnce() -> PyResult<T>,
) -> PyResult<T> {
    let py = future.py();
    let condition = future.getattr(intern!(py, "_condition"))?;
    condition.call_method0(intern!(py, "acquire"))?;
    let result = body();
    condition.call_method0(intern!(py, "release"))?;
    result
}

/// `set_running_or_notify_cancel()` of a pending `_PoolFuture`: Some(true) when it was pending
/// and is now running; None when it is another future or not pending (then the caller calls
/// the method, which notifies a cancellation or raises).
pub(super) fn try_start(py: Python<'_>, future: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
    if !is_pool_future(py, future) {
        return Ok(None);
    }
    under_condition(future, || {
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
    if !is_pool_future(py, future) {
        return Ok(false);
    }
    let finished = under_condition(future, || {
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
        // `_FutureCondition` makes its waiter queue on the first wait: none, nobody to wake.
        let condition = future.getattr(intern!(py, "_condition"))?;
        if let Some(sleepers) = condition.getattr_opt(intern!(py, "_waiters"))? {
            if sleepers.is_truthy()? {
                condition.call_method0(intern!(py, "notify_all"))?;
            }
        }
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
