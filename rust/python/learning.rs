//! Python binding of `core::agents::learning` and `core::agents::learning_kernel`: pymdp's
//! Dirichlet updates of a learning population's parameter arrays, in place, every agent at once,
//! and `LearningKernelCore`, the factorized kernel whose agents step with their own arrays. Both
//! run detached from the interpreter while rayon works (rule 1 of docs/design.md); a panic
//! becomes an exception.

use std::sync::Arc;

use numpy::{
    PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3, PyReadonlyArrayDyn, PyReadwriteArray1,
    PyReadwriteArray2, PyReadwriteArrayDyn,
};
use pyo3::prelude::*;

use crate::core::agents::learning::{self, Marginals};
use crate::core::agents::learning_kernel::{
    LearnedRows, LearnedRowsMut, LearningKernel, LearningSettings, Rates,
};
use crate::core::agents::Phases;
use crate::core::error::CoreError;
use crate::python::agents::{
    observation_slice, py_error, run_detached, FactorKernelCore, StateSlices,
};

fn contiguous() -> PyErr {
    py_error(CoreError::InvalidArgument(
        "learning arrays: must be C-contiguous and aligned".into(),
    ))
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
    run_detached(py, || {
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
    run_detached(py, || {
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
    run_detached(py, || {
        learning::update_d(pd, &marginals, factor, qs_t0, lr, num_threads)
    })
}

fn slices<'a>(arrays: &'a [PyReadonlyArrayDyn<'_, f64>]) -> PyResult<Vec<&'a [f64]>> {
    arrays
        .iter()
        .map(|a| a.as_slice().map_err(|_| contiguous()))
        .collect()
}

fn vec1(a: &PyReadonlyArray1<'_, f64>) -> Vec<f64> {
    a.as_array().iter().copied().collect()
}

/// The factorized kernel of a population whose agents learn (see
/// `core::agents::learning_kernel`), over a `FactorKernelCore` of the population's shared model.
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct LearningKernelCore {
    kernel: Arc<LearningKernel>,
}

#[pymethods]
impl LearningKernelCore {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (factor_kernel, learned_a, learned_b, learned_d, log_c, shared_utility, *, param_info_gain, wa_shared, wb_shared, policies, gamma, num_threads))]
    fn new(
        factor_kernel: PyRef<'_, FactorKernelCore>,
        learned_a: Vec<usize>,
        learned_b: Vec<usize>,
        learned_d: Vec<usize>,
        log_c: Vec<PyReadonlyArray1<'_, f64>>,
        shared_utility: PyReadonlyArray1<'_, f64>,
        param_info_gain: bool,
        wa_shared: Option<Vec<Option<PyReadonlyArrayDyn<'_, f64>>>>,
        wb_shared: Option<Vec<Option<PyReadonlyArrayDyn<'_, f64>>>>,
        policies: PyReadonlyArray3<'_, i64>,
        gamma: f64,
        num_threads: usize,
    ) -> PyResult<Self> {
        let shared = |w: &Option<Vec<Option<PyReadonlyArrayDyn<'_, f64>>>>, count: usize| match w {
            Some(items) => items
                .iter()
                .map(|a| a.as_ref().map(|a| a.as_array().iter().copied().collect()))
                .collect(),
            None => vec![None; count],
        };
        let kernel = factor_kernel.kernel.clone();
        let (modalities, factors) = (kernel.model().modalities(), kernel.model().factors());
        let shape = policies.as_array().shape().to_vec();
        let policy_values = policies
            .as_array()
            .iter()
            .map(|&v| usize::try_from(v))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| CoreError::InvalidArgument("policies: negative control".into()))?;
        let settings = LearningSettings {
            learned_a,
            learned_b,
            learned_d,
            log_c: log_c.iter().map(vec1).collect(),
            shared_utility: vec1(&shared_utility),
            param_info_gain,
            has_pa: wa_shared.is_some(),
            has_pb: wb_shared.is_some(),
            wa_shared: shared(&wa_shared, modalities),
            wb_shared: shared(&wb_shared, factors),
            policies: policy_values,
            policy_len: shape.get(1).copied().unwrap_or(0),
            gamma,
        };
        let kernel = LearningKernel::new(kernel, settings, num_threads).map_err(py_error)?;
        Ok(LearningKernelCore {
            kernel: Arc::new(kernel),
        })
    }

    /// Runs the phases selected for every row; `pa`, `pb`, `pd`: the rows' learned arrays, in
    /// the order of `learned_a`, `learned_b`, `learned_d`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (beliefs, q_pi, g, f, actions, timesteps, /, *, observations=None, key, first_row=0, infer=false, plan=false, act=false, pa, pb, pd))]
    fn run(
        &self,
        py: Python<'_>,
        mut beliefs: PyReadwriteArray2<'_, f64>,
        mut q_pi: PyReadwriteArray2<'_, f64>,
        mut g: PyReadwriteArray2<'_, f64>,
        mut f: PyReadwriteArray1<'_, f64>,
        mut actions: PyReadwriteArray2<'_, i64>,
        mut timesteps: PyReadwriteArray1<'_, i64>,
        observations: Option<PyReadonlyArray2<'_, i64>>,
        key: u64,
        first_row: u64,
        infer: bool,
        plan: bool,
        act: bool,
        pa: Vec<PyReadonlyArrayDyn<'_, f64>>,
        pb: Vec<PyReadonlyArrayDyn<'_, f64>>,
        pd: Vec<PyReadonlyArrayDyn<'_, f64>>,
    ) -> PyResult<()> {
        let params = LearnedRows {
            pa: slices(&pa)?,
            pb: slices(&pb)?,
            pd: slices(&pd)?,
        };
        let rows = StateSlices::of(
            &mut beliefs,
            &mut q_pi,
            &mut g,
            &mut f,
            &mut actions,
            &mut timesteps,
            contiguous,
        )?
        .factor_rows(first_row);
        let observations = observation_slice(observations.as_ref(), contiguous)?;
        let kernel = &self.kernel;
        let phases = Phases { infer, plan, act };
        run_detached(py, || kernel.run(rows, params, observations, key, phases))
    }

    /// The learning step of every row in one pass: infer states, update_A and update_B of each
    /// agent's own arrays (`pa`, `pb`, `pd`, written in place), infer policies, act.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (beliefs, q_pi, g, f, actions, timesteps, /, *, observations, key, first_row, pa, pb, pd, lr_pa, lr_pb))]
    fn step_learning(
        &self,
        py: Python<'_>,
        mut beliefs: PyReadwriteArray2<'_, f64>,
        mut q_pi: PyReadwriteArray2<'_, f64>,
        mut g: PyReadwriteArray2<'_, f64>,
        mut f: PyReadwriteArray1<'_, f64>,
        mut actions: PyReadwriteArray2<'_, i64>,
        mut timesteps: PyReadwriteArray1<'_, i64>,
        observations: PyReadonlyArray2<'_, i64>,
        key: u64,
        first_row: u64,
        mut pa: Vec<PyReadwriteArrayDyn<'_, f64>>,
        mut pb: Vec<PyReadwriteArrayDyn<'_, f64>>,
        mut pd: Vec<PyReadwriteArrayDyn<'_, f64>>,
        lr_pa: f64,
        lr_pb: f64,
    ) -> PyResult<()> {
        let params = LearnedRowsMut {
            pa: slices_mut(&mut pa)?,
            pb: slices_mut(&mut pb)?,
            pd: slices_mut(&mut pd)?,
        };
        let rows = StateSlices::of(
            &mut beliefs,
            &mut q_pi,
            &mut g,
            &mut f,
            &mut actions,
            &mut timesteps,
            contiguous,
        )?
        .factor_rows(first_row);
        let observations = observations.as_slice().map_err(|_| contiguous())?;
        let kernel = &self.kernel;
        let rates = Rates {
            pa: lr_pa,
            pb: lr_pb,
        };
        run_detached(py, || {
            kernel.step_learning(rows, params, observations, key, rates)
        })
    }
}

fn slices_mut<'a>(arrays: &'a mut [PyReadwriteArrayDyn<'_, f64>]) -> PyResult<Vec<&'a mut [f64]>> {
    arrays
        .iter_mut()
        .map(|a| a.as_slice_mut().map_err(|_| contiguous()))
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LearningKernelCore>()?;
    m.add_function(wrap_pyfunction!(dirichlet_update_a, m)?)?;
    m.add_function(wrap_pyfunction!(dirichlet_update_b, m)?)?;
    m.add_function(wrap_pyfunction!(dirichlet_update_d, m)?)
}
