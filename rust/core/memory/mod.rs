//! Memory the bindings hand out as numpy arrays: 64-byte aligned regions (heap or POSIX shared
//! memory), a pool of fixed-size slots carved out of such regions, and a store that keeps one
//! copy of each distinct byte string. No pyo3 here; the bindings decide when a slot comes back.

mod region;
mod slots;
mod store;

pub use region::{
    align_up, foreign_process, random_token, shm_create_unique, shm_unlink, shm_write_at, Region,
    ALIGN,
};
pub use slots::{Acquired, OnExhausted, PoolStats, SlotPool, Waiting, CHUNK_TABLE};
pub use store::{content_hash, Blob, ModelStore, StoreStats};

#[cfg(test)]
mod tests;
