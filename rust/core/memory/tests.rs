use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::*;
use crate::core::error::CoreError;

fn unique_name(tag: &str) -> String {
    format!(
        "fars-{}-t{tag}{:x}",
        std::process::id(),
        content_hash(&[tag.as_bytes()]) & 0xffff
    )
}

fn shm_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

#[test]
fn slots_are_distinct_aligned_and_reused_after_give_back() {
    let pool = SlotPool::new(100, 4, OnExhausted::Raise, None).unwrap();
    assert_eq!(pool.slot_bytes(), 128);
    let taken: Vec<Acquired> = (0..4)
        .map(|_| pool.try_acquire().unwrap().unwrap())
        .collect();
    let slots: HashSet<usize> = taken.iter().map(|a| a.slot).collect();
    assert_eq!(slots.len(), 4);
    assert!(taken.iter().all(|a| a.fresh && a.ptr as usize % ALIGN == 0));
    assert!(
        matches!(pool.try_acquire(), Err(CoreError::Exhausted(m)) if m == "all 4 slots are in use")
    );
    pool.give_back(taken[2].slot);
    let again = pool.try_acquire().unwrap().unwrap();
    assert_eq!(
        (again.slot, again.ptr, again.fresh),
        (taken[2].slot, taken[2].ptr, false)
    );
    let stats = pool.stats();
    assert_eq!((stats.capacity, stats.in_use, stats.high_water), (4, 4, 4));
    assert_eq!((stats.acquires, stats.reuses, stats.bytes), (5, 1, 512));
}

#[test]
fn grow_adds_chunks_up_to_the_maximum() {
    let pool = SlotPool::new(64, 2, OnExhausted::Grow { max_slots: 5 }, None).unwrap();
    let slots: Vec<usize> = (0..5)
        .map(|_| pool.try_acquire().unwrap().unwrap().slot)
        .collect();
    assert_eq!(slots, vec![0, 1, 2, 3, 4]);
    assert_eq!(pool.stats().capacity, 5);
    assert!(matches!(pool.try_acquire(), Err(CoreError::Exhausted(_))));
}

#[test]
fn a_blocked_acquire_wakes_on_give_back_and_times_out_without_one() {
    let pool = Arc::new(SlotPool::new(64, 1, OnExhausted::Block, None).unwrap());
    let first = pool.try_acquire().unwrap().unwrap();
    assert!(pool.try_acquire().unwrap().is_none());
    let timed_out = pool.acquire_blocking(Some(Duration::from_millis(30)));
    assert!(
        matches!(timed_out, Err(CoreError::Exhausted(m)) if m.starts_with("no slot was freed within"))
    );
    let giver = {
        let pool = pool.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            pool.give_back(first.slot);
        })
    };
    let got = pool.acquire_blocking(None).unwrap();
    giver.join().unwrap();
    assert_eq!(got.slot, first.slot);
    assert_eq!(pool.stats().waits, 2);
}

#[test]
fn a_wait_in_slices_returns_between_them_and_counts_once() {
    let pool = SlotPool::new(64, 1, OnExhausted::Block, None).unwrap();
    let first = pool.try_acquire().unwrap().unwrap();
    let mut waiting = Waiting::new(None);
    for _ in 0..3 {
        let step = pool.acquire_within(&mut waiting, Some(Duration::from_millis(1)));
        assert!(matches!(step, Ok(None)));
    }
    assert_eq!(pool.stats().waits, 1);
    pool.give_back(first.slot);
    let got = pool
        .acquire_within(&mut waiting, Some(Duration::from_millis(1)))
        .unwrap()
        .unwrap();
    assert_eq!((got.slot, pool.stats().waits), (first.slot, 1));
}

#[test]
fn close_fails_blocked_and_later_acquires() {
    let pool = Arc::new(SlotPool::new(64, 1, OnExhausted::Block, None).unwrap());
    pool.try_acquire().unwrap().unwrap();
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || pool.acquire_blocking(None).map(|a| a.slot))
    };
    thread::sleep(Duration::from_millis(20));
    pool.close();
    assert!(matches!(waiter.join().unwrap(), Err(CoreError::Closed(_))));
    assert!(matches!(pool.try_acquire(), Err(CoreError::Closed(_))));
}

