//! Python binding of `core::memory`: `SlotPoolCore` and `ModelStoreCore`, the Rust engines of
//! `freeagentics_rs.SharedMemoryPool` and `SharedModelStore`.
//!
//! A slot is handed out as two numpy arrays over its memory: a hidden *root* whose base is a
//! `SlotOwner`, and the array the caller gets, whose base is the root. numpy collapses the base
//! of every view (slice, reshape, `asarray`) to the root, so the root, and with it the
//! `SlotOwner` that gives the slot back, dies with the last array of the slot. `release`
//! detaches one array from the root.

use std::os::raw::{c_int, c_void};
use std::sync::Arc;
use std::time::Duration;

use numpy::npyffi::{self, npy_intp, PY_ARRAY_API};
use numpy::{
    PyArrayDescr, PyArrayDescrMethods, PyReadonlyArray1, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::core::error::CoreError;
use crate::core::memory::{Blob, ModelStore, OnExhausted, Region, SlotPool};

/// A new array of `descr` and `dims` over `data`, kept alive by `base`.
///
/// Safety: `data` must hold the array's bytes for as long as `base` lives.
unsafe fn array_over<'py>(
    py: Python<'py>,
    descr: &Bound<'py, PyArrayDescr>,
    dims: &[npy_intp],
    data: *mut u8,
    writeable: bool,
    base: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut flags = npyffi::NPY_ARRAY_C_CONTIGUOUS | npyffi::NPY_ARRAY_ALIGNED;
    if writeable {
        flags |= npyffi::NPY_ARRAY_WRITEABLE;
    }
    let array = PY_ARRAY_API.PyArray_NewFromDescr(
        py,
        npyffi::get_type_object(py, npyffi::NpyTypes::PyArray_Type),
        descr.clone().into_dtype_ptr(), // stolen
        dims.len() as c_int,
        dims.as_ptr() as *mut npy_intp,
        std::ptr::null_mut(),
        data.cast::<c_void>(),
        flags,
        std::ptr::null_mut(),
    );
    let array = Bound::from_owned_ptr_or_err(py, array)?;
    // SetBaseObject steals the reference to `base`, even when it fails.
    if PY_ARRAY_API.PyArray_SetBaseObject(py, array.as_ptr().cast(), base.into_ptr()) < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(array)
}

/// The base object of an ndarray (`None` for other objects and arrays without one).
fn base_of<'py>(object: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let array = object.cast::<PyUntypedArray>().ok()?;
    // Safety: a live ndarray; its base is a borrowed reference or null.
    unsafe {
        let base = (*array.as_array_ptr()).fields.base;
        (!base.is_null()).then(|| Bound::from_borrowed_ptr(object.py(), base))
    }
}

fn check_timeout(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        Some(t) if !(t >= 0.0 && t.is_finite()) => Err(PyValueError::new_err(
            "timeout: must be a non-negative number of seconds",
        )),
        _ => Ok(timeout.map(Duration::from_secs_f64)),
    }
}

/// The holder of one acquired slot, the base of its root array; gives the slot back when it
/// dies.
#[pyclass(frozen, module = "freeagentics_rs._native")]
struct SlotOwner {
    pool: Arc<SlotPool>,
    slot: usize,
    ptr: usize,
}

impl Drop for SlotOwner {
    fn drop(&mut self) {
        self.pool.give_back(self.slot);
    }
}

/// What an array is to a pool.
enum Lease<'py> {
    Alive(Bound<'py, SlotOwner>),
    Released,
    Foreign,
}

/// A pool of zero-filled numpy buffers of one shape and dtype (see `core::memory::SlotPool`).
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct SlotPoolCore {
    pool: Arc<SlotPool>,
    descr: Py<PyArrayDescr>,
    dims: Vec<npy_intp>,
    nbytes: usize,
    /// Zeros that released arrays point to instead of their slot.
    tombstone: Region,
}

