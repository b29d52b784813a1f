//! Python binding of `core::memory`: `SlotPoolCore` and `ModelStoreCore`, the Rust engines of
//! `freeagentics_rs.SharedMemoryPool` and `SharedModelStore`.
//!
//! A slot is handed out as one numpy array over its memory whose base is a `SlotOwner`. numpy
//! collapses the base of every view (slice, reshape, `asarray`) to that array, and every other
//! holder of its memory (a memoryview, a subclass view, a DLPack capsule) holds a view or the
//! array itself, so the `SlotOwner` dies with the last object that can reach the slot's memory,
//! and only then gives the memory back. `release` never detaches anything: it only stops the
//! slot counting as in use (README, "SharedMemoryPool and SharedModelStore"). No decision
//! depends on a reference count.

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use numpy::npyffi::{self, npy_intp, PY_ARRAY_API};
use numpy::{
    PyArrayDescr, PyArrayDescrMethods, PyReadonlyArray1, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict, PyTuple};

use super::detach::{detached, wait_detached};
use crate::core::error::CoreError;
use crate::core::memory::{Blob, ModelStore, OnExhausted, SlotPool, Waiting};

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

/// A core error as an exception: an allocation failure is a `MemoryError`, as on the Python
/// backend (never an `OSError`, never an abort).
fn py_error(error: CoreError) -> PyErr {
    match error {
        CoreError::Os(libc::ENOMEM, message) => PyMemoryError::new_err(message),
        error => error.into(),
    }
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

/// `timeout` as a duration: `None` waits forever, and so does one too long to represent.
fn check_timeout(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    let Some(timeout) = timeout.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    let seconds: f64 = timeout
        .extract()
        .map_err(|_| PyTypeError::new_err("timeout: must be a number of seconds or None"))?;
    if !(seconds >= 0.0 && seconds.is_finite()) {
        return Err(PyValueError::new_err(
            "timeout: must be a non-negative number of seconds",
        ));
    }
    Ok(Duration::try_from_secs_f64(seconds).ok())
}

/// The holder of one acquired slot, the base of the array over it; gives the slot's memory back
/// when it dies (no array of the slot is left).
#[pyclass(frozen, module = "freeagentics_rs._native")]
struct SlotOwner {
    /// The core, kept alive (usable, its shared names kept) while any array of it lives.
    core: Py<SlotPoolCore>,
    slot: usize,
    ptr: usize,
    released: AtomicBool,
}

impl Drop for SlotOwner {
    fn drop(&mut self) {
        let pool = &self.core.get().pool;
        if self.released.load(Ordering::Acquire) {
            pool.reclaim(self.slot);
        } else {
            pool.give_back(self.slot);
        }
    }
}

/// A pool of zero-filled numpy buffers of one shape and dtype (see `core::memory::SlotPool`).
/// Weakly referenceable: the Python wrapper removes the pool's shared names when it dies.
#[pyclass(frozen, weakref, module = "freeagentics_rs._native")]
pub struct SlotPoolCore {
    pool: Arc<SlotPool>,
    descr: Py<PyArrayDescr>,
    dims: Vec<npy_intp>,
    nbytes: usize,
}

impl SlotPoolCore {
    /// The owner of the slot that `array` (the array `acquire` returned, or a view of it) lies
    /// in, if it is one of this pool's.
    fn slot_owner_of<'py>(
        slf: &Bound<'py, Self>,
        array: &Bound<'py, PyAny>,
    ) -> Option<Bound<'py, SlotOwner>> {
        let base = base_of(array)?;
        let owner = match base.cast_into::<SlotOwner>() {
            Ok(owner) => owner,
            Err(error) => base_of(&error.into_inner())?
                .cast_into::<SlotOwner>()
                .ok()?,
        };
        owner.get().core.is(slf).then_some(owner)
    }

    /// Whether `array` is a view lying inside the slot at `start` (not an array owning a copy,
    /// such as a write-back temporary, whose base happens to be the root).
    fn lies_in_slot(&self, array: &Bound<'_, PyUntypedArray>, start: usize) -> bool {
        // Safety: a live ndarray; its dimensions and strides arrays have `nd` entries.
        let fields = unsafe { &(*array.as_array_ptr()).fields };
        if fields.flags & (npyffi::NPY_ARRAY_OWNDATA | npyffi::NPY_ARRAY_WRITEBACKIFCOPY) != 0 {
            return false;
        }
        let (mut low, mut high) = (0isize, 0isize);
        for k in 0..fields.nd as usize {
            // Safety: k < nd.
            let (dim, stride) = unsafe { (*fields.dimensions.add(k), *fields.strides.add(k)) };
            if dim == 0 {
                return true; // empty: touches no memory
            }
            let reach = (dim - 1) * stride;
            if reach < 0 {
                low += reach;
            } else {
                high += reach;
            }
        }
        let data = fields.data as isize;
        let itemsize = array.dtype().itemsize() as isize;
        data + low >= start as isize && data + high + itemsize <= (start + self.nbytes) as isize
    }

    fn owner_of<'py>(
        slf: &Bound<'py, Self>,
        array: &Bound<'py, PyAny>,
        what: &str,
    ) -> PyResult<Bound<'py, SlotOwner>> {
        let foreign =
            || PyValueError::new_err(format!("{what}: the array was not acquired from this pool"));
        let owner = Self::slot_owner_of(slf, array).ok_or_else(foreign)?;
        // Safety: `array` is a live ndarray (it has a base).
        let array = unsafe { array.cast_unchecked::<PyUntypedArray>() };
        if !slf.get().lies_in_slot(array, owner.get().ptr) {
            return Err(foreign());
        }
        if owner.get().released.load(Ordering::Acquire) {
            return Err(PyValueError::new_err(format!(
                "{what}: the array was already released"
            )));
        }
        Ok(owner)
    }
}

