//! The agent registry: a sharded concurrent map agent id -> agent that keeps registration order.
//!
//! `num_shards` hash maps, each behind its own read-write lock (the layout of dashmap, written
//! out so that every allocation is fallible: a map that cannot grow refuses the write with
//! `OutOfMemory` instead of aborting the process). Shards are chosen by a stable hash of the id
//! (CRC-32 of its bytes, mixed), the same in every process and in the Python fallback.
//!
//! Values never drop while a shard lock is held: everything removed or replaced is handed back to
//! the caller, who drops it after the lock is gone (a Python value's `__del__` may call back
//! into the registry). Writers hold `snapshot` shared and snapshots hold it exclusively, so a
//! snapshot sees every shard at one instant. Each entry carries the sequence number of its
//! registration; snapshots sort by it, so they list agents in registration order (replacing an
//! agent keeps its place, as in a dict).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use crossbeam_utils::CachePadded;

use crate::core::rng::splitmix64;
use crate::core::sync::{read, write};

/// The most shards a registry may have: 65 536 maps (a few MB) is far more than any number of
/// threads can contend for.
pub const MAX_SHARDS: usize = 1 << 16;

/// The smallest and largest int ids: every int64 and every uint64.
pub const MIN_INT_ID: i128 = i64::MIN as i128;
pub const MAX_INT_ID: i128 = u64::MAX as i128;

/// An agent id: an int in `MIN_INT_ID..=MAX_INT_ID` or a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentId {
    Int(i128),
    Str(String),
}

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

const CRC32: [u32; 256] = crc32_table();

/// CRC-32 (IEEE), as Python's `zlib.crc32`.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &byte in *part {
            crc = CRC32[((crc ^ byte as u32) & 0xFF) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

impl AgentId {
    /// The same in every process: `splitmix64(crc32(b"i" + the low 8 bytes, little-endian))`
    /// for ints (the two's complement bytes of an int64, the bytes of a uint64),
    /// `splitmix64(crc32(b"s" + utf-8))` for strings: splitmix64 spreads the 32 CRC bits over
    /// all 64.
    pub fn stable_hash(&self) -> u64 {
        let crc = match self {
            AgentId::Int(i) => crc32(&[b"i", &(*i as u64).to_le_bytes()]),
            AgentId::Str(s) => crc32(&[b"s", s.as_bytes()]),
        };
        splitmix64(crc as u64)
    }
}

impl Hash for AgentId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.stable_hash());
    }
}

