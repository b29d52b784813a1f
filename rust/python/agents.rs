//! Python binding of `core::agents`: `AgentKernelCore`, the Rust kernel of
//! `freeagentics_rs.agents.AgentPopulation`. It works in place on the population's numpy arrays,
//! detached from the interpreter while rayon runs (rule 1 of docs/design.md), and turns a panic into an exception.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use numpy::ndarray::Dimension;
use numpy::{
    PyReadonlyArray, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3, PyReadonlyArrayDyn,
    PyReadwriteArray, PyReadwriteArray1, PyReadwriteArray2,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::core::agents::{
    try_copy, FactorArrays, FactorKernel, FactorRows, FactorSettings, Kernel, Model, Phases,
    PreparedModel, Rows, Settings, Sparse, ENOMEM,
};
use crate::core::error::CoreError;
use crate::python::errors::panic_error;

/// A core error as the exception the package documents: an allocation failure is a
/// `MemoryError` (never an abort), the rest as `errors.rs` maps them.
pub(crate) fn py_error(error: CoreError) -> PyErr {
    match error {
        CoreError::Os(ENOMEM, message) => pyo3::exceptions::PyMemoryError::new_err(message),
        other => other.into(),
    }
}

fn not_contiguous() -> PyErr {
    CoreError::InvalidArgument("population arrays: must be C-contiguous and aligned".into()).into()
}

/// The six state arrays every kernel binding's `run` takes (beliefs, q_pi, G, F, actions,
/// timesteps) as the core's row slices, each checked C-contiguous and aligned in that order.
pub(crate) struct StateSlices<'a> {
    beliefs: &'a mut [f64],
    q_pi: &'a mut [f64],
    g: &'a mut [f64],
    f: &'a mut [f64],
    actions: &'a mut [i64],
    timesteps: &'a mut [i64],
}

impl<'a> StateSlices<'a> {
    /// `refused`: the error of an array that is not C-contiguous and aligned (each kernel
    /// names its arrays in its own message). `actions` is (agents,) or (agents, factors).
    pub(crate) fn of<D: Dimension>(
        beliefs: &'a mut PyReadwriteArray2<'_, f64>,
        q_pi: &'a mut PyReadwriteArray2<'_, f64>,
        g: &'a mut PyReadwriteArray2<'_, f64>,
        f: &'a mut PyReadwriteArray1<'_, f64>,
        actions: &'a mut PyReadwriteArray<'_, i64, D>,
        timesteps: &'a mut PyReadwriteArray1<'_, i64>,
        refused: fn() -> PyErr,
    ) -> PyResult<Self> {
        Ok(StateSlices {
            beliefs: beliefs.as_slice_mut().map_err(|_| refused())?,
            q_pi: q_pi.as_slice_mut().map_err(|_| refused())?,
            g: g.as_slice_mut().map_err(|_| refused())?,
            f: f.as_slice_mut().map_err(|_| refused())?,
            actions: actions.as_slice_mut().map_err(|_| refused())?,
            timesteps: timesteps.as_slice_mut().map_err(|_| refused())?,
        })
    }

    /// The rows of the single-factor kernel.
    fn rows(self, first_row: u64) -> Rows<'a> {
        Rows {
            beliefs: self.beliefs,
            q_pi: self.q_pi,
            g: self.g,
            f: self.f,
            actions: self.actions,
            timesteps: self.timesteps,
            first_row,
        }
    }

    /// The rows of the factorized kernels.
    pub(crate) fn factor_rows(self, first_row: u64) -> FactorRows<'a> {
        FactorRows {
            beliefs: self.beliefs,
            q_pi: self.q_pi,
            g: self.g,
            f: self.f,
            actions: self.actions,
            timesteps: self.timesteps,
            first_row,
        }
    }
}

/// The observations of a kernel call, if any, checked as the state arrays are.
pub(crate) fn observation_slice<'a>(
    observations: Option<&'a PyReadonlyArray2<'_, i64>>,
    refused: fn() -> PyErr,
) -> PyResult<Option<&'a [i64]>> {
    observations
        .map(|o| o.as_slice().map_err(|_| refused()))
        .transpose()
}

/// Runs `step` detached from the interpreter (rule 1 of docs/design.md), a panic becoming an
/// exception (rule 4) and a core error the exception the package documents.
pub(crate) fn run_detached<F>(py: Python<'_>, step: F) -> PyResult<()>
where
    F: FnOnce() -> Result<(), CoreError> + Send,
{
    py.detach(|| catch_unwind(AssertUnwindSafe(step)))
        .map_err(|payload| panic_error(&*payload))?
        .map_err(py_error)
}

fn vec_f64(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Vec<f64>> {
    let item = d
        .get_item(key)?
        .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(key.to_owned()))?;
    let values = item.extract::<PyReadonlyArray1<'_, f64>>()?;
    try_copy(values.as_array().iter().copied(), key).map_err(py_error)
}

fn vec_usize(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Vec<usize>> {
    let item = d
        .get_item(key)?
        .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(key.to_owned()))?;
    let values = item.extract::<PyReadonlyArray1<'_, i64>>()?;
    values
        .as_array()
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .map_err(|_| CoreError::InvalidArgument(format!("{key}: negative entry")).into())
        })
        .collect()
}