#[pymethods]
impl SlotPoolCore {
    #[new]
    #[pyo3(signature = (dtype, shape, *, capacity, on_exhausted, max_capacity, shm_name))]
    fn new(
        dtype: &Bound<'_, PyArrayDescr>,
        shape: Vec<usize>,
        capacity: usize,
        on_exhausted: &str,
        max_capacity: Option<usize>,
        shm_name: Option<String>,
    ) -> PyResult<Self> {
        let nbytes = shape
            .iter()
            .try_fold(dtype.itemsize(), |n, &d| n.checked_mul(d))
            .filter(|&n| n <= isize::MAX as usize / 2)
            .ok_or_else(|| PyValueError::new_err("shape: the buffer would be too large"))?;
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
            pool: Arc::new(SlotPool::new(nbytes, capacity, policy, shm_name).map_err(py_error)?),
            descr: dtype.clone().unbind(),
            dims: shape.iter().map(|&d| d as npy_intp).collect(),
            nbytes,
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
    fn acquire<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let timeout = check_timeout(timeout)?;
        let acquired = match this.pool.try_acquire().map_err(py_error)? {
            Some(acquired) => acquired,
            None => {
                let (pool, mut waiting) = (&this.pool, Waiting::new(timeout));
                wait_detached(py, |slice| {
                    pool.acquire_within(&mut waiting, slice).transpose()
                })?
                .map_err(py_error)?
            }
        };
        // From here the owner gives the slot back if anything fails.
        let owner = SlotOwner {
            core: slf.clone().unbind(),
            slot: acquired.slot,
            ptr: acquired.ptr as usize,
            released: AtomicBool::new(false),
        };
        let owner = Bound::new(py, owner)?;
        if !acquired.fresh {
            // Safety: the slot is ours alone and `nbytes` long.
            unsafe { std::ptr::write_bytes(acquired.ptr, 0, this.nbytes) };
        }
        let descr = this.descr.bind(py);
        // Safety: the slot's memory lives as long as the pool, which the owner keeps alive.
        unsafe { array_over(py, descr, &this.dims, acquired.ptr, true, owner.into_any()) }
    }

    /// Stops `array`'s slot counting as in use, at once. Its memory is reused only when the
    /// last array, view or memoryview of it is gone, so nothing that still reaches it ever sees
    /// the next holder's data. `array` (and the array `acquire` returned) become read-only.
    fn release(slf: &Bound<'_, Self>, array: &Bound<'_, PyAny>) -> PyResult<()> {
        let owner = Self::owner_of(slf, array, "release")?;
        if owner.get().released.swap(true, Ordering::AcqRel) {
            return Err(PyValueError::new_err(
                "release: the array was already released",
            ));
        }
        // Safety: `array` and its base are live ndarrays (checked by `owner_of`); only a flag
        // changes, under the GIL.
        unsafe {
            let array = array.cast_unchecked::<PyUntypedArray>();
            (*array.as_array_ptr()).fields.flags &= !npyffi::NPY_ARRAY_WRITEABLE;
            if let Some(root) = base_of(array).filter(|b| !b.is_instance_of::<SlotOwner>()) {
                let root = root.cast_unchecked::<PyUntypedArray>();
                (*root.as_array_ptr()).fields.flags &= !npyffi::NPY_ARRAY_WRITEABLE;
            }
        }
        slf.get().pool.release();
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
        let counts = [
            ("capacity", s.capacity as u64),
            ("in_use", s.in_use as u64),
            ("retained", s.retained as u64),
            ("high_water", s.high_water as u64),
            ("acquires", s.acquires),
            ("reuses", s.reuses),
            ("waits", s.waits),
            ("bytes", s.bytes as u64),
        ];
        counts.into_py_dict(py)
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
        let (blob, hit) =
            detached(py, || self.store.intern(meta, bytes, header))?.map_err(py_error)?;
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
        blob.belongs_to(&self.store)
            .then(|| blob.public_key().to_owned())
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.store.stats();
        [
            ("unique", s.unique),
            ("bytes_held", s.bytes_held),
            ("bytes_saved", s.bytes_saved),
        ]
        .into_py_dict(py)
    }

    fn close(&self) {
        self.store.close();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SlotPoolCore>()?;
    m.add_class::<ModelStoreCore>()
}