impl SlotPoolCore {
    /// An array handed out by this pool (or a view of one) is alive while its base is a root
    /// whose base is a `SlotOwner` of this pool; a released one's base is the pool itself.
    fn lease_of<'py>(slf: &Bound<'py, Self>, array: &Bound<'py, PyAny>) -> Lease<'py> {
        let Some(base) = base_of(array) else {
            return Lease::Foreign;
        };
        if base.is(slf) {
            return Lease::Released;
        }
        match base_of(&base) {
            Some(owner) if owner.is(slf) => Lease::Released,
            Some(owner) => match owner.cast_into::<SlotOwner>() {
                Ok(owner) if Arc::ptr_eq(&owner.get().pool, &slf.get().pool) => Lease::Alive(owner),
                _ => Lease::Foreign,
            },
            None => Lease::Foreign,
        }
    }

    fn owner_of<'py>(
        slf: &Bound<'py, Self>,
        array: &Bound<'py, PyAny>,
        what: &str,
    ) -> PyResult<Bound<'py, SlotOwner>> {
        match Self::lease_of(slf, array) {
            Lease::Alive(owner) => Ok(owner),
            Lease::Released => Err(PyValueError::new_err(format!(
                "{what}: the array was already released"
            ))),
            Lease::Foreign => Err(PyValueError::new_err(format!(
                "{what}: the array was not acquired from this pool"
            ))),
        }
    }
}

#[pymethods]
impl SlotPoolCore {
    #[new]
    #[pyo3(signature = (dtype, shape, capacity, on_exhausted, max_capacity, shm_name))]
    fn new(
        dtype: &Bound<'_, PyArrayDescr>,
        shape: Vec<usize>,
        capacity: usize,
        on_exhausted: &str,
        max_capacity: Option<usize>,
        shm_name: Option<String>,
    ) -> PyResult<Self> {
        let items: usize = shape.iter().product();
        let nbytes = items * dtype.itemsize();
        let policy = match on_exhausted {
            "block" => OnExhausted::Block,
            "raise" => OnExhausted::Raise,
            "grow" => OnExhausted::Grow {
                max_slots: max_capacity.unwrap_or(usize::MAX),
            },
            _ => {
                return Err(PyValueError::new_err(
                    "on_exhausted: must be 'block', 'raise' or 'grow'",
                ))
            }
        };
        Ok(SlotPoolCore {
            pool: Arc::new(SlotPool::new(nbytes, capacity, policy, shm_name)?),
            descr: dtype.clone().unbind(),
            dims: shape.iter().map(|&d| d as npy_intp).collect(),
            nbytes,
            tombstone: Region::heap(nbytes)?,
        })
    }

    #[getter]
    fn slot_bytes(&self) -> usize {
        self.pool.slot_bytes()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.pool.is_closed()
    }