#[test]
fn shared_chunks_have_random_names_listed_in_the_header_and_unlinked_on_close() {
    let name = unique_name("pool");
    let header = Region::shm_create(&name, 64).unwrap();
    let pool = SlotPool::new(
        64,
        2,
        OnExhausted::Grow { max_slots: 4 },
        Some(name.clone()),
    )
    .unwrap();
    for _ in 0..3 {
        pool.try_acquire().unwrap().unwrap();
    }
    let table = std::fs::read(std::path::Path::new("/dev/shm").join(&name)).unwrap();
    let chunks: Vec<String> = (0..2)
        .map(|k| {
            let at = CHUNK_TABLE + 8 * k;
            let token = u64::from_le_bytes(table[at..at + 8].try_into().unwrap());
            format!("{name}-c{token:016x}")
        })
        .collect();
    assert!(chunks.iter().all(|chunk| shm_exists(chunk)));
    assert!(!shm_exists(&format!("{name}-c0")) && !shm_exists(&format!("{name}-c1")));
    pool.close();
    assert!(chunks.iter().all(|chunk| !shm_exists(chunk)));
    drop(header);
    shm_unlink(&name);
}

#[test]
fn the_store_keeps_one_copy_per_content_and_frees_it_with_the_last_holder() {
    let store = ModelStore::new(None);
    let (a, hit_a) = store
        .intern(b"<f8|2", &[1, 2, 3, 4, 5, 6, 7, 8, 9], b"")
        .unwrap();
    let (b, hit_b) = store
        .intern(b"<f8|2", &[1, 2, 3, 4, 5, 6, 7, 8, 9], b"")
        .unwrap();
    let (c, _) = store
        .intern(b"<i8|2", &[1, 2, 3, 4, 5, 6, 7, 8, 9], b"")
        .unwrap();
    assert!(!hit_a && hit_b && Arc::ptr_eq(&a, &b) && !Arc::ptr_eq(&a, &c));
    assert_eq!(
        store.stats(),
        StoreStats {
            unique: 2,
            bytes_held: 18,
            bytes_saved: 9
        }
    );
    drop((a, b));
    assert_eq!(
        store.stats(),
        StoreStats {
            unique: 1,
            bytes_held: 9,
            bytes_saved: 0
        }
    );
    drop(c);
    assert_eq!(store.stats(), StoreStats::default());
}

#[test]
fn the_store_writes_shared_entries_after_their_header_and_unlinks_them_when_freed() {
    let name = unique_name("store");
    let store = ModelStore::new(Some(name.clone()));
    let (blob, _) = store.intern(b"m", b"payload", b"HEADER").unwrap();
    let segment = format!("{name}-{}", blob.public_key());
    assert!(shm_exists(&segment));
    let bytes = std::fs::read(std::path::Path::new("/dev/shm").join(&segment)).unwrap();
    assert_eq!(&bytes[..6], b"HEADER");
    assert_eq!(&bytes[ALIGN..ALIGN + 7], b"payload");
    assert_eq!(blob.data_ptr() as usize % ALIGN, 0);
    drop(blob);
    assert!(!shm_exists(&segment));
}

#[test]
fn content_hash_depends_on_every_byte_and_on_part_boundaries() {
    let base = content_hash(&[b"abcdefghij"]);
    assert_ne!(base, content_hash(&[b"abcdefghik"]));
    assert_ne!(base, content_hash(&[b"abcde", b"fghij"]));
    assert_eq!(base, content_hash(&[b"abcdefghij"]));
}

#[test]
fn a_released_slot_is_not_reused_until_reclaimed_and_more_memory_covers_it() {
    let pool = SlotPool::new(64, 1, OnExhausted::Raise, None).unwrap();
    let first = pool.try_acquire().unwrap().unwrap();
    pool.release();
    let second = pool.try_acquire().unwrap().unwrap();
    assert_ne!(second.slot, first.slot);
    assert_ne!(second.ptr, first.ptr);
    let stats = pool.stats();
    assert_eq!(
        (stats.capacity, stats.in_use, stats.retained, stats.bytes),
        (1, 1, 1, 128)
    );
    assert!(matches!(pool.try_acquire(), Err(CoreError::Exhausted(_))));
    pool.reclaim(first.slot);
    pool.give_back(second.slot);
    let third = pool.try_acquire().unwrap().unwrap();
    assert_eq!((third.slot, third.fresh), (second.slot, false));
    assert_eq!(pool.stats().retained, 0);
}
