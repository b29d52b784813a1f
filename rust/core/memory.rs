//! Memory the bindings hand out as numpy arrays: 64-byte aligned regions (heap or POSIX shared
//! memory), a pool of fixed-size slots carved out of such regions, and a store that keeps one
//! copy of each distinct byte string. No pyo3 here; the bindings decide when a slot comes back.

use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::core::error::CoreError;

/// Alignment of every region and slot: a cache line, and enough for any SIMD load.
pub const ALIGN: usize = 64;

/// `n` rounded up to a multiple of `ALIGN`.
pub fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// A zero-filled, 64-byte aligned block of memory: on the heap, or a mapped POSIX shared-memory
/// segment this process created (owner-only). Unmapped or freed on drop; unlinking a segment's
/// name is separate (`shm_unlink`), so a name can go while mappings live on.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    shared: bool,
}

// The region is plain memory; who may write where is the pool's business.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

fn os_error(what: &str, name: &str) -> CoreError {
    let error = std::io::Error::last_os_error();
    CoreError::Os(
        error.raw_os_error().unwrap_or(0),
        format!("{what} {name}: {error}"),
    )
}

fn shm_path(name: &str) -> Result<CString, CoreError> {
    CString::new(format!("/{name}"))
        .map_err(|_| CoreError::InvalidArgument("name: must not contain NUL".into()))
}

impl Region {
    pub fn heap(len: usize) -> Result<Region, CoreError> {
        let layout = std::alloc::Layout::from_size_align(len.max(1), ALIGN).map_err(|_| {
            CoreError::InvalidArgument(format!("a region of {len} bytes is too large"))
        })?;
        // Safety: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or_else(|| {
            CoreError::Os(
                libc::ENOMEM,
                format!("out of memory allocating {len} bytes"),
            )
        })?;
        Ok(Region {
            ptr,
            len,
            shared: false,
        })
    }

    /// Creates the shared-memory segment `/name` (it must not exist), mode 0600, and maps it.
    pub fn shm_create(name: &str, len: usize) -> Result<Region, CoreError> {
        let path = shm_path(name)?;
        let size = len.max(1);
        // Safety: plain libc calls on a valid C string; every failure is checked.
        unsafe {
            let fd = libc::shm_open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600,
            );
            if fd < 0 {
                return Err(os_error("cannot create shared memory", name));
            }
            if libc::ftruncate(fd, size as libc::off_t) != 0 {
                let error = os_error("cannot size shared memory", name);
                libc::close(fd);
                libc::shm_unlink(path.as_ptr());
                return Err(error);
            }
            // Reserve the pages now: on a full /dev/shm the first write to an unreserved page
            // would kill the process with SIGBUS. (Filesystems without fallocate stay lazy.)
            let reserved = libc::posix_fallocate(fd, 0, size as libc::off_t);
            if reserved == libc::ENOSPC {
                libc::close(fd);
                libc::shm_unlink(path.as_ptr());
                return Err(CoreError::Os(
                    reserved,
                    format!("cannot reserve {size} bytes of shared memory {name}: no space left"),
                ));
            }
            let flags = libc::PROT_READ | libc::PROT_WRITE;
            let ptr = libc::mmap(std::ptr::null_mut(), size, flags, libc::MAP_SHARED, fd, 0);
            libc::close(fd);
            if ptr == libc::MAP_FAILED {
                let error = os_error("cannot map shared memory", name);
                libc::shm_unlink(path.as_ptr());
                return Err(error);
            }
            Ok(Region {
                ptr: NonNull::new_unchecked(ptr.cast()),
                len,
                shared: true,
            })
        }
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of the region (the caller makes sure no one writes to them meanwhile).
    pub fn bytes(&self) -> &[u8] {
        // Safety: `len` bytes are mapped for the region's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let size = self.len.max(1);
        // Safety: the pointer and size are those of the allocation or mapping made above.
        unsafe {
            if self.shared {
                libc::munmap(self.ptr.as_ptr().cast(), size);
            } else {
                let layout = std::alloc::Layout::from_size_align_unchecked(size, ALIGN);
                std::alloc::dealloc(self.ptr.as_ptr(), layout);
            }
        }
    }
}