/// The model from the dict of `GenerativeModel.derived()`.
fn model_of(d: &Bound<'_, PyDict>) -> PyResult<Model> {
    let a: PyReadonlyArray2<'_, f64> = d.get_item("A_stacked")?.expect("A_stacked").extract()?;
    let states = a.as_array().shape()[1];
    let b_ptr: PyReadonlyArray2<'_, i64> = d.get_item("b_ptr")?.expect("b_ptr").extract()?;
    let (b_columns, b_values) = (vec_usize(d, "b_columns")?, vec_f64(d, "b_values")?);
    let mut b = Vec::new();
    for ptr in b_ptr.as_array().rows() {
        let ptr: Vec<usize> = ptr.iter().map(|&v| v.max(0) as usize).collect();
        let (start, end) = (ptr[0], *ptr.last().unwrap_or(&0));
        if start > end || end > b_columns.len() {
            return Err(CoreError::InvalidArgument("B: malformed sparse matrix".into()).into());
        }
        b.push(Sparse {
            ptr: ptr.iter().map(|p| p - start).collect(),
            index: try_copy(b_columns[start..end].iter().copied(), "B").map_err(py_error)?,
            values: try_copy(b_values[start..end].iter().copied(), "B").map_err(py_error)?,
        });
    }
    let joint: PyReadonlyArray2<'_, f64> = d.get_item("joint")?.expect("joint").extract()?;
    let log_a: PyReadonlyArray2<'_, f64> = d
        .get_item("log_A_stacked")?
        .expect("log_A_stacked")
        .extract()?;
    let joint_values = vec_f64(d, "joint_values")?;
    let joint_size = joint.as_array().len();
    // Dense when at most a quarter of it is zeros.
    let joint_dense = match joint_values.len() * 4 >= joint_size * 3 {
        true => Some(try_copy(joint.as_array().iter().copied(), "joint").map_err(py_error)?),
        false => None,
    };
    Ok(Model {
        states,
        obs_offsets: vec_usize(d, "obs_offsets")?,
        a: try_copy(a.as_array().iter().copied(), "A").map_err(py_error)?,
        log_a: try_copy(log_a.as_array().iter().copied(), "A").map_err(py_error)?,
        b,
        joint: Sparse {
            ptr: vec_usize(d, "joint_ptr")?,
            index: vec_usize(d, "joint_rows")?,
            values: joint_values,
        },
        joint_outcomes: joint.as_array().shape()[0],
        joint_dense,
        utility: vec_f64(d, "utility")?,
        info_h: vec_f64(d, "info_h")?,
        d: vec_f64(d, "D")?,
        log_d: vec_f64(d, "log_D")?,
    })
}

/// Batched active-inference steps over a population's arrays (see `core::agents::Kernel`).
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct AgentKernelCore {
    kernel: Arc<Kernel>,
}

#[pymethods]
impl AgentKernelCore {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (derived, policy_len, gamma, alpha, *, deterministic, use_utility, use_states_info_gain, info_threshold, log_e, num_threads))]
    fn new(
        derived: &Bound<'_, PyDict>,
        policy_len: usize,
        gamma: f64,
        alpha: f64,
        deterministic: bool,
        use_utility: bool,
        use_states_info_gain: bool,
        info_threshold: f64,
        log_e: PyReadonlyArray1<'_, f64>,
        num_threads: usize,
    ) -> PyResult<Self> {
        let settings = Settings {
            policy_len,
            gamma,
            alpha,
            deterministic,
            use_utility,
            use_states_info_gain,
            info_threshold,
            log_e: log_e.as_array().to_vec(),
        };
        let kernel =
            Kernel::new(Arc::new(model_of(derived)?), settings, num_threads).map_err(py_error)?;
        Ok(AgentKernelCore {
            kernel: Arc::new(kernel),
        })
    }

    #[getter]
    fn num_policies(&self) -> usize {
        self.kernel.policies()
    }

    /// Runs the phases selected by `infer`, `plan` and `act` for every row of the arrays.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (beliefs, q_pi, g, f, actions, timesteps, /, *, observations=None, key, first_row=0, infer=false, plan=false, act=false))]
    fn run(
        &self,
        py: Python<'_>,
        mut beliefs: PyReadwriteArray2<'_, f64>,
        mut q_pi: PyReadwriteArray2<'_, f64>,
        mut g: PyReadwriteArray2<'_, f64>,
        mut f: PyReadwriteArray1<'_, f64>,
        mut actions: PyReadwriteArray1<'_, i64>,
        mut timesteps: PyReadwriteArray1<'_, i64>,
        observations: Option<PyReadonlyArray2<'_, i64>>,
        key: u64,
        first_row: u64,
        infer: bool,
        plan: bool,
        act: bool,
    ) -> PyResult<()> {
        let rows = StateSlices::of(
            &mut beliefs,
            &mut q_pi,
            &mut g,
            &mut f,
            &mut actions,
            &mut timesteps,
            not_contiguous,
        )?
        .rows(first_row);
        let observations = observation_slice(observations.as_ref(), not_contiguous)?;
        let (kernel, phases) = (&self.kernel, Phases { infer, plan, act });
        run_detached(py, || kernel.run(rows, observations, key, phases))
    }
}