    #[pyo3(signature = (timeout=None))]
    fn acquire<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let timeout = check_timeout(timeout)?;
        let acquired = match self.pool.try_acquire()? {
            Some(acquired) => acquired,
            None => {
                let pool = &self.pool;
                py.detach(|| {
                    pool.acquire_blocking(timeout, || Python::attach(|py| py.check_signals()))
                })?
            }
        };
        // From here the owner gives the slot back if anything fails.
        let owner = SlotOwner {
            pool: self.pool.clone(),
            slot: acquired.slot,
            ptr: acquired.ptr as usize,
        };
        let owner = Bound::new(py, owner)?;
        if !acquired.fresh {
            // Safety: the slot is ours alone and `nbytes` long.
            unsafe { std::ptr::write_bytes(acquired.ptr, 0, self.nbytes) };
        }
        let descr = self.descr.bind(py);
        // Safety: the slot's memory lives as long as the pool, which the owner keeps alive.
        unsafe {
            let root = array_over(py, descr, &self.dims, acquired.ptr, true, owner.into_any())?;
            array_over(py, descr, &self.dims, acquired.ptr, true, root)
        }
    }

    /// Detaches `array` from its slot: it becomes a read-only view of zeros (the same place in
    /// the tombstone), and its reference to the root goes, so the slot comes back as soon as no
    /// other view of it is alive.
    fn release(slf: &Bound<'_, Self>, array: &Bound<'_, PyAny>) -> PyResult<()> {
        let owner = Self::owner_of(slf, array, "release")?;
        let this = slf.get();
        // Safety: `array` is a live ndarray (it has a root); its data lies in the owner's slot,
        // `nbytes` long like the tombstone. The old base reference is released last.
        unsafe {
            let fields = &mut (*array.cast_unchecked::<PyUntypedArray>().as_array_ptr()).fields;
            let offset = fields.data as usize - owner.get().ptr;
            fields.data = this.tombstone.as_ptr().add(offset).cast();
            fields.flags &= !npyffi::NPY_ARRAY_WRITEABLE;
            let root = std::mem::replace(&mut fields.base, slf.clone().into_any().into_ptr());
            drop(owner);
            drop(Bound::from_owned_ptr(slf.py(), root));
        }
        Ok(())
    }

    fn slot_of(slf: &Bound<'_, Self>, array: &Bound<'_, PyAny>) -> PyResult<usize> {
        if slf.get().pool.is_closed() {
            return Err(CoreError::Closed("the pool is closed".into()).into());
        }
        Ok(Self::owner_of(slf, array, "slot_of")?.get().slot)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.pool.stats();
        let dict = PyDict::new(py);
        dict.set_item("capacity", s.capacity)?;
        dict.set_item("in_use", s.in_use)?;
        dict.set_item("high_water", s.high_water)?;
        dict.set_item("acquires", s.acquires)?;
        dict.set_item("reuses", s.reuses)?;
        dict.set_item("waits", s.waits)?;
        dict.set_item("bytes", s.bytes)?;
        Ok(dict)
    }

    fn close(&self) {
        self.pool.close();
    }
}

/// Holds one interned blob; the base of the read-only arrays over it.
#[pyclass(frozen, module = "freeagentics_rs._native")]
struct BlobOwner {
    blob: Arc<Blob>,
}

/// One copy of each distinct array (see `core::memory::ModelStore`).
#[pyclass(frozen, module = "freeagentics_rs._native")]
pub struct ModelStoreCore {
    store: ModelStore,
}

#[pymethods]
impl ModelStoreCore {
    #[new]
    #[pyo3(signature = (shm_name=None))]
    fn new(shm_name: Option<String>) -> Self {
        ModelStoreCore {
            store: ModelStore::new(shm_name),
        }
    }

    /// `(root, hit)`: a read-only uint8 array over the held copy of `data`'s bytes, and whether
    /// a copy was already held. `meta` says what the bytes mean (dtype and shape).
    fn intern<'py>(
        &self,
        py: Python<'py>,
        data: PyReadonlyArray1<'py, u8>,
        meta: &[u8],
        header: &[u8],
    ) -> PyResult<Bound<'py, PyTuple>> {
        let bytes = data
            .as_slice()
            .map_err(|_| PyTypeError::new_err("data: must be contiguous"))?;
        let (blob, hit) = py.detach(|| self.store.intern(meta, bytes, header))?;
        let (ptr, len) = (blob.data_ptr(), blob.len());
        let owner = Bound::new(py, BlobOwner { blob })?.into_any();
        let descr = numpy::dtype::<u8>(py);
        // Safety: the blob lives as long as its owner, the root's base.
        let root = unsafe { array_over(py, &descr, &[len as npy_intp], ptr, false, owner)? };
        (root, hit).into_pyobject(py)
    }

    /// The key of an interned root array (`None` if it is not one of this store's).
    fn key_of(&self, root: &Bound<'_, PyAny>) -> Option<String> {
        let owner = base_of(root)?.cast_into::<BlobOwner>().ok()?;
        let blob = &owner.get().blob;
        blob.belongs_to(&self.store).then(|| blob.key().to_owned())
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.store.stats();
        let dict = PyDict::new(py);
        dict.set_item("unique", s.unique)?;
        dict.set_item("bytes_held", s.bytes_held)?;
        dict.set_item("bytes_saved", s.bytes_saved)?;
        Ok(dict)
    }

    fn close(&self) {
        self.store.close();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SlotPoolCore>()?;
    m.add_class::<ModelStoreCore>()
}