/// Passes on the one u64 an `AgentId` writes.
#[derive(Default)]
pub struct StableHasher(u64);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `AgentId`; fold anything else in for completeness.
        for &b in bytes {
            self.0 = splitmix64(self.0 ^ b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Why a registry could not be built.
#[derive(Debug, PartialEq, Eq)]
pub enum NewError {
    InvalidArgument(String),
    OutOfMemory,
}

/// Why a write did not happen; the value that was offered comes back to be dropped unlocked.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<V> {
    AlreadyRegistered(V),
    NotRegistered(V),
    OutOfMemory(V),
}

/// An allocation the registry needed failed; nothing was changed.
#[derive(Debug, PartialEq, Eq)]
pub struct OutOfMemory;

/// An agent and the sequence number of its registration.
pub struct Entry<V> {
    seq: u64,
    value: V,
}

type Shard<V> = HashMap<AgentId, Entry<V>, BuildHasherDefault<StableHasher>>;

/// What `clear` took out: dropped by the caller, unlocked.
pub type Cleared<V> = Vec<Shard<V>>;

pub struct Registry<V> {
    shards: Box<[CachePadded<RwLock<Shard<V>>>]>,
    snapshot: RwLock<()>,
    next_seq: AtomicU64,
    len: AtomicUsize,
    shard_bits: u32,
}

impl<V: Clone> Registry<V> {
    /// `num_shards` must be a power of two in `2..=MAX_SHARDS`.
    pub fn new(num_shards: usize) -> Result<Registry<V>, NewError> {
        if !(2..=MAX_SHARDS).contains(&num_shards) || !num_shards.is_power_of_two() {
            return Err(NewError::InvalidArgument(format!(
                "num_shards: must be a power of two between 2 and {MAX_SHARDS}, got {num_shards}"
            )));
        }
        let mut shards = Vec::new();
        shards
            .try_reserve_exact(num_shards)
            .map_err(|_| NewError::OutOfMemory)?;
        shards.extend((0..num_shards).map(|_| CachePadded::new(RwLock::new(Shard::default()))));
        Ok(Registry {
            shards: shards.into_boxed_slice(),
            snapshot: RwLock::new(()),
            next_seq: AtomicU64::new(0),
            len: AtomicUsize::new(0),
            shard_bits: num_shards.trailing_zeros(),
        })
    }

    pub fn num_shards(&self) -> usize {
        1 << self.shard_bits
    }

    /// The shard an id lives in: the top bits of its hash below the 7 a hash table uses for
    /// its tags (as dashmap picks it, so shard numbers are unchanged from earlier versions).
    pub fn shard_of(&self, id: &AgentId) -> usize {
        ((id.stable_hash() << 7) >> (64 - self.shard_bits)) as usize
    }

    fn shard(&self, id: &AgentId) -> &RwLock<Shard<V>> {
        &self.shards[self.shard_of(id)]
    }

    fn writing(&self) -> RwLockReadGuard<'_, ()> {
        read(&self.snapshot)
    }

    /// Adds an agent at the end of the registration order.
    pub fn register(&self, id: AgentId, value: V) -> Result<(), Refused<V>> {
        let _writing = self.writing();
        let mut shard = write(self.shard(&id));
        if shard.contains_key(&id) {
            return Err(Refused::AlreadyRegistered(value));
        }
        if shard.try_reserve(1).is_err() {
            return Err(Refused::OutOfMemory(value));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        shard.insert(id, Entry { seq, value });
        self.len.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Adds an agent, or replaces the registered one in its place; returns the replaced one.
    pub fn set(&self, id: AgentId, value: V) -> Result<Option<V>, Refused<V>> {
        let _writing = self.writing();
        let mut shard = write(self.shard(&id));
        if let Some(entry) = shard.get_mut(&id) {
            return Ok(Some(std::mem::replace(&mut entry.value, value)));
        }
        if shard.try_reserve(1).is_err() {
            return Err(Refused::OutOfMemory(value));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        shard.insert(id, Entry { seq, value });
        self.len.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    /// The registered agent, or registers `value` and returns it. The second value is `value`
    /// itself when it was not stored (to be dropped unlocked).
    pub fn setdefault(&self, id: AgentId, value: V) -> Result<(V, Option<V>), Refused<V>> {
        let _writing = self.writing();
        let mut shard = write(self.shard(&id));
        if let Some(entry) = shard.get(&id) {
            return Ok((entry.value.clone(), Some(value)));
        }
        if shard.try_reserve(1).is_err() {
            return Err(Refused::OutOfMemory(value));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        shard.insert(
            id,
            Entry {
                seq,
                value: value.clone(),
            },
        );
        self.len.fetch_add(1, Ordering::Relaxed);
        Ok((value, None))
    }

    pub fn unregister(&self, id: &AgentId) -> Option<V> {
        let _writing = self.writing();
        let removed = write(self.shard(id)).remove(id);
        removed.map(|entry| {
            self.len.fetch_sub(1, Ordering::Relaxed);
            entry.value
        })
    }

    pub fn get(&self, id: &AgentId) -> Option<V> {
        read(self.shard(id))
            .get(id)
            .map(|entry| entry.value.clone())
    }

    pub fn contains(&self, id: &AgentId) -> bool {
        read(self.shard(id)).contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces an existing agent; returns the old one.
    pub fn update(&self, id: &AgentId, value: V) -> Result<V, Refused<V>> {
        let _writing = self.writing();
        match write(self.shard(id)).get_mut(id) {
            Some(entry) => Ok(std::mem::replace(&mut entry.value, value)),
            None => Err(Refused::NotRegistered(value)),
        }
    }

    /// Replaces the agent with `value` if `is_expected(current)`; returns the old one, or the
    /// offered value back when the id is missing or the current agent is another.
    pub fn compare_and_set(
        &self,
        id: &AgentId,
        is_expected: impl FnOnce(&V) -> bool,
        value: V,
    ) -> Result<V, V> {
        let _writing = self.writing();
        match write(self.shard(id)).get_mut(id) {
            Some(entry) if is_expected(&entry.value) => {
                Ok(std::mem::replace(&mut entry.value, value))
            }
            _ => Err(value),
        }
    }

    /// `(seq, T)` of every entry at one instant, in registration order.
    fn ordered<T>(&self, pick: impl Fn(&AgentId, &V) -> T) -> Result<Vec<T>, OutOfMemory> {
        let _all = write(&self.snapshot);
        let mut picked: Vec<(u64, T)> = Vec::new();
        picked
            .try_reserve_exact(self.len())
            .map_err(|_| OutOfMemory)?;
        for shard in self.shards.iter() {
            for (id, entry) in read(shard).iter() {
                picked.push((entry.seq, pick(id, &entry.value)));
            }
        }
        picked.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(picked.into_iter().map(|(_, item)| item).collect())
    }

    /// Every (id, agent) at one instant, in registration order.
    pub fn snapshot(&self) -> Result<Vec<(AgentId, V)>, OutOfMemory> {
        self.ordered(|id, value| (id.clone(), value.clone()))
    }

    /// Every id at one instant, in registration order.
    pub fn ids(&self) -> Result<Vec<AgentId>, OutOfMemory> {
        self.ordered(|id, _| id.clone())
    }

    /// Removes every agent at one instant and returns them (to be dropped unlocked).
    pub fn clear(&self) -> Result<Cleared<V>, OutOfMemory> {
        let _all = write(&self.snapshot);
        let mut cleared = Vec::new();
        cleared
            .try_reserve_exact(self.shards.len())
            .map_err(|_| OutOfMemory)?;
        for shard in self.shards.iter() {
            cleared.push(std::mem::take(&mut *write(shard)));
        }
        self.len.store(0, Ordering::Relaxed);
        Ok(cleared)
    }

    pub fn shard_sizes(&self) -> Vec<usize> {
        let _all = write(&self.snapshot);
        self.shards.iter().map(|shard| read(shard).len()).collect()
    }
}

#[cfg(test)]
mod tests;
