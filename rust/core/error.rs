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
    /// A pool has no free slot (and may not wait or grow); carries the reason.
    Exhausted(String),
    /// The object was closed; carries the message.
    Closed(String),
    /// An operating-system call failed (shared memory, allocation): errno (0 if none) and the
    /// message. Python raises the `OSError` subclass of the errno (`FileExistsError`, ...).
    Os(i32, String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Shutdown => f.write_str("cannot schedule new futures after shutdown"),
            CoreError::Broken(reason) => f.write_str(reason),
            CoreError::InvalidArgument(message) => f.write_str(message),
            CoreError::Spawn(message) => write!(f, "could not start a worker thread: {message}"),
            CoreError::Exhausted(message)
            | CoreError::Closed(message)
            | CoreError::Os(_, message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CoreError {}
