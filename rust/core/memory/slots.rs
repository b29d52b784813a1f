//! A pool of fixed-size slots carved out of regions: handed out and given back by index, with a
//! policy for when all are in use. The binding decides when a slot's memory is free again.
//!
//! `capacity` bounds the slots in use (handed out and not released). A released slot whose
//! arrays still live is *retained*: it counts against nothing, but its memory is not reused
//! until the binding gives it back; if every slot is in use or retained, a new chunk is added.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::core::sync::{lock, wait, wait_timeout};

use super::region::{
    align_up, foreign_process, shm_create_unique, shm_unlink, shm_write_at, Region,
};

/// Where the header segment of a shared pool lists its chunks: chunk `k`'s random token, a
/// little-endian u64, at `CHUNK_TABLE + 8 * k` (`freeagentics_rs/memory/_shm.py` reads it).
pub const CHUNK_TABLE: usize = 4096;
use crate::core::error::CoreError;

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
    /// The most slots that may be in use at once (grows with `OnExhausted::Grow`).
    pub capacity: usize,
    pub in_use: usize,
    /// Released slots whose memory is still referenced (not reused until given back).
    pub retained: usize,
    pub high_water: usize,
    pub acquires: u64,
    pub reuses: u64,
    pub waits: u64,
    pub bytes: usize,
}

struct PoolState {
    chunks: Vec<Region>,
    /// Shared-memory names of the chunks (unguessable: `{name}-c{random token}`).
    segments: Vec<String>,
    /// Slots given back, reused last-in first-out (their memory is warm in cache).
    free: Vec<usize>,
    /// Slots below this index have been handed out at least once.
    next_fresh: usize,
    /// Slots of all chunks (every chunk has `chunk_slots`).
    slots: usize,
    stats: PoolStats,
    closed: bool,
    /// Threads waiting in `acquire_within`: `give_back` wakes one only when there are any (a
    /// condvar notification is a system call even when no one waits).
    waiters: usize,
}

/// Fixed-size slots in chunks of `chunk_slots`. Every chunk is one region; in shared memory, a
/// segment `{name}-c{token}` whose token the header segment `{name}` lists (`CHUNK_TABLE`).
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

impl Drop for SlotPool {
    /// The last holder is gone: remove the shared names (the memory goes with the regions).
    fn drop(&mut self) {
        self.close();
    }
}

/// One blocked `acquire`: when it gives up, and whether it was counted in `waits` yet.
pub struct Waiting {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    counted: bool,
}

impl Waiting {
    /// Gives up after `timeout` (never if `None`, or if the deadline would overflow).
    pub fn new(timeout: Option<Duration>) -> Waiting {
        Waiting {
            timeout,
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
            counted: false,
        }
    }
}

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
                segments: Vec::new(),
                free: Vec::new(),
                next_fresh: 0,
                slots: 0,
                stats: PoolStats::default(),
                closed: false,
                waiters: 0,
            }),
            freed: Condvar::new(),
        };
        let mut state = pool.lock();
        pool.add_chunk(&mut state)?;
        state.stats.capacity = capacity;
        drop(state);
        Ok(pool)
    }

    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // No step leaves the state half-done, so a poisoned lock is still usable.
        lock(&self.state)
    }

    fn add_chunk(&self, state: &mut PoolState) -> Result<(), CoreError> {
        let bytes = self
            .chunk_slots
            .checked_mul(self.slot_bytes)
            .ok_or_else(|| CoreError::InvalidArgument("capacity: too large".into()))?;
        let region = match &self.shm_name {
            Some(name) => {
                let (region, segment, token) = shm_create_unique(&format!("{name}-c"), bytes)?;
                let entry = CHUNK_TABLE + 8 * state.chunks.len();
                if let Err(error) = shm_write_at(name, entry, &token.to_le_bytes()) {
                    shm_unlink(&segment);
                    return Err(error);
                }
                state.segments.push(segment);
                region
            }
            None => Region::heap(bytes)?,
        };
        state.chunks.push(region);
        state.slots += self.chunk_slots;
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
        let capacity = state.stats.capacity;
        if state.stats.in_use >= capacity {
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
                    state.stats.capacity += self.chunk_slots.min(max_slots - capacity);
                }
            }
        }
        let (slot, fresh) = if let Some(slot) = state.free.pop() {
            (slot, false)
        } else {
            // Every slot is in use or retained: more memory, not more capacity.
            if state.next_fresh == state.slots {
                self.add_chunk(state)?;
            }
            state.next_fresh += 1;
            (state.next_fresh - 1, true)
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

    /// Waits for a slot for at most `slice` (until woken if `None`), within the deadline of
    /// `waiting`: `Ok(Some)` a slot, `Ok(None)` none yet (call again; the binding runs the
    /// signal handlers between calls), or why there will be none (timed out, closed). Slices
    /// keep the waiting policy in the binding, which must leave the interpreter around each.
    pub fn acquire_within(
        &self,
        waiting: &mut Waiting,
        slice: Option<Duration>,
    ) -> Result<Option<Acquired>, CoreError> {
        let mut state = self.lock();
        if let Some(acquired) = self.take(&mut state)? {
            return Ok(Some(acquired));
        }
        if !waiting.counted {
            waiting.counted = true;
            state.stats.waits += 1;
        }
        let left = match waiting.deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let seconds = waiting.timeout.unwrap_or_default().as_secs_f64();
                    return Err(CoreError::Exhausted(format!(
                        "no slot was freed within {seconds:?} s"
                    )));
                }
                Some(left)
            }
        };
        state.waiters += 1;
        state = match [left, slice].into_iter().flatten().min() {
            None => wait(&self.freed, state),
            Some(limit) => wait_timeout(&self.freed, state, limit).0,
        };
        state.waiters -= 1;
        self.take(&mut state)
    }

    /// Waits up to `timeout` (forever if `None`) for a slot, with no interruption.
    pub fn acquire_blocking(&self, timeout: Option<Duration>) -> Result<Acquired, CoreError> {
        let mut waiting = Waiting::new(timeout);
        loop {
            if let Some(acquired) = self.acquire_within(&mut waiting, None)? {
                return Ok(acquired);
            }
        }
    }

    /// Gives a slot back that was in use and whose memory no one references any more (the
    /// caller guarantees it was acquired and is returned once).
    pub fn give_back(&self, slot: usize) {
        let mut state = self.lock();
        state.free.push(slot);
        state.stats.in_use -= 1;
        self.wake(state);
    }

    /// Releases a slot in use whose memory may still be referenced: it no longer counts as in
    /// use, but its memory is not reused until `reclaim`.
    pub fn release(&self) {
        let mut state = self.lock();
        state.stats.in_use -= 1;
        state.stats.retained += 1;
        self.wake(state);
    }

    /// Gives back the memory of a released slot once no one references it.
    pub fn reclaim(&self, slot: usize) {
        let mut state = self.lock();
        state.free.push(slot);
        state.stats.retained -= 1;
    }

    fn wake(&self, state: MutexGuard<'_, PoolState>) {
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
        if std::process::id() == self.owner {
            for segment in &state.segments {
                shm_unlink(segment);
            }
        }
        drop(state);
        self.freed.notify_all();
    }
}