fn copy_all<D: numpy::ndarray::Dimension>(
    arrays: &[PyReadonlyArray<'_, f64, D>],
    what: &str,
) -> PyResult<Vec<Vec<f64>>> {
    arrays
        .iter()
        .map(|a| try_copy(a.as_array().iter().copied(), what).map_err(py_error))
        .collect()
}

/// The Rust kernel of factorized populations (see `core::agents::FactorKernel`), built from the
/// model's arrays as pymdp gives them (float64): A[m] (observations, *num_states), B[f]
/// (states, states, controls), C[m], D[f] and E (one entry per policy).
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct FactorKernelCore {
    pub(crate) kernel: Arc<FactorKernel>,
}

#[pymethods]
impl FactorKernelCore {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (a, b, c, d, e, *, policies, gamma, alpha, deterministic, full_sampling, use_utility, use_states_info_gain, num_iter, df, df_tol, num_threads))]
    fn new(
        a: Vec<PyReadonlyArrayDyn<'_, f64>>,
        b: Vec<PyReadonlyArray3<'_, f64>>,
        c: Vec<PyReadonlyArray1<'_, f64>>,
        d: Vec<PyReadonlyArray1<'_, f64>>,
        e: PyReadonlyArray1<'_, f64>,
        policies: PyReadonlyArray3<'_, i64>,
        gamma: f64,
        alpha: f64,
        deterministic: bool,
        full_sampling: bool,
        use_utility: bool,
        use_states_info_gain: bool,
        num_iter: usize,
        df: f64,
        df_tol: f64,
        num_threads: usize,
    ) -> PyResult<Self> {
        let num_states: Vec<usize> = b.iter().map(|b| b.as_array().shape()[0]).collect();
        let states_ok = a
            .iter()
            .all(|a| a.as_array().shape().get(1..) == Some(&num_states[..]))
            && c.len() == a.len()
            && c.iter()
                .zip(&a)
                .all(|(c, a)| c.as_array().len() == a.as_array().shape()[0]);
        if !states_ok {
            return Err(
                CoreError::InvalidArgument("A: shapes disagree with B and C".into()).into(),
            );
        }
        let arrays = FactorArrays {
            num_controls: b.iter().map(|b| b.as_array().shape()[2]).collect(),
            num_states,
            a: copy_all(&a, "A")?,
            b: copy_all(&b, "B")?,
            c: copy_all(&c, "C")?,
            d: copy_all(&d, "D")?,
            e: try_copy(e.as_array().iter().copied(), "E").map_err(py_error)?,
        };
        let model = PreparedModel::new(&arrays, use_states_info_gain).map_err(py_error)?;
        let shape = policies.as_array().shape().to_vec();
        let policy_values = policies
            .as_array()
            .iter()
            .map(|&v| usize::try_from(v))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| CoreError::InvalidArgument("policies: negative control".into()))?;
        let settings = FactorSettings {
            policies: policy_values,
            policy_len: shape[1],
            gamma,
            alpha,
            deterministic,
            full_sampling,
            use_utility,
            use_states_info_gain,
            num_iter,
            df,
            df_tol,
        };
        let kernel = FactorKernel::new(Arc::new(model), settings, num_threads).map_err(py_error)?;
        Ok(FactorKernelCore {
            kernel: Arc::new(kernel),
        })
    }

    #[getter]
    fn num_policies(&self) -> usize {
        self.kernel.policies()
    }

    /// Runs the phases selected by `infer`, `plan` and `act` for every row of the arrays.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (beliefs, q_pi, g, f, actions, timesteps, /, *, observations=None, key, first_row=0, infer=false, plan=false, act=false))]
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
    ) -> PyResult<()> {
        let rows = StateSlices::of(
            &mut beliefs,
            &mut q_pi,
            &mut g,
            &mut f,
            &mut actions,
            &mut timesteps,
            not_contiguous,
        )?
        .factor_rows(first_row);
        let observations = observation_slice(observations.as_ref(), not_contiguous)?;
        let (kernel, phases) = (&self.kernel, Phases { infer, plan, act });
        run_detached(py, || kernel.run(rows, observations, key, phases))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AgentKernelCore>()?;
    m.add_class::<FactorKernelCore>()
}
