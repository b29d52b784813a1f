//! Python binding of `core::registry`: `AgentRegistryCore`, the Rust engine of
//! `freeagentics_rs.AgentRegistry`. Agents are held as `Arc<Py<PyAny>>` so that the map clones
//! them without the interpreter; anything the map gives back is dropped here, after its locks
//! are released (rule 2: a `__del__` may call back into the registry).

use std::sync::Arc;

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple};

use crate::core::registry::{AgentId, Refused, Registry};

type Agent = Arc<Py<PyAny>>;

fn agent_id(key: &Bound<'_, PyAny>) -> PyResult<AgentId> {
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(AgentId::Str(s.to_str()?.to_owned()));
    }
    if key.is_instance_of::<PyInt>() && !key.is_instance_of::<PyBool>() {
        return key
            .extract::<i64>()
            .map(AgentId::Int)
            .map_err(|_| PyOverflowError::new_err("agent_id must fit in a signed 64-bit integer"));
    }
    Err(PyTypeError::new_err(format!(
        "agent_id must be a str or an int, not {}",
        key.get_type().name()?
    )))
}

fn id_object<'py>(py: Python<'py>, id: &AgentId) -> PyResult<Bound<'py, PyAny>> {
    Ok(match id {
        AgentId::Int(i) => i.into_pyobject(py)?.into_any(),
        AgentId::Str(s) => PyString::new(py, s).into_any(),
    })
}

fn not_registered(key: &Bound<'_, PyAny>) -> PyErr {
    match key.repr() {
        Ok(repr) => PyKeyError::new_err(format!("agent {repr} is not registered")),
        Err(e) => e,
    }
}

fn into_object(py: Python<'_>, agent: Agent) -> Py<PyAny> {
    Arc::try_unwrap(agent).unwrap_or_else(|shared| shared.clone_ref(py))
}

/// A sharded concurrent map agent id -> agent (see `core::registry`).
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct AgentRegistryCore {
    registry: Registry<Agent>,
}

#[pymethods]
impl AgentRegistryCore {
    #[new]
    fn new(num_shards: usize) -> PyResult<Self> {
        Ok(AgentRegistryCore {
            registry: Registry::new(num_shards)?,
        })
    }

    #[getter]
    fn num_shards(&self) -> usize {
        self.registry.num_shards()
    }

    fn shard_of(&self, agent_id: &Bound<'_, PyAny>) -> PyResult<usize> {
        Ok(self.registry.shard_of(&self::agent_id(agent_id)?))
    }

    fn register(&self, agent_id: &Bound<'_, PyAny>, agent: Py<PyAny>) -> PyResult<()> {
        match self
            .registry
            .register(self::agent_id(agent_id)?, Arc::new(agent))
        {
            Ok(()) => Ok(()),
            Err(refused) => {
                drop(refused);
                Err(PyKeyError::new_err(format!(
                    "agent {} is already registered",
                    agent_id.repr()?
                )))
            }
        }
    }

    fn unregister(&self, py: Python<'_>, agent_id: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.registry.unregister(&self::agent_id(agent_id)?) {
            Some(agent) => Ok(into_object(py, agent)),
            None => Err(not_registered(agent_id)),
        }
    }

    #[pyo3(signature = (agent_id, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        agent_id: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(match self.registry.get(&self::agent_id(agent_id)?) {
            Some(agent) => into_object(py, agent),
            None => default.unwrap_or_else(|| py.None()),
        })
    }

    fn __getitem__(&self, py: Python<'_>, agent_id: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.registry.get(&self::agent_id(agent_id)?) {
            Some(agent) => Ok(into_object(py, agent)),
            None => Err(not_registered(agent_id)),
        }
    }

    fn __contains__(&self, agent_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.registry.contains(&self::agent_id(agent_id)?))
    }

    fn __len__(&self) -> usize {
        self.registry.len()
    }

    /// Every id at one instant.
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ids = PyList::empty(py);
        for id in &self.registry.ids() {
            ids.append(id_object(py, id)?)?;
        }
        Ok(ids)
    }

    /// Every (id, agent) pair at one instant.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let snapshot = self.registry.snapshot();
        let items = PyList::empty(py);
        for (id, agent) in snapshot {
            let pair = PyTuple::new(
                py,
                [id_object(py, &id)?, into_object(py, agent).into_bound(py)],
            )?;
            items.append(pair)?;
        }
        Ok(items)
    }

    /// {id: agent} for the ids that are registered.
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        agent_ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let found = PyDict::new(py);
        for key in agent_ids.try_iter()? {
            let key = key?;
            if let Some(agent) = self.registry.get(&self::agent_id(&key)?) {
                found.set_item(key, into_object(py, agent))?;
            }
        }
        Ok(found)
    }

    /// Replaces a registered agent.
    fn update(&self, agent_id: &Bound<'_, PyAny>, agent: Py<PyAny>) -> PyResult<()> {
        match self
            .registry
            .update(&self::agent_id(agent_id)?, Arc::new(agent))
        {
            Ok(old) => {
                drop(old);
                Ok(())
            }
            Err(Refused::NotRegistered(offered) | Refused::AlreadyRegistered(offered)) => {
                drop(offered);
                Err(not_registered(agent_id))
            }
        }
    }

    /// Replaces the agent with `new` if it is `expected` (identity); False otherwise (also when
    /// the id is not registered).
    fn compare_and_set(
        &self,
        agent_id: &Bound<'_, PyAny>,
        expected: &Bound<'_, PyAny>,
        new: Py<PyAny>,
    ) -> PyResult<bool> {
        let expected = expected.as_ptr();
        let swapped = self.registry.compare_and_set(
            &self::agent_id(agent_id)?,
            |current| current.as_ptr() == expected,
            Arc::new(new),
        );
        Ok(swapped.is_ok())
    }

    /// Removes and returns an agent; `default` if it is not registered (KeyError without one).
    #[pyo3(signature = (agent_id, *default))]
    fn pop(
        &self,
        py: Python<'_>,
        agent_id: &Bound<'_, PyAny>,
        default: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                default.len() + 1
            )));
        }
        match self.registry.unregister(&self::agent_id(agent_id)?) {
            Some(agent) => Ok(into_object(py, agent)),
            None if default.len() == 1 => Ok(default.get_item(0)?.unbind()),
            None => Err(not_registered(agent_id)),
        }
    }

    fn clear(&self) {
        drop(self.registry.clear());
    }

    fn shard_sizes(&self) -> Vec<usize> {
        self.registry.shard_sizes()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AgentRegistryCore>()
}