/// Removes the name of a shared-memory segment; false if there was none.
pub fn shm_unlink(name: &str) -> bool {
    match shm_path(name) {
        // Safety: a valid C string.
        Ok(path) => unsafe { libc::shm_unlink(path.as_ptr()) == 0 },
        Err(_) => false,
    }
}

/// What `acquire` does when every slot is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    Block,
    Raise,
    /// Add chunks of slots until the pool has `max_slots`; then raise.
    Grow {
        max_slots: usize,
    },
}

/// A slot handed out: its index and address; `fresh` when it was never used, so it is still
/// zero-filled (regions start zeroed).
#[derive(Debug, Clone, Copy)]
pub struct Acquired {
    pub slot: usize,
    pub ptr: *mut u8,
    pub fresh: bool,
}

// The address is only a number until the binding that acquired the slot writes through it.
unsafe impl Send for Acquired {}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub capacity: usize,
    pub in_use: usize,
    pub high_water: usize,
    pub acquires: u64,
    pub reuses: u64,
    pub waits: u64,
    pub bytes: usize,
}

struct PoolState {
    chunks: Vec<Region>,
    /// Slots given back, reused last-in first-out (their memory is warm in cache).
    free: Vec<usize>,
    /// Slots below this index have been handed out at least once.
    next_fresh: usize,
    stats: PoolStats,
    closed: bool,
    /// Threads in `acquire_blocking`: `give_back` wakes one only when there are any (a
    /// condvar notification is a system call even when no one waits).
    waiters: usize,
}

/// Fixed-size slots in chunks of `chunk_slots` (the last chunk may be shorter). Every chunk is
/// one region; in shared memory, chunk `k` is the segment `{name}-c{k}`.
pub struct SlotPool {
    slot_bytes: usize,
    chunk_slots: usize,
    on_exhausted: OnExhausted,
    shm_name: Option<String>,
    /// The process that created the shared memory: only it hands out slots or removes names
    /// (a forked child's copy of the free list would hand out the parent's slots again).
    owner: u32,
    state: Mutex<PoolState>,
    freed: Condvar,
}

/// The error of a shared object used in a forked child.
pub fn foreign_process(what: &str, owner: u32) -> CoreError {
    CoreError::Closed(format!(
        "the {what} belongs to process {owner}; in this process, attach to it by name"
    ))
}

/// Whether this is the process's main thread (the only one that sees Ctrl-C).
fn on_main_thread() -> bool {
    // Safety: plain system calls without arguments.
    unsafe { libc::gettid() == libc::getpid() }
}

/// How often a blocked `acquire` runs its interrupt check (Ctrl-C).
const WAIT_SLICE: Duration = Duration::from_millis(50);

