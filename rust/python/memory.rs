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
use pyo3::types::{IntoPyDict, PyDict, PyTuple};

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

/// The base of a released array that other objects still held when it was released: it keeps
/// the root, so the slot comes back only when the array (and whatever holds it) is gone.
#[pyclass(frozen, module = "freeagentics_rs._native")]
struct ReleasedHold {
    _root: Py<PyAny>,
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
    /// References an array passed to `release` has when only the caller's variable holds it.
    arg_refs: isize,
}

impl SlotPoolCore {
    /// An array handed out by this pool (or a view of one) is alive while its base is a root
    /// whose base is a `SlotOwner` of this pool; a released one's base is the pool itself.
    fn lease_of<'py>(slf: &Bound<'py, Self>, array: &Bound<'py, PyAny>) -> Lease<'py> {
        let released =
            |base: &Bound<'py, PyAny>| base.is(slf) || base.is_instance_of::<ReleasedHold>();
        let Some(base) = base_of(array) else {
            return Lease::Foreign;
        };
        if released(&base) {
            return Lease::Released;
        }
        match base_of(&base) {
            Some(owner) if released(&owner) => Lease::Released,
            Some(owner) => match owner.cast_into::<SlotOwner>() {
                Ok(owner) if Arc::ptr_eq(&owner.get().pool, &slf.get().pool) => Lease::Alive(owner),
                _ => Lease::Foreign,
            },
            None => Lease::Foreign,
        }
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
    #[pyo3(signature = (dtype, shape, capacity, on_exhausted, max_capacity, shm_name, arg_refs=2))]
    fn new(
        dtype: &Bound<'_, PyArrayDescr>,
        shape: Vec<usize>,
        capacity: usize,
        on_exhausted: &str,
        max_capacity: Option<usize>,
        shm_name: Option<String>,
        arg_refs: isize,
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
            pool: Arc::new(SlotPool::new(nbytes, capacity, policy, shm_name)?),
            descr: dtype.clone().unbind(),
            dims: shape.iter().map(|&d| d as npy_intp).collect(),
            nbytes,
            tombstone: Region::heap(nbytes)?,
            arg_refs,
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
        &self,
        py: Python<'py>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
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

    /// Gives `array`'s slot back early. If nothing but the caller (and `held` references the
    /// caller knows of) holds `array`, it is detached from the slot: it becomes a read-only view
    /// of zeros (the same place in the tombstone) and drops the root, so the slot comes back as
    /// soon as no other view is alive. If something else holds it (a memoryview, a subclass
    /// view, a DLPack capsule...), it is only made read-only, and the slot comes back with it.
    #[pyo3(signature = (array, held=0))]
    fn release(slf: &Bound<'_, Self>, array: &Bound<'_, PyAny>, held: isize) -> PyResult<()> {
        let owner = Self::owner_of(slf, array, "release")?;
        let this = slf.get();
        // Safety: `array` is a live ndarray (it has a root).
        let array = unsafe { array.cast_unchecked::<PyUntypedArray>() };
        if !this.lies_in_slot(array, owner.get().ptr) {
            return Err(PyValueError::new_err(
                "release: the array was not acquired from this pool",
            ));
        }
        // Safety: a live object.
        let refs = unsafe { pyo3::ffi::Py_REFCNT(array.as_ptr()) };
        let sole = refs <= this.arg_refs + held;
        let py = slf.py();
        // Safety: `array` lies in the owner's slot, `nbytes` long like the tombstone (checked
        // above); the old base reference is released last.
        unsafe {
            let fields = &mut (*array.as_array_ptr()).fields;
            fields.flags &= !npyffi::NPY_ARRAY_WRITEABLE;
            let new_base = if sole {
                fields.data = this
                    .tombstone
                    .as_ptr()
                    .add(fields.data as usize - owner.get().ptr)
                    .cast();
                slf.clone().into_any()
            } else {
                let root = Bound::from_borrowed_ptr(py, fields.base).unbind();
                Bound::new(py, ReleasedHold { _root: root })?.into_any()
            };
            let root = std::mem::replace(&mut fields.base, new_base.into_ptr());
            drop(owner);
            drop(Bound::from_owned_ptr(py, root));
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
        let counts = [
            ("capacity", s.capacity as u64),
            ("in_use", s.in_use as u64),
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

/// The reference count of `object` as a function called from Python sees it: what `release`
/// sees of an array only the caller's variable holds (2 on CPython 3.10-3.13).
#[pyfunction]
fn refcount(object: &Bound<'_, PyAny>) -> isize {
    // Safety: a live object.
    unsafe { pyo3::ffi::Py_REFCNT(object.as_ptr()) }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(refcount, m)?)?;
    m.add_class::<SlotPoolCore>()?;
    m.add_class::<ModelStoreCore>()
}
