//! Errors of the pure Rust core. The Python binding maps each one to an exception class
//! defined in `freeagentics_rs.errors` (see `rust/python/errors.rs`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// The pool was shut down; no new work is accepted.
    Shutdown,
    /// The pool is unusable (a worker initializer failed); carries the reason.
    Broken(String),
    /// An argument was out of range; carries the message naming it.
    InvalidArgument(String),
    /// The OS refused to start a thread.
    Spawn(String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Shutdown => f.write_str("cannot schedule new futures after shutdown"),
            CoreError::Broken(reason) => f.write_str(reason),
            CoreError::InvalidArgument(message) => f.write_str(message),
            CoreError::Spawn(message) => write!(f, "could not start a worker thread: {message}"),
        }
    }
}

impl std::error::Error for CoreError {}