impl SlotPool {
    pub fn new(
        slot_bytes: usize,
        capacity: usize,
        on_exhausted: OnExhausted,
        shm_name: Option<String>,
    ) -> Result<SlotPool, CoreError> {
        if slot_bytes == 0 || capacity == 0 {
            return Err(CoreError::InvalidArgument(
                "capacity: must be at least 1".into(),
            ));
        }
        let pool = SlotPool {
            slot_bytes: align_up(slot_bytes),
            chunk_slots: capacity,
            on_exhausted,
            shm_name,
            owner: std::process::id(),
            state: Mutex::new(PoolState {
                chunks: Vec::new(),
                free: Vec::new(),
                next_fresh: 0,
                stats: PoolStats::default(),
                closed: false,
                waiters: 0,
            }),
            freed: Condvar::new(),
        };
        pool.add_chunk(&mut pool.lock(), capacity)?;
        Ok(pool)
    }

    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state stays consistent across a panic (no step leaves it half-done), so a poisoned
        // lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add_chunk(&self, state: &mut PoolState, slots: usize) -> Result<(), CoreError> {
        let bytes = slots
            .checked_mul(self.slot_bytes)
            .ok_or_else(|| CoreError::InvalidArgument("capacity: too large".into()))?;
        let region = match &self.shm_name {
            Some(name) => Region::shm_create(&format!("{name}-c{}", state.chunks.len()), bytes)?,
            None => Region::heap(bytes)?,
        };
        state.chunks.push(region);
        state.stats.capacity += slots;
        state.stats.bytes += bytes;
        Ok(())
    }

    /// A free slot now, `Ok(None)` when the policy is to wait, or the reason there is none.
    fn take(&self, state: &mut PoolState) -> Result<Option<Acquired>, CoreError> {
        if state.closed {
            return Err(CoreError::Closed("the pool is closed".into()));
        }
        if self.shm_name.is_some() && std::process::id() != self.owner {
            return Err(foreign_process("pool", self.owner));
        }
        let (slot, fresh) = if let Some(slot) = state.free.pop() {
            (slot, false)
        } else if state.next_fresh < state.stats.capacity {
            state.next_fresh += 1;
            (state.next_fresh - 1, true)
        } else {
            let capacity = state.stats.capacity;
            match self.on_exhausted {
                OnExhausted::Block => return Ok(None),
                OnExhausted::Raise => {
                    return Err(CoreError::Exhausted(format!(
                        "all {capacity} slots are in use"
                    )))
                }
                OnExhausted::Grow { max_slots } if capacity >= max_slots => {
                    return Err(CoreError::Exhausted(format!(
                        "all {capacity} slots are in use and max_capacity is reached"
                    )))
                }
                OnExhausted::Grow { max_slots } => {
                    self.add_chunk(state, self.chunk_slots.min(max_slots - capacity))?;
                    state.next_fresh += 1;
                    (capacity, true)
                }
            }
        };
        let stats = &mut state.stats;
        stats.acquires += 1;
        stats.reuses += u64::from(!fresh);
        stats.in_use += 1;
        stats.high_water = stats.high_water.max(stats.in_use);
        let chunk = &state.chunks[slot / self.chunk_slots];
        // Safety: the offset lies inside the chunk (slot % chunk_slots < slots of that chunk).
        let ptr = unsafe {
            chunk
                .as_ptr()
                .add(slot % self.chunk_slots * self.slot_bytes)
        };
        Ok(Some(Acquired { slot, ptr, fresh }))
    }

    /// A slot without waiting: `Ok(None)` when the pool blocks on exhaustion and none is free.
    pub fn try_acquire(&self) -> Result<Option<Acquired>, CoreError> {
        self.take(&mut self.lock())
    }

    /// Waits up to `timeout` (forever if `None`) for a slot. On the main thread it calls
    /// `interrupt` every few tens of milliseconds, without the lock held (its error, Ctrl-C,
    /// ends the wait); other threads sleep until woken or timed out.
    pub fn acquire_blocking<E: From<CoreError>>(
        &self,
        timeout: Option<Duration>,
        mut interrupt: impl FnMut() -> Result<(), E>,
    ) -> Result<Acquired, E> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let slice_limit = if on_main_thread() {
            WAIT_SLICE
        } else {
            Duration::MAX
        };
        let mut state = self.lock();
        let mut waited = false;
        loop {
            if let Some(acquired) = self.take(&mut state)? {
                return Ok(acquired);
            }
            if !waited {
                waited = true;
                state.stats.waits += 1;
            }
            let slice = match deadline {
                None => slice_limit,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let seconds = timeout.unwrap_or_default().as_secs_f64();
                        return Err(CoreError::Exhausted(format!(
                            "no slot was freed within {seconds:?} s"
                        ))
                        .into());
                    }
                    left.min(slice_limit)
                }
            };
            state.waiters += 1;
            state = if slice == Duration::MAX {
                self.freed
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            } else {
                self.freed
                    .wait_timeout(state, slice)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0
            };
            state.waiters -= 1;
            if slice_limit == WAIT_SLICE {
                drop(state);
                interrupt()?;
                state = self.lock();
            }
        }
    }

    /// Gives a slot back (the caller guarantees it was acquired and is returned once).
    pub fn give_back(&self, slot: usize) {
        let mut state = self.lock();
        state.free.push(slot);
        state.stats.in_use -= 1;
        let wake = state.waiters > 0;
        drop(state);
        if wake {
            self.freed.notify_one();
        }
    }

    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// No more acquires; blocked ones fail. Removes the shared-memory names, while the memory
    /// itself lives on until the pool is dropped (arrays still point into it).
    pub fn close(&self) {
        let mut state = self.lock();
        if std::mem::replace(&mut state.closed, true) {
            return;
        }
        if let Some(name) = self
            .shm_name
            .as_ref()
            .filter(|_| std::process::id() == self.owner)
        {
            for k in 0..state.chunks.len() {
                shm_unlink(&format!("{name}-c{k}"));
            }
        }
        drop(state);
        self.freed.notify_all();
    }
}

