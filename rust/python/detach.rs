//! Leaving the interpreter, in one place (polars' `enter_polars` is the model). A binding that
//! waits, or computes for long, does it through these two functions, which keep rules 1, 4
//! and 5 of docs/design.md: detached around the wait or the work, a panic in it raised as
//! `RustPanicError`, and long waits on the main thread broken into slices of `SIGNAL_CHECK`
//! with the signal handlers run between them, so Ctrl-C ends them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use pyo3::prelude::*;

use super::errors::panic_error;

/// How long a wait on the main thread lasts before the signal handlers run.
pub const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Whether this is the process's main thread, the one Python runs signal handlers on.
fn on_main_thread() -> bool {
    // Safety: plain system calls without arguments.
    unsafe { libc::gettid() == libc::getpid() }
}

/// Runs `work` detached from the interpreter; a panic in it becomes `RustPanicError` (and any
/// lock it held stays usable: `core::sync`). `work` must not touch Python objects.
pub fn detached<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    py.detach(|| catch_unwind(AssertUnwindSafe(work)))
        .map_err(|payload| panic_error(&*payload))
}

/// Waits detached in steps: `step(slice)` waits at most `slice` (until woken when `None`) and
/// returns `Some` once the wait is over. On the main thread `slice` is `SIGNAL_CHECK` and the
/// signal handlers run between steps, so Ctrl-C ends the wait with `KeyboardInterrupt`; other
/// threads never see a signal, so they wait in one step, woken only by the condition.
pub fn wait_detached<T, F>(py: Python<'_>, mut step: F) -> PyResult<T>
where
    F: Send + FnMut(Option<Duration>) -> Option<T>,
    T: Send,
{
    let slice = on_main_thread().then_some(SIGNAL_CHECK);
    loop {
        if let Some(done) = detached(py, || step(slice))? {
            return Ok(done);
        }
        py.check_signals()?;
    }
}
