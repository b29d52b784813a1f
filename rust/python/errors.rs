//! The one mapping from core errors to the exception classes defined in
//! `freeagentics_rs.errors`, so both backends raise the same classes with the same messages.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::import_exception;
use pyo3::PyErr;

use crate::core::error::CoreError;

import_exception!(freeagentics_rs.errors, BrokenThreadPool);
import_exception!(freeagentics_rs.errors, RustPanicError);
import_exception!(freeagentics_rs.errors, PoolExhaustedError);

impl From<CoreError> for PyErr {
    fn from(error: CoreError) -> PyErr {
        match error {
            CoreError::Shutdown | CoreError::Spawn(_) | CoreError::Closed(_) => {
                PyRuntimeError::new_err(error.to_string())
            }
            CoreError::Exhausted(message) => PoolExhaustedError::new_err(message),
            CoreError::Os(0, message) => PyOSError::new_err(message),
            CoreError::Os(errno, message) => PyOSError::new_err((errno, message)),
            CoreError::Broken(reason) => BrokenThreadPool::new_err(reason),
            CoreError::InvalidArgument(message) => PyValueError::new_err(message),
        }
    }
}

/// The message of a caught panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

pub fn panic_error(payload: &(dyn std::any::Any + Send)) -> PyErr {
    RustPanicError::new_err(format!(
        "Rust panic in a pool job: {}",
        panic_message(payload)
    ))
}
