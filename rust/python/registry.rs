//! Python binding of `core::registry`: `AgentRegistryCore`, the Rust engine of
//! `freeagentics_rs.AgentRegistry`. Agents are held as `Arc<Py<PyAny>>` so that the map clones
//! them without the interpreter; anything the map gives back is dropped here, after its locks
//! are released (rule 2 of docs/design.md: a `__del__` may call back into the registry).
//!
//! The operations on every shard (snapshots, `clear`) wait for all writers and sort, so they run
//! detached (rule 1). Single-id operations hold one shard lock for a few hash-map steps and never
//! wait for the interpreter under it, so they stay attached: detaching would cost more than they do.

use std::sync::Arc;

use pyo3::exceptions::{PyKeyError, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple, PyType};

use super::detach::detached;
use crate::core::registry::{
    AgentId, NewError, OutOfMemory, Refused, Registry, MAX_INT_ID, MIN_INT_ID,
};

type Agent = Arc<Py<PyAny>>;

static NUMPY_INTEGER: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn out_of_memory(_: OutOfMemory) -> PyErr {
    PyMemoryError::new_err("the agent registry could not allocate memory")
}

fn int_id(number: &Bound<'_, PyAny>) -> PyResult<AgentId> {
    if let Ok(i) = number.extract::<i64>() {
        return Ok(AgentId::Int(i as i128));
    }
    if let Ok(u) = number.extract::<u64>() {
        return Ok(AgentId::Int(u as i128));
    }
    Err(PyValueError::new_err(format!(
        "agent_id: must be between {MIN_INT_ID} and {MAX_INT_ID}, got {}",
        number.repr()?
    )))
}

/// A str (subclasses become plain str: no user `__hash__` runs under a lock), or an int or
/// numpy integer (not a bool) in `MIN_INT_ID..=MAX_INT_ID`.
fn agent_id(key: &Bound<'_, PyAny>) -> PyResult<AgentId> {
    if let Ok(s) = key.cast::<PyString>() {
        let s = s.to_str()?;
        let mut owned = String::new();
        owned
            .try_reserve_exact(s.len())
            .map_err(|_| out_of_memory(OutOfMemory))?;
        owned.push_str(s);
        return Ok(AgentId::Str(owned));
    }
    if key.is_instance_of::<PyInt>() {
        if !key.is_instance_of::<PyBool>() {
            return int_id(key);
        }
    } else if key.is_instance(NUMPY_INTEGER.import(key.py(), "numpy", "integer")?.as_any())? {
        return int_id(&key.call_method0("__index__")?);
    }
    Err(PyTypeError::new_err(format!(
        "agent_id: must be a str or an int, not {}",
        key.get_type().name()?
    )))
}

/// The id, or None for a key that cannot be an id (a lookup finds nothing there).
fn lookup_id(key: &Bound<'_, PyAny>) -> PyResult<Option<AgentId>> {
    match agent_id(key) {
        Ok(id) => Ok(Some(id)),
        Err(e)
            if e.is_instance_of::<PyTypeError>(key.py())
                || e.is_instance_of::<PyValueError>(key.py()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
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

/// A sharded concurrent map agent id -> agent in registration order (see `core::registry`).
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct AgentRegistryCore {
    registry: Registry<Agent>,
}

#[pymethods]
impl AgentRegistryCore {
    #[new]
    fn new(num_shards: usize) -> PyResult<Self> {
        match Registry::new(num_shards) {
            Ok(registry) => Ok(AgentRegistryCore { registry }),
            Err(NewError::InvalidArgument(message)) => Err(PyValueError::new_err(message)),
            Err(NewError::OutOfMemory) => Err(out_of_memory(OutOfMemory)),
        }
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
            Err(Refused::OutOfMemory(offered)) => {
                drop(offered);
                Err(out_of_memory(OutOfMemory))
            }
            Err(refused) => {
                drop(refused);
                Err(PyKeyError::new_err(format!(
                    "agent {} is already registered",
                    agent_id.repr()?
                )))
            }
        }
    }

    /// Registers an agent or replaces the registered one in its place (`registry[id] = agent`).
    fn set(&self, agent_id: &Bound<'_, PyAny>, agent: Py<PyAny>) -> PyResult<()> {
        match self
            .registry
            .set(self::agent_id(agent_id)?, Arc::new(agent))
        {
            Ok(replaced) => {
                drop(replaced);
                Ok(())
            }
            Err(refused) => {
                drop(refused);
                Err(out_of_memory(OutOfMemory))
            }
        }
    }

    /// The registered agent; else registers `default` and returns it.
    #[pyo3(signature = (agent_id, default=None))]
    fn setdefault(
        &self,
        py: Python<'_>,
        agent_id: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let offered = Arc::new(default.unwrap_or_else(|| py.None()));
        match self.registry.setdefault(self::agent_id(agent_id)?, offered) {
            Ok((agent, unused)) => {
                drop(unused);
                Ok(into_object(py, agent))
            }
            Err(refused) => {
                drop(refused);
                Err(out_of_memory(OutOfMemory))
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

    /// False for keys that cannot be ids (other types, ints out of range), as a dict would be.
    fn __contains__(&self, agent_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(match lookup_id(agent_id)? {
            Some(id) => self.registry.contains(&id),
            None => false,
        })
    }

    fn __len__(&self) -> usize {
        self.registry.len()
    }

    /// Every id at one instant, in registration order.
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let snapshot = detached(py, || self.registry.ids())?.map_err(out_of_memory)?;
        let ids = PyList::empty(py);
        for id in &snapshot {
            ids.append(id_object(py, id)?)?;
        }
        Ok(ids)
    }

    /// Every (id, agent) pair at one instant, in registration order.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let snapshot = detached(py, || self.registry.snapshot())?.map_err(out_of_memory)?;
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
            Err(refused) => {
                drop(refused);
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

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        // What was removed drops here, attached and unlocked.
        drop(detached(py, || self.registry.clear())?.map_err(out_of_memory)?);
        Ok(())
    }

    fn shard_sizes(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        detached(py, || self.registry.shard_sizes())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AgentRegistryCore>()
}
