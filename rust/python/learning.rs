//! Python binding of `core::agents::learning`: pymdp's Dirichlet updates of a learning
//! population's parameter arrays, in place, every agent at once, detached from the interpreter
//! while rayon runs (rule 1 of docs/design.md); a panic becomes an exception.

use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::{PyReadonlyArray2, PyReadwriteArrayDyn};
use pyo3::prelude::*;

use crate::core::agents::learning::{self, Marginals};
use crate::core::agents::ENOMEM;
use crate::core::error::CoreError;
use crate::python::errors::panic_error;

/// An allocation failure is a `MemoryError`; the rest as `errors.rs` maps them.
fn py_error(error: CoreError) -> PyErr {
    match error {
        CoreError::Os(ENOMEM, message) => pyo3::exceptions::PyMemoryError::new_err(message),
        other => other.into(),
    }
}

fn contiguous() -> PyErr {
    py_error(CoreError::InvalidArgument(
        "learning arrays: must be C-contiguous and aligned".into(),
    ))
}

/// Runs `work` detached, a panic turned into an exception.
fn detached(py: Python<'_>, work: impl FnOnce() -> Result<(), CoreError> + Send) -> PyResult<()> {
    py.detach(|| catch_unwind(AssertUnwindSafe(work)))
        .map_err(|payload| panic_error(&*payload))?
        .map_err(py_error)
}

/// pymdp's `update_obs_likelihood_dirichlet` for modality `modality` of every agent.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (pa, num_obs, num_states, observations, modality, beliefs, lr, num_threads))]
fn dirichlet_update_a(
    py: Python<'_>,
    mut pa: PyReadwriteArrayDyn<'_, f64>,
    num_obs: usize,
    num_states: Vec<usize>,
    observations: PyReadonlyArray2<'_, i64>,
    modality: usize,
    beliefs: PyReadonlyArray2<'_, f64>,
    lr: f64,
    num_threads: usize,
) -> PyResult<()> {
    let marginals = Marginals::new(&num_states).map_err(py_error)?;
    let modalities = observations.as_array().ncols();
    let pa = pa.as_slice_mut().map_err(|_| contiguous())?;
    let observations = observations.as_slice().map_err(|_| contiguous())?;
    let beliefs = beliefs.as_slice().map_err(|_| contiguous())?;
    detached(py, || {
        learning::update_a(
            pa,
            num_obs,
            &marginals,
            observations,
            modality,
            modalities,
            beliefs,
            lr,
            num_threads,
        )
    })
}

/// pymdp's `update_state_likelihood_dirichlet` for factor `factor` of every agent that acted.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (pb, num_controls, num_states, factor, actions, qs, qs_prev, lr, num_threads))]
fn dirichlet_update_b(
    py: Python<'_>,
    mut pb: PyReadwriteArrayDyn<'_, f64>,
    num_controls: usize,
    num_states: Vec<usize>,
    factor: usize,
    actions: PyReadonlyArray2<'_, i64>,
    qs: PyReadonlyArray2<'_, f64>,
    qs_prev: PyReadonlyArray2<'_, f64>,
    lr: f64,
    num_threads: usize,
) -> PyResult<()> {
    let marginals = Marginals::new(&num_states).map_err(py_error)?;
    let pb = pb.as_slice_mut().map_err(|_| contiguous())?;
    let actions = actions.as_slice().map_err(|_| contiguous())?;
    let qs = qs.as_slice().map_err(|_| contiguous())?;
    let qs_prev = qs_prev.as_slice().map_err(|_| contiguous())?;
    detached(py, || {
        learning::update_b(
            pb,
            num_controls,
            &marginals,
            factor,
            actions,
            qs,
            qs_prev,
            lr,
            num_threads,
        )
    })
}

/// pymdp's `update_state_prior_dirichlet` for factor `factor` of every agent.
#[pyfunction]
#[pyo3(signature = (pd, num_states, factor, qs_t0, lr, num_threads))]
fn dirichlet_update_d(
    py: Python<'_>,
    mut pd: PyReadwriteArrayDyn<'_, f64>,
    num_states: Vec<usize>,
    factor: usize,
    qs_t0: PyReadonlyArray2<'_, f64>,
    lr: f64,
    num_threads: usize,
) -> PyResult<()> {
    let marginals = Marginals::new(&num_states).map_err(py_error)?;
    let pd = pd.as_slice_mut().map_err(|_| contiguous())?;
    let qs_t0 = qs_t0.as_slice().map_err(|_| contiguous())?;
    detached(py, || {
        learning::update_d(pd, &marginals, factor, qs_t0, lr, num_threads)
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dirichlet_update_a, m)?)?;
    m.add_function(wrap_pyfunction!(dirichlet_update_b, m)?)?;
    m.add_function(wrap_pyfunction!(dirichlet_update_d, m)?)
}
