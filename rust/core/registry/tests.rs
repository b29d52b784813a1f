use super::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[test]
fn crc32_matches_zlib() {
    // zlib.crc32(b"123456789") == 0xCBF43926
    assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
}

#[test]
fn shard_sizes_follow_the_stable_hash() {
    let registry: Registry<u32> = Registry::new(16).unwrap();
    for i in 0..1000 {
        registry
            .register(AgentId::Int(i as i128), i as u32)
            .unwrap();
        registry
            .register(AgentId::Str(format!("agent-{i}")), 0)
            .unwrap();
    }
    let sizes = registry.shard_sizes();
    assert_eq!(sizes.iter().sum::<usize>(), 2000);
    assert!(
        sizes.iter().all(|&n| n > 60),
        "ids spread over shards: {sizes:?}"
    );
    // Each id lives where `shard_of` says: the shard lengths agree.
    let mut expected = vec![0; 16];
    for (id, _) in registry.snapshot().unwrap() {
        expected[registry.shard_of(&id)] += 1;
    }
    assert_eq!(sizes, expected);
}

#[test]
fn bad_shard_counts_are_refused() {
    for n in [0, 1, 3, 12, MAX_SHARDS * 2, 1 << 40] {
        assert!(Registry::<u8>::new(n).is_err(), "{n}");
    }
}

#[test]
fn writes_hand_back_what_they_do_not_keep() {
    let r: Registry<&str> = Registry::new(2).unwrap();
    let id = AgentId::Str("a".into());
    assert_eq!(r.register(id.clone(), "first"), Ok(()));
    assert_eq!(
        r.register(id.clone(), "second"),
        Err(Refused::AlreadyRegistered("second"))
    );
    assert_eq!(r.update(&id, "third"), Ok("first"));
    assert_eq!(
        r.update(&AgentId::Int(1), "x"),
        Err(Refused::NotRegistered("x"))
    );
    assert_eq!(r.compare_and_set(&id, |v| *v == "nope", "y"), Err("y"));
    assert_eq!(r.compare_and_set(&id, |v| *v == "third", "z"), Ok("third"));
    assert_eq!(r.unregister(&id), Some("z"));
    assert_eq!(r.unregister(&id), None);
    assert!(r.is_empty());
}

#[test]
fn concurrent_writers_match_a_sequential_model_and_snapshots_are_never_torn() {
    // Each writer owns its ids, so the final state is known; and each keeps exactly one id
    // registered at any time it is not mid-move (register new, then unregister old), so every
    // snapshot holds between `writers` and `2 * writers` ids.
    let writers = 8;
    let registry: Arc<Registry<usize>> = Arc::new(Registry::new(16).unwrap());
    let models: Arc<Mutex<HashMap<usize, i128>>> = Arc::new(Mutex::new(HashMap::new()));
    for w in 0..writers {
        registry.register(AgentId::Int(w as i128), w).unwrap();
    }
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (registry, models) = (registry.clone(), models.clone());
            std::thread::spawn(move || {
                let mut current = w as i128;
                for step in 1..2000i128 {
                    let next = current + (writers as i128) * step;
                    registry.register(AgentId::Int(next), w).unwrap();
                    assert_eq!(registry.unregister(&AgentId::Int(current)), Some(w));
                    current = next;
                }
                models.lock().unwrap().insert(w, current);
            })
        })
        .collect();
    let mut snapshots = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        let n = registry.snapshot().unwrap().len();
        assert!(
            (writers..=2 * writers).contains(&n),
            "torn snapshot of {n} ids"
        );
        snapshots += 1;
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(snapshots > 0);
    let mut ids: Vec<i128> = registry
        .snapshot()
        .unwrap()
        .into_iter()
        .map(|(id, _)| match id {
            AgentId::Int(i) => i,
            AgentId::Str(_) => unreachable!(),
        })
        .collect();
    ids.sort();
    let mut expected: Vec<i128> = models.lock().unwrap().values().copied().collect();
    expected.sort();
    assert_eq!(ids, expected);
    let cleared = registry.clear().unwrap();
    assert_eq!(
        cleared.iter().map(|shard| shard.len()).sum::<usize>(),
        writers
    );
    assert!(registry.is_empty());
}

#[test]
fn snapshots_follow_registration_order_and_replacing_keeps_the_place() {
    let r: Registry<u32> = Registry::new(4).unwrap();
    let ids: Vec<AgentId> = (0..50)
        .map(|i| {
            if i % 2 == 0 {
                AgentId::Int(MAX_INT_ID - i)
            } else {
                AgentId::Str(format!("a{i}"))
            }
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        r.register(id.clone(), i as u32).unwrap();
    }
    assert_eq!(r.ids().unwrap(), ids);
    assert_eq!(r.set(ids[3].clone(), 99), Ok(Some(3)));
    assert_eq!(r.update(&ids[4], 98), Ok(4));
    assert_eq!(r.ids().unwrap(), ids);
    assert_eq!(r.unregister(&ids[0]), Some(0));
    assert_eq!(r.set(ids[0].clone(), 0), Ok(None)); // back, at the end
    let mut expected = ids[1..].to_vec();
    expected.push(ids[0].clone());
    assert_eq!(r.ids().unwrap(), expected);
    assert_eq!(r.setdefault(ids[1].clone(), 7), Ok((1, Some(7))));
    let fresh = AgentId::Str("fresh".into());
    assert_eq!(r.setdefault(fresh.clone(), 7), Ok((7, None)));
    assert_eq!(r.snapshot().unwrap().last(), Some(&(fresh, 7)));
    assert_eq!(r.len(), 51);
}

#[test]
fn int_ids_span_int64_and_uint64_and_hash_by_their_low_bytes() {
    // -1 and 2**64 - 1 have the same 8 bytes: the same shard, still two ids.
    let r: Registry<u8> = Registry::new(8).unwrap();
    let (minus_one, max) = (AgentId::Int(-1), AgentId::Int(MAX_INT_ID));
    assert_eq!(minus_one.stable_hash(), max.stable_hash());
    r.register(minus_one.clone(), 1).unwrap();
    r.register(max.clone(), 2).unwrap();
    r.register(AgentId::Int(MIN_INT_ID), 3).unwrap();
    assert_eq!((r.get(&minus_one), r.get(&max)), (Some(1), Some(2)));
    assert_eq!(r.len(), 3);
}
