//! A store that keeps one copy of each distinct byte string (a model array), on the heap or in
//! shared memory, for as long as someone holds it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::region::{align_up, foreign_process, shm_create_unique, shm_unlink, Region};
use crate::core::error::CoreError;
use crate::core::sync::lock;

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
    /// The store's key of the entry (content hash).
    key: String,
    /// What other processes name it by: the random token of its segment, else `key`.
    public_key: String,
    segment: Option<String>,
    /// The process that created the segment: the only one that removes its name.
    owner: u32,
    store: Weak<StoreShared>,
}

impl Blob {
    /// The key other processes find the blob by (`attach(name).get(key)`).
    pub fn public_key(&self) -> &str {
        &self.public_key
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
    segment: Option<String>,
}

struct StoreShared {
    entries: Mutex<HashMap<String, Entry>>,
}

impl StoreShared {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        lock(&self.entries)
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
                            segment: None,
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
                        segment: blob.segment.clone(),
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
        let (region, offset, segment, public_key) = match &self.shm_name {
            Some(name) => {
                // An unguessable name: no other user can take it before us.
                let offset = align_up(header.len());
                let (region, segment, token) =
                    shm_create_unique(&format!("{name}-"), offset + data.len())?;
                // Safety: the region is new, ours alone, and offset + len bytes long.
                unsafe {
                    std::ptr::copy_nonoverlapping(header.as_ptr(), region.as_ptr(), header.len())
                };
                (region, offset, Some(segment), format!("{token:016x}"))
            }
            None => (Region::heap(data.len())?, 0, None, key.clone()),
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
            public_key,
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
        if std::process::id() == self.owner {
            for segment in self
                .shared
                .lock()
                .values()
                .filter_map(|e| e.segment.as_ref())
            {
                shm_unlink(segment);
            }
        }
    }
}
