//! The pure Rust core: no pyo3 here, unit-tested with `cargo test --no-default-features`.

pub mod agents;
pub mod error;
pub mod memory;
pub mod meter;
pub mod pool;
pub mod registry;
pub mod rng;
mod scheduler;
pub mod sync;
