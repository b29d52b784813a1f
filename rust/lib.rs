//! freeagentics_rs native core. `core` is pure Rust; `python` holds the PyO3 bindings.

pub mod core;

#[cfg(feature = "python")]
mod python;