/// 64-bit content hash (not cryptographic: equal hashes are confirmed by comparing bytes).
pub fn content_hash(parts: &[&[u8]]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    let mut mix = |word: u64| h = (h ^ word).wrapping_mul(K).rotate_left(29);
    for part in parts {
        mix(part.len() as u64);
        let mut words = part.chunks_exact(8);
        for word in &mut words {
            mix(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        mix(u64::from_le_bytes(tail));
    }
    h ^= h >> 32;
    h.wrapping_mul(K) ^ (h >> 29)
}

/// One distinct byte string held by a `ModelStore`: `meta` (what the bytes mean: dtype and
/// shape) and the data, at `offset` in its region (after a header in shared memory). Freed, and
/// its shared-memory name removed, when the last holder drops it.
pub struct Blob {
    region: Region,
    offset: usize,
    len: usize,
    meta: Vec<u8>,
    key: String,
    segment: Option<String>,
    /// The process that created the segment: the only one that removes its name.
    owner: u32,
    store: Weak<StoreShared>,
}

impl Blob {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn data_ptr(&self) -> *mut u8 {
        // Safety: offset + len lies inside the region.
        unsafe { self.region.as_ptr().add(self.offset) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this blob is held by `store`.
    pub fn belongs_to(&self, store: &ModelStore) -> bool {
        std::ptr::eq(self.store.as_ptr(), Arc::as_ptr(&store.shared))
    }

    fn data(&self) -> &[u8] {
        &self.region.bytes()[self.offset..self.offset + self.len]
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // The name goes before the entry, both under the lock: `intern` never reuses the key of
        // an entry that is still listed, so it never meets a segment name that is still taken.
        let store = self.store.upgrade();
        let mut entries = store.as_ref().map(|store| store.lock());
        if let Some(segment) = self
            .segment
            .as_ref()
            .filter(|_| std::process::id() == self.owner)
        {
            shm_unlink(segment);
        }
        if let Some(entries) = entries.as_mut() {
            entries.remove(&self.key);
        }
    }
}

struct Entry {
    blob: Weak<Blob>,
    len: usize,
    handed_out: u64,
}

struct StoreShared {
    entries: Mutex<HashMap<String, Entry>>,
}

impl StoreShared {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub unique: usize,
    pub bytes_held: usize,
    pub bytes_saved: usize,
}

/// One copy of each distinct (meta, bytes); entries live while someone holds their `Blob`.
/// In shared memory, the entry with key `k` is the segment `{name}-{k}`: `header` then data.
pub struct ModelStore {
    shm_name: Option<String>,
    owner: u32,
    shared: Arc<StoreShared>,
}

impl ModelStore {
    pub fn new(shm_name: Option<String>) -> ModelStore {
        ModelStore {
            shm_name,
            owner: std::process::id(),
            shared: Arc::new(StoreShared {
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The held copy of `data` (with the same `meta`), creating it if there is none; the flag
    /// says whether an existing copy was found. `header` goes before the data in shared memory.
    ///
    /// The lock is held only to look up or reserve a key: bytes are compared and copied without
    /// it, so dropping a model array (which takes the lock) never waits for a big copy. Two
    /// threads interning the same new content at once may make two copies; both are correct.
    pub fn intern(
        &self,
        meta: &[u8],
        data: &[u8],
        header: &[u8],
    ) -> Result<(Arc<Blob>, bool), CoreError> {
        if self.shm_name.is_some() && std::process::id() != self.owner {
            return Err(foreign_process("store", self.owner));
        }
        let hash = content_hash(&[meta, data]);
        for n in 0.. {
            let key = if n == 0 {
                format!("{hash:016x}")
            } else {
                format!("{hash:016x}-{n}")
            };
            let found = {
                let mut entries = self.shared.lock();
                match entries.get(&key) {
                    Some(entry) => Some(entry.blob.upgrade()),
                    None => {
                        let pending = Entry {
                            blob: Weak::new(),
                            len: data.len(),
                            handed_out: 0,
                        };
                        entries.insert(key.clone(), pending);
                        None
                    }
                }
            };
            match found {
                // Reserved: copy, then publish (or give the key back).
                None => {
                    let copied = self.copy(key.clone(), meta, data, header);
                    let mut entries = self.shared.lock();
                    let blob = match copied {
                        Ok(blob) => Arc::new(blob),
                        Err(error) => {
                            entries.remove(&key);
                            return Err(error);
                        }
                    };
                    let entry = Entry {
                        blob: Arc::downgrade(&blob),
                        len: data.len(),
                        handed_out: 1,
                    };
                    entries.insert(key, entry);
                    return Ok((blob, false));
                }
                Some(Some(blob)) if blob.meta == meta && blob.data() == data => {
                    // Held alive by `blob`, so still listed.
                    if let Some(entry) = self.shared.lock().get_mut(&key) {
                        entry.handed_out += 1;
                    }
                    return Ok((blob, true));
                }
                // Another content under this hash, or an entry being made or dropped: next key.
                Some(_) => {}
            }
        }
        unreachable!("the key space is unbounded")
    }

    fn copy(
        &self,
        key: String,
        meta: &[u8],
        data: &[u8],
        header: &[u8],
    ) -> Result<Blob, CoreError> {
        let (region, offset, segment) = match &self.shm_name {
            Some(name) => {
                let segment = format!("{name}-{key}");
                let offset = align_up(header.len());
                let region = Region::shm_create(&segment, offset + data.len())?;
                // Safety: the region is new, ours alone, and offset + len bytes long.
                unsafe {
                    std::ptr::copy_nonoverlapping(header.as_ptr(), region.as_ptr(), header.len())
                };
                (region, offset, Some(segment))
            }
            None => (Region::heap(data.len())?, 0, None),
        };
        // Safety: as above.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), region.as_ptr().add(offset), data.len())
        };
        Ok(Blob {
            region,
            offset,
            len: data.len(),
            meta: meta.to_vec(),
            key,
            segment,
            owner: self.owner,
            store: Arc::downgrade(&self.shared),
        })
    }

    pub fn stats(&self) -> StoreStats {
        let entries = self.shared.lock();
        let mut stats = StoreStats::default();
        for entry in entries.values().filter(|e| e.blob.strong_count() > 0) {
            stats.unique += 1;
            stats.bytes_held += entry.len;
            stats.bytes_saved += (entry.handed_out as usize - 1) * entry.len;
        }
        stats
    }

    /// Removes every entry's shared-memory name (the memory lives on while held).
    pub fn close(&self) {
        if let Some(name) = self
            .shm_name
            .as_ref()
            .filter(|_| std::process::id() == self.owner)
        {
            for key in self.shared.lock().keys() {
                shm_unlink(&format!("{name}-{key}"));
            }
        }
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
