//! PyO3 bindings: thin wrappers over `crate::core`, one file per core file.

mod agents;
mod detach;
mod errors;
mod learning;
mod memory;
mod pool;
mod pool_future;
mod registry;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    agents::register(m)?;
    learning::register(m)?;
    memory::register(m)?;
    pool::register(m)?;
    registry::register(m)
}
