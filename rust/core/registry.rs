//! The agent registry: a sharded concurrent map agent id -> agent on dashmap.
//!
//! Values never drop while a shard lock is held: everything removed or replaced is handed back to
//! the caller, who drops it after the lock is gone (a Python value's `__del__` may call back
//! into the registry). Shards are chosen by a stable hash of the id (CRC-32 of its bytes, mixed),
//! the same in every process and in the Python fallback. Writers hold `snapshot` shared and
//! snapshots hold it exclusively, so a snapshot sees every shard at one instant.

use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::RwLock;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::error::CoreError;

/// An agent id: an int (64-bit) or a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentId {
    Int(i64),
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

/// splitmix64's finalizer: spreads the 32 CRC bits over all 64.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl AgentId {
    /// The same in every process: `mix(crc32(b"i" + 8 little-endian bytes))` for ints,
    /// `mix(crc32(b"s" + utf-8))` for strings.
    pub fn stable_hash(&self) -> u64 {
        let crc = match self {
            AgentId::Int(i) => crc32(&[b"i", &i.to_le_bytes()]),
            AgentId::Str(s) => crc32(&[b"s", s.as_bytes()]),
        };
        mix(crc as u64)
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
            self.0 = mix(self.0 ^ b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Why a write did not happen; the value that was offered comes back to be dropped unlocked.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<V> {
    AlreadyRegistered(V),
    NotRegistered(V),
}

pub struct Registry<V> {
    map: DashMap<AgentId, V, BuildHasherDefault<StableHasher>>,
    snapshot: RwLock<()>,
    shard_bits: u32,
}

impl<V: Clone> Registry<V> {
    /// `num_shards` must be a power of two, at least 2.
    pub fn new(num_shards: usize) -> Result<Registry<V>, CoreError> {
        if num_shards < 2 || !num_shards.is_power_of_two() {
            return Err(CoreError::InvalidArgument(
                "num_shards must be a power of two greater than 1".into(),
            ));
        }
        Ok(Registry {
            map: DashMap::with_capacity_and_hasher_and_shard_amount(
                0,
                BuildHasherDefault::default(),
                num_shards,
            ),
            snapshot: RwLock::new(()),
            shard_bits: num_shards.trailing_zeros(),
        })
    }

    fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshotting(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.snapshot.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn num_shards(&self) -> usize {
        1 << self.shard_bits
    }

    /// The shard an id lives in, as dashmap picks it (top bits below its 7 tag bits).
    pub fn shard_of(&self, id: &AgentId) -> usize {
        ((id.stable_hash() << 7) >> (64 - self.shard_bits)) as usize
    }

    pub fn register(&self, id: AgentId, value: V) -> Result<(), Refused<V>> {
        let _writing = self.writing();
        match self.map.entry(id) {
            Entry::Occupied(_) => Err(Refused::AlreadyRegistered(value)),
            Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
        }
    }

    pub fn unregister(&self, id: &AgentId) -> Option<V> {
        let _writing = self.writing();
        self.map.remove(id).map(|(_, value)| value)
    }

    pub fn get(&self, id: &AgentId) -> Option<V> {
        self.map.get(id).map(|value| value.clone())
    }

    pub fn contains(&self, id: &AgentId) -> bool {
        self.map.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Replaces an existing agent; returns the old one.
    pub fn update(&self, id: &AgentId, value: V) -> Result<V, Refused<V>> {
        let _writing = self.writing();
        match self.map.get_mut(id) {
            Some(mut current) => Ok(std::mem::replace(&mut *current, value)),
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
        match self.map.get_mut(id) {
            Some(mut current) if is_expected(&current) => {
                Ok(std::mem::replace(&mut *current, value))
            }
            _ => Err(value),
        }
    }

    /// Every (id, agent) at one instant.
    pub fn snapshot(&self) -> Vec<(AgentId, V)> {
        let _all = self.snapshotting();
        self.map
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
            .collect()
    }

    /// Removes every agent at one instant and returns them (to be dropped unlocked).
    pub fn clear(&self) -> Vec<V> {
        let _all = self.snapshotting();
        let ids: Vec<AgentId> = self.map.iter().map(|entry| entry.key().clone()).collect();
        ids.iter()
            .filter_map(|id| self.map.remove(id).map(|(_, value)| value))
            .collect()
    }

    /// Every id at one instant.
    pub fn ids(&self) -> Vec<AgentId> {
        let _all = self.snapshotting();
        self.map.iter().map(|entry| entry.key().clone()).collect()
    }

    pub fn shard_sizes(&self) -> Vec<usize> {
        let _all = self.snapshotting();
        let mut sizes = vec![0; self.num_shards()];
        for entry in self.map.iter() {
            sizes[self.shard_of(entry.key())] += 1;
        }
        sizes
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
