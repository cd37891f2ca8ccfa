#![cfg(not(target_arch = "wasm32"))]
//! Shard format: round trips, every error path by name, and "never panics" on arbitrary bytes.

use edgerec::format::{Dtype, MAX_SHARD_BYTES, VERSION};
use edgerec::shard::{SeqTargets, SeqWeights};
use edgerec::testing::Synthetic;
use edgerec::writer::write_model;
use edgerec::{Engine, ErrorKind, Shard};
use proptest::prelude::*;

fn one_shard() -> Vec<u8> {
    Synthetic::default().shards(MAX_SHARD_BYTES).remove(0)
}

fn patch_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes the checksum after a deliberate edit, so the test reaches the check behind it.
fn reseal(bytes: &mut [u8]) {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&bytes[..32]);
    h.update(&bytes[40..]);
    let sum = h.digest();
    patch_u64(bytes, 32, sum);
}

/// The load error of `good` with the bytes at `at` replaced by `value` and the checksum
/// recomputed: a forgery that only the check behind the checksum can catch.
fn forged_error(good: &[u8], at: usize, value: &[u8]) -> String {
    let mut bytes = good.to_vec();
    bytes[at..at + value.len()].copy_from_slice(value);
    reseal(&mut bytes);
    Shard::from_bytes(&bytes).unwrap_err().to_string()
}

#[test]
fn round_trip_keeps_everything() {
    let syn = Synthetic::default();
    let spec = syn.spec();
    let shard = Shard::from_bytes(&one_shard()).unwrap();
    let view = shard.view();
    assert_eq!(view.header.item_count as usize, spec.ids.len());
    for (i, id) in spec.ids.iter().enumerate() {
        assert_eq!(view.ids.get(i), id);
        assert_eq!(view.find_key(edgerec::hash::item_key(id)), Some(i as u32));
    }
    assert_eq!(view.bias, spec.bias.as_slice());
    assert_eq!(view.categories.unwrap(), spec.categories.as_slice());
    let engine = Engine::from_shards(vec![shard.clone()]).unwrap();
    assert_eq!(
        engine.category_names(),
        vec!["cat0", "cat1", "cat2", "cat3"]
    );
    // Dequantized int8 rows are within half a quantization step of the originals.
    let d = syn.dim;
    let mut v = vec![0.0; d];
    for i in 0..spec.ids.len() {
        engine.item_vector(i as u32, &mut v);
        let orig = &spec.vectors[i * d..(i + 1) * d];
        let max = orig.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (a, b) in v.iter().zip(orig) {
            assert!((a - b).abs() <= max / 127.0 * 0.5 + 1e-6);
        }
    }
}

#[test]
fn f16_round_trip() {
    let syn = Synthetic {
        dtype: Dtype::F16,
        ..Synthetic::default()
    };
    let spec = syn.spec();
    let engine =
        Engine::from_bytes(syn.shards(MAX_SHARD_BYTES).iter().map(|s| s.as_slice())).unwrap();
    let mut v = vec![0.0; syn.dim];
    engine.item_vector(5, &mut v);
    for (a, b) in v.iter().zip(&spec.vectors[5 * syn.dim..6 * syn.dim]) {
        assert!((a - b).abs() < 2e-3);
    }
}

#[test]
fn f32_ranks_like_the_float_model() {
    // The f32 dtype stores vectors exactly, and its ranking is close to the int8 one.
    let syn = Synthetic {
        dtype: Dtype::F32,
        items: 500,
        dim: 24,
        ..Synthetic::default()
    };
    let spec = syn.spec();
    let engine =
        Engine::from_bytes(syn.shards(MAX_SHARD_BYTES).iter().map(|s| s.as_slice())).unwrap();
    let mut v = vec![0.0; syn.dim];
    engine.item_vector(7, &mut v);
    assert_eq!(v.as_slice(), &spec.vectors[7 * syn.dim..8 * syn.dim]);
    let int8 = Synthetic {
        dtype: Dtype::I8,
        ..syn.clone()
    };
    let engine8 =
        Engine::from_bytes(int8.shards(MAX_SHARD_BYTES).iter().map(|s| s.as_slice())).unwrap();
    let mut session = edgerec::Session::new();
    session.observe("item-3", edgerec::EventType::Click, 1);
    let req = edgerec::Request {
        k: 10,
        ..Default::default()
    };
    let a: Vec<u32> = engine
        .recommend(&session, &req)
        .iter()
        .map(|r| r.index)
        .collect();
    let b: Vec<u32> = engine8
        .recommend(&session, &req)
        .iter()
        .map(|r| r.index)
        .collect();
    let overlap = a.iter().filter(|i| b.contains(i)).count();
    assert!(overlap >= 8, "int8 and f32 top-10 share {overlap} items");
}

#[test]
fn splits_into_shards_under_the_limit_and_reassembles_in_any_order() {
    let syn = Synthetic {
        items: 2000,
        dim: 32,
        ..Synthetic::default()
    };
    let shards = syn.shards(40_000);
    assert!(shards.len() > 1);
    assert!(shards.iter().all(|s| s.len() <= 40_000));
    let mut reversed: Vec<&[u8]> = shards.iter().map(|s| s.as_slice()).collect();
    reversed.reverse();
    let engine = Engine::from_bytes(reversed).unwrap();
    assert_eq!(engine.item_count(), 2000);
    assert_eq!(engine.item_id(1999), Some("item-1999"));
    assert_eq!(engine.find("item-1234"), Some(1234));
    // A missing shard, a repeated shard, or a shard of another model are refused.
    let err = Engine::from_bytes(shards[1..].iter().map(|s| s.as_slice())).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::BadShardSet { .. }), "{err}");
    let mut twice: Vec<&[u8]> = shards.iter().map(|s| s.as_slice()).collect();
    twice[1] = &shards[0];
    assert!(Engine::from_bytes(twice).is_err());
    let other = Synthetic {
        items: 2000,
        dim: 32,
        seed: 9,
        ..Synthetic::default()
    }
    .shards(40_000);
    let mut mixed: Vec<&[u8]> = shards.iter().map(|s| s.as_slice()).collect();
    mixed[1] = &other[1];
    let err = Engine::from_bytes(mixed).unwrap_err();
    assert!(err.to_string().contains("belongs to model"), "{err}");
}

#[test]
fn error_paths_are_named() {
    let good = one_shard();
    let kind = |b: &[u8]| Shard::from_bytes(b).err().map(|e| e.kind().clone());

    assert!(matches!(
        kind(&good[..10]),
        Some(ErrorKind::Truncated { .. })
    ));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(kind(&bad), Some(ErrorKind::BadMagic));
    let mut swapped = good.clone();
    swapped[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    assert_eq!(kind(&swapped), Some(ErrorKind::WrongEndianness));
    let mut version = good.clone();
    version[12] = VERSION as u8 + 1;
    assert_eq!(
        kind(&version),
        Some(ErrorKind::UnsupportedVersion {
            found: VERSION + 1,
            supported: VERSION
        })
    );
    version[12] = 0;
    assert_eq!(
        kind(&version),
        Some(ErrorKind::UnsupportedVersion {
            found: 0,
            supported: VERSION
        })
    );
    assert!(matches!(
        kind(&good[..good.len() - 1]),
        Some(ErrorKind::LengthMismatch { .. })
    ));
    let mut padded = good.clone();
    padded.push(0);
    assert!(matches!(
        kind(&padded),
        Some(ErrorKind::LengthMismatch { .. })
    ));
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        kind(&flipped),
        Some(ErrorKind::ChecksumMismatch { .. })
    ));

    // Behind a valid checksum: a section offset moved (gap), a duplicate section, an unknown
    // required section, a non-finite bias.
    let mut gap = good.clone();
    let first_offset = u64::from_le_bytes(gap[64 + 8..64 + 16].try_into().unwrap());
    patch_u64(&mut gap, 64 + 8, first_offset + 16);
    reseal(&mut gap);
    assert!(matches!(
        kind(&gap),
        Some(ErrorKind::BadSectionTable { .. })
    ));
    let mut unknown = good.clone();
    unknown[64..68].copy_from_slice(&999u32.to_le_bytes());
    reseal(&mut unknown);
    let err = Shard::from_bytes(&unknown).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown required section kind 999"),
        "{err}"
    );
    let mut dup = good.clone();
    dup[64 + 24..64 + 28].copy_from_slice(&1u32.to_le_bytes()); // second entry says "meta" too
    reseal(&mut dup);
    assert!(Shard::from_bytes(&dup)
        .unwrap_err()
        .to_string()
        .contains("duplicate"));

    let shard = Shard::from_bytes(&good).unwrap();
    let bias_at = shard.view().bias.as_ptr() as usize - shard.as_bytes().as_ptr() as usize;
    let mut nan = good.clone();
    nan[bias_at..bias_at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    reseal(&mut nan);
    let err = Shard::from_bytes(&nan).unwrap_err();
    assert!(
        err.to_string().contains("item bias[0] is not finite"),
        "{err}"
    );
}

#[test]
fn writer_rejects_bad_input() {
    let mut spec = Synthetic::default().spec();
    spec.ids[1] = spec.ids[0].clone();
    assert!(write_model(&spec, 1, MAX_SHARD_BYTES)
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
    let mut spec = Synthetic::default().spec();
    spec.vectors[3] = f32::INFINITY;
    assert!(write_model(&spec, 1, MAX_SHARD_BYTES).is_err());
    let mut spec = Synthetic::default().spec();
    spec.seq[0][0].push((0, -1.0));
    assert!(write_model(&spec, 1, MAX_SHARD_BYTES).is_err());
    let mut spec = Synthetic::default().spec();
    spec.vectors.pop();
    assert!(write_model(&spec, 1, MAX_SHARD_BYTES).is_err());
}

#[test]
fn golden_shards_still_load() {
    // tests/golden/vN-tiny.shard was written by version N of the writer and is frozen: every
    // later reader must load it and rank it the same way. A format version bump adds a new file
    // (examples/write_golden.rs) and keeps the old ones.
    use edgerec::testing::golden_mismatch;
    let v1 = include_bytes!("golden/v1-tiny.shard");
    assert_eq!(
        Engine::from_bytes([v1.as_slice()]).unwrap().item_count(),
        40
    );
    assert_eq!(
        golden_mismatch(1, v1, include_str!("golden/v1-tiny.ranking")),
        None
    );
    let v2 = include_bytes!("golden/v2-tiny.shard");
    assert_eq!(
        golden_mismatch(2, v2, include_str!("golden/v2-tiny.ranking")),
        None
    );
    let v3 = include_bytes!("golden/v3-tiny.shard");
    assert_eq!(
        golden_mismatch(3, v3, include_str!("golden/v3-tiny.ranking")),
        None
    );
    let v4 = include_bytes!("golden/v4-tiny.shard");
    assert_eq!(
        golden_mismatch(4, v4, include_str!("golden/v4-tiny.ranking")),
        None
    );
    let v5 = include_bytes!("golden/v5-tiny.shard");
    assert_eq!(
        golden_mismatch(5, v5, include_str!("golden/v5-tiny.ranking")),
        None
    );
    // Format 6: the first pass names each cluster's items as a run, not a slot per item. The
    // same model ranks the same: its ranking file is v5's.
    let v6 = include_bytes!("golden/v6-tiny.shard");
    assert_eq!(
        golden_mismatch(6, v6, include_str!("golden/v6-tiny.ranking")),
        None
    );
    assert_eq!(
        include_str!("golden/v6-tiny.ranking"),
        include_str!("golden/v5-tiny.ranking")
    );
    // Format 7 added paged models; whole shards mean what they meant. The paged golden model
    // (its index, its pages back to back) must rank as the same model in a whole shard.
    let v7 = include_bytes!("golden/v7-tiny.shard");
    let v7_ranking = include_str!("golden/v7-tiny.ranking");
    assert_eq!(golden_mismatch(7, v7, v7_ranking), None);
    assert_eq!(v7_ranking, include_str!("golden/v6-tiny.ranking"));
    assert_eq!(
        edgerec::testing::golden_paged_mismatch(
            7,
            include_bytes!("golden/v7-tiny-paged.index"),
            include_bytes!("golden/v7-tiny-paged.pages"),
            v7_ranking
        ),
        None
    );
    // Format 8 added the session encoder: the golden model carries one, its cases add longer
    // sessions, and its query file pins each case's query vector bit for bit.
    let v8 = include_bytes!("golden/v8-tiny.shard");
    let v8_ranking = include_str!("golden/v8-tiny.ranking");
    assert_eq!(golden_mismatch(8, v8, v8_ranking), None);
    assert_eq!(
        edgerec::testing::golden_query_mismatch(8, v8, include_str!("golden/v8-tiny.query")),
        None
    );
    assert_eq!(
        edgerec::testing::golden_paged_mismatch(
            8,
            include_bytes!("golden/v8-tiny-paged.index"),
            include_bytes!("golden/v8-tiny-paged.pages"),
            v8_ranking
        ),
        None
    );
}

/// Byte range of the first section of `kind` (see the section table in `format.rs`).
fn section(bytes: &[u8], kind: u32) -> std::ops::Range<usize> {
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let e = section_entry(bytes, kind);
    u64_at(e + 8)..u64_at(e + 8) + u64_at(e + 16)
}

/// Byte offset of the section table entry of the first section of `kind`.
fn section_entry(bytes: &[u8], kind: u32) -> usize {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    (0..u32_at(16) as usize)
        .map(|i| 64 + 24 * i)
        .find(|&e| u32_at(e) == kind)
        .expect("section present")
}

#[test]
fn int8_minus_128_is_rejected() {
    // The writer quantizes to [-127, 127]; the kernels' overflow bound relies on it (L3).
    let mut bytes = one_shard();
    let rows = section(&bytes, 6);
    bytes[rows.start + 5] = 0x80;
    reseal(&mut bytes);
    let err = Shard::from_bytes(&bytes).unwrap_err().to_string();
    assert!(err.contains("-128"), "{err}");
}

#[test]
fn keys_that_do_not_match_their_ids_never_name_an_item() {
    // Loading checks a sample of the keys against their ids (every KEY_SAMPLE_STRIDE-th in key
    // order, and the last); lookups check the key they resolve. Keys edited in place, order
    // kept, checksum repaired.
    let syn = Synthetic {
        items: 200,
        ..Synthetic::default()
    };
    let good = syn.shards(MAX_SHARD_BYTES).remove(0);
    let keys = section(&good, 4);
    let key_at = |b: &[u8], i: usize| {
        u64::from_le_bytes(
            b[keys.start + 8 * i..keys.start + 8 * i + 8]
                .try_into()
                .unwrap(),
        )
    };
    let stride = edgerec::shard::KEY_SAMPLE_STRIDE;
    assert!(syn.items > 2 * stride);

    // A sampled key (the first) one below its true value: the load is refused.
    let mut sampled = good.clone();
    patch_u64(&mut sampled, keys.start, key_at(&good, 0) - 1);
    reseal(&mut sampled);
    let err = Shard::from_bytes(&sampled).unwrap_err().to_string();
    assert!(err.contains("does not match its id"), "{err}");

    // An unsampled key (the second) one below its true value: the shard loads, but neither the
    // forged key nor the item's id finds the item, and every other id still finds its own.
    let mut unsampled = good.clone();
    let (true_key, forged) = (key_at(&good, 1), key_at(&good, 1) - 1);
    assert!(forged > key_at(&good, 0));
    patch_u64(&mut unsampled, keys.start + 8, forged);
    reseal(&mut unsampled);
    let shard = Shard::from_bytes(&unsampled).unwrap();
    let view = shard.view();
    assert_eq!(view.find_key(forged), None);
    assert_eq!(view.find_key(true_key), None);
    let mut unknown = 0;
    for i in 0..syn.items {
        let id = view.ids.get(i);
        match view.find_key(edgerec::hash::item_key(id)) {
            Some(found) => assert_eq!(found as usize, i),
            None => unknown += 1,
        }
    }
    assert_eq!(unknown, 1);

    // The key order (second key) naming the third key's item as well, or an item past the
    // end: the shard loads; the key names no item, and the item it should name is unknown.
    // (Format 7 stores a 200-item shard's key order as u16, section kind 44.)
    let order = section(&good, 44);
    let order_at = |i: usize| order.start + 2 * i;
    for local in [
        u16::from_le_bytes(good[order_at(2)..order_at(2) + 2].try_into().unwrap()),
        syn.items as u16,
        u16::MAX,
    ] {
        let mut bad = good.clone();
        bad[order_at(1)..order_at(1) + 2].copy_from_slice(&local.to_le_bytes());
        reseal(&mut bad);
        let shard = Shard::from_bytes(&bad).unwrap();
        let view = shard.view();
        assert_eq!(view.find_key(true_key), None, "key order names {local}");
        assert!(view.find_key(key_at(&good, 2)).is_some());
        let found = (0..syn.items)
            .filter(|&i| {
                view.find_key(edgerec::hash::item_key(view.ids.get(i)))
                    .is_some()
            })
            .count();
        assert_eq!(found, syn.items - 1, "key order names {local}");
    }
}

#[test]
fn the_key_order_is_as_narrow_as_the_shard_allows() {
    // Format 7: u16 up to 65,536 items in a shard, u24 above; every id finds its item either
    // way, and a shard with two widths, or none, is refused.
    for (items, kind) in [(65_536, 44u32), (65_537, 45)] {
        let syn = Synthetic {
            items,
            dim: 4,
            neighbours: 0,
            transitions: false,
            ..Synthetic::default()
        };
        let shards = syn.shards(MAX_SHARD_BYTES);
        assert_eq!(shards.len(), 1);
        section(&shards[0], kind); // the key order, in this width
        let engine = Engine::from_bytes([shards[0].as_slice()]).unwrap();
        for i in (0..items).step_by(997).chain([items - 1]) {
            let index = engine
                .find(&format!("item-{i}"))
                .expect("every id is found");
            assert_eq!(
                engine.item_id(index),
                Some(format!("item-{i}").as_str()),
                "{kind}"
            );
        }
    }
    let syn = Synthetic {
        items: 100,
        ..Synthetic::default()
    };
    let good = syn.shards(MAX_SHARD_BYTES).remove(0);
    // The u16 section relabelled as the u32 one: its length no longer fits the item count.
    let mut relabelled = good.clone();
    let entry = section_entry(&good, 44);
    relabelled[entry..entry + 4].copy_from_slice(&5u32.to_le_bytes());
    reseal(&mut relabelled);
    let err = Shard::from_bytes(&relabelled).unwrap_err().to_string();
    assert!(err.contains("keys_order"), "{err}");
    // Relabelled as a kind a version-6 shard could not hold.
    let mut v6 = good.clone();
    v6[12..14].copy_from_slice(&6u16.to_le_bytes());
    reseal(&mut v6);
    let err = Shard::from_bytes(&v6).unwrap_err().to_string();
    assert!(err.contains("does not exist in format version 6"), "{err}");
}

#[test]
fn ids_are_checked_as_utf8_unless_ascii() {
    // Non-ASCII ids load and come back unchanged (validation then takes the general UTF-8
    // path, where ASCII ids take the SIMD ASCII check).
    let syn = Synthetic::default();
    let mut spec = syn.spec();
    spec.ids[0] = "café-0".into();
    spec.ids[1] = "日本-1".into();
    let bytes = write_model(&spec, 7, MAX_SHARD_BYTES).unwrap().remove(0);
    let shard = Shard::from_bytes(&bytes).unwrap();
    assert_eq!(shard.view().ids.get(0), "café-0");
    assert_eq!(shard.view().ids.get(1), "日本-1");

    // ASCII ids made invalid, checksum repaired: a byte that is not UTF-8, and a valid
    // two-byte character split by the offset between two ids ("item-0" | "item-1").
    let good = one_shard();
    let text = section(&good, 3);
    let mut invalid = good.clone();
    invalid[text.start] = 0xFF;
    reseal(&mut invalid);
    let err = Shard::from_bytes(&invalid).unwrap_err().to_string();
    assert!(err.contains("invalid UTF-8 at byte 0"), "{err}");
    let mut split = good.clone();
    split[text.start + 5..text.start + 7].copy_from_slice("é".as_bytes());
    reseal(&mut split);
    let err = Shard::from_bytes(&split).unwrap_err().to_string();
    assert!(err.contains("offset inside a UTF-8 character"), "{err}");
}

#[test]
fn aligned_bytes_filled_in_place() {
    use edgerec::shard::AlignedBytes;
    let data: Vec<u8> = (0..37u8).collect();
    let filled = AlignedBytes::filled_by(data.len(), |dst| {
        for (d, s) in dst.iter_mut().zip(&data) {
            d.write(*s);
        }
        // SAFETY (test): every byte was written just above.
        unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) }
    });
    assert_eq!(filled.as_bytes(), data.as_slice());
    // A fill that hands back some other buffer is not trusted: the bytes are zeroed instead.
    let refused = AlignedBytes::filled_by(37, |_| &mut []);
    assert_eq!(refused.as_bytes(), &[0u8; 37][..]);
    let leaked: &'static mut [u8] = Vec::leak(vec![9u8; 37]);
    let refused = AlignedBytes::filled_by(37, |_| leaked);
    assert_eq!(refused.as_bytes(), &[0u8; 37][..]);
    let empty = AlignedBytes::filled_by(0, |dst| {
        assert!(dst.is_empty());
        &mut []
    });
    assert!(empty.as_bytes().is_empty());
}

#[test]
fn v2_sections_are_rejected_in_v1_shards() {
    // A v2 shard relabelled as v1 (checksum repaired) must not load: v1 has no such sections.
    let mut bytes = edgerec::testing::tiny_v2_model_shards().remove(0);
    bytes[12] = 1;
    reseal(&mut bytes);
    let err = Shard::from_bytes(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("format version 1") || err.contains("reserved"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    // Any bytes: an error or a shard, never a panic.
    #[test]
    fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Shard::from_bytes(&bytes);
    }

    // A valid shard with bytes changed anywhere, checksum repaired so validation goes deep.
    #[test]
    fn never_panics_on_mutated_shards(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = one_shard();
        for (at, v) in edits {
            let i = at % bytes.len();
            if !(32..40).contains(&i) {
                bytes[i] = v;
            }
        }
        reseal(&mut bytes);
        if let Ok(shard) = Shard::from_bytes(&bytes) {
            if let Ok(engine) = Engine::from_shards(vec![shard]) {
                let mut s = edgerec::Session::new();
                s.observe("item-2", edgerec::EventType::Click, 1);
                let _ = engine.recommend(&s, &edgerec::Request::default());
            }
        }
    }
}

/// Format 4's narrow sequence tables: u16 targets and f16 weights when they hold the table,
/// read back entry by entry with each weight rounded to f16.
#[test]
fn sequence_tables_are_stored_narrow_when_they_fit() {
    let syn = Synthetic::default();
    let mut spec = syn.spec();
    for (i, list) in spec.seq[0].iter_mut().enumerate() {
        for entry in list.iter_mut() {
            entry.1 = 0.1 + i as f32 / 7.0; // mostly not exact in f16
        }
    }
    let shard = Shard::from_bytes(&syn.write(&spec, MAX_SHARD_BYTES)[0]).unwrap();
    let view = shard.view();
    assert_eq!(view.header.version, VERSION);
    for (t, table) in view.seq.iter().enumerate() {
        let table = table.expect("both tables written");
        assert!(matches!(table.targets, SeqTargets::U16(_)), "table {t}");
        assert!(matches!(table.weights, SeqWeights::F16(_)), "table {t}");
        for (i, list) in spec.seq[t].iter().enumerate() {
            let want: Vec<(u32, f32)> = list
                .iter()
                .map(|&(g, w)| (g, half::f16::from_f32(w).to_f32()))
                .collect();
            assert_eq!(table.row(i), want, "table {t}, item {i}");
        }
    }
}

/// A table whose weights f16 cannot hold keeps f32 weights (exact), the other table stays
/// narrow.
#[test]
fn sequence_tables_stay_wide_when_narrow_would_not_hold_them() {
    let syn = Synthetic::default();
    let mut spec = syn.spec();
    spec.seq[0][3].push((7, 1.0e6)); // beyond f16's largest finite value, 65504
    let shard = Shard::from_bytes(&syn.write(&spec, MAX_SHARD_BYTES)[0]).unwrap();
    let view = shard.view();
    let [neighbours, transitions] = view.seq.map(Option::unwrap);
    assert!(matches!(neighbours.weights, SeqWeights::F32(_)));
    assert!(matches!(neighbours.targets, SeqTargets::U16(_)));
    assert_eq!(neighbours.row(3), spec.seq[0][3]);
    assert!(matches!(transitions.weights, SeqWeights::F16(_)));
}

/// Format 5: a model of more than 65,536 items stores its targets in 3 bytes, reads them back
/// exactly, and ranks as the same model with u32 targets does; a width narrower than the
/// catalog needs is refused at write time.
#[test]
fn sequence_targets_past_u16_take_three_bytes() {
    let big = Synthetic {
        items: usize::from(u16::MAX) + 2,
        dim: 4,
        neighbours: 1,
        ..Synthetic::default()
    };
    let spec = big.spec();
    let narrow = big.write(&spec, MAX_SHARD_BYTES);
    let mut far_targets = 0;
    for bytes in &narrow {
        let shard = Shard::from_bytes(bytes).unwrap();
        let view = shard.view();
        assert_eq!(view.header.version, VERSION);
        for (t, table) in view.seq.iter().enumerate() {
            let table = table.expect("both tables written");
            assert!(matches!(table.targets, SeqTargets::U24(_)), "table {t}");
            assert_eq!(table.entry_bytes(), 5);
            let first = view.header.item_start as usize;
            for local in 0..view.header.item_count as usize {
                let row = table.row(local);
                let want: Vec<(u32, f32)> = spec.seq[t][first + local]
                    .iter()
                    .map(|&(g, w)| (g, half::f16::from_f32(w).to_f32()))
                    .collect();
                assert_eq!(row, want, "table {t}, item {}", first + local);
                far_targets += row.iter().filter(|e| e.0 > u32::from(u16::MAX)).count();
            }
        }
    }
    assert!(far_targets > 0, "no target past u16 was read back");

    let mut wide_spec = spec.clone();
    wide_spec.seq_target_bytes = Some(4);
    let wide = big.write(&wide_spec, MAX_SHARD_BYTES);
    let first = Shard::from_bytes(&wide[0]).unwrap();
    assert!(matches!(
        first.view().seq[0].unwrap().targets,
        SeqTargets::U32(_)
    ));
    let bytes = |shards: &[Vec<u8>]| shards.iter().map(Vec::len).sum::<usize>();
    assert!(bytes(&narrow) < bytes(&wide));
    let narrow = Engine::from_bytes(narrow.iter().map(Vec::as_slice)).unwrap();
    let wide = Engine::from_bytes(wide.iter().map(Vec::as_slice)).unwrap();
    for clicks in [&["item-3"][..], &["item-65600", "item-12", "item-65537"]] {
        let mut session = edgerec::Session::new();
        for (t, id) in clicks.iter().enumerate() {
            session.observe(id, edgerec::EventType::Click, 1_700_000_000 + t as u64);
        }
        let request = edgerec::Request::default();
        assert_eq!(
            narrow.recommend(&session, &request),
            wide.recommend(&session, &request),
            "{clicks:?}"
        );
    }

    let mut too_narrow = spec;
    too_narrow.seq_target_bytes = Some(2);
    let err = edgerec::writer::write_model(&too_narrow, 1, MAX_SHARD_BYTES).unwrap_err();
    assert!(err.to_string().contains("cannot name 65537 items"), "{err}");
}

/// A small model written with u24 targets (as a test asks for) reads back the same entries.
#[test]
fn u24_targets_read_back_on_a_small_model() {
    let syn = Synthetic::default();
    let mut spec = syn.spec();
    spec.seq_target_bytes = Some(3);
    let shard = Shard::from_bytes(&syn.write(&spec, MAX_SHARD_BYTES)[0]).unwrap();
    let [neighbours, transitions] = shard.view().seq.map(Option::unwrap);
    for (t, table) in [neighbours, transitions].iter().enumerate() {
        assert!(matches!(table.targets, SeqTargets::U24(_)));
        for (i, list) in spec.seq[t].iter().enumerate() {
            let targets: Vec<u32> = table.row(i).iter().map(|e| e.0).collect();
            let want: Vec<u32> = list.iter().map(|e| e.0).collect();
            assert_eq!(targets, want, "table {t}, item {i}");
        }
    }
}

/// Forged u24 tables are refused by name: u16 and u24 targets in one table, a u24 target past
/// the model's items, and u24 sections in a shard that says it is format 4.
#[test]
fn forged_u24_sequence_tables_are_refused() {
    let syn = Synthetic::default();
    let mut spec = syn.spec();
    spec.seq_target_bytes = Some(3);
    let good = syn.write(&spec, MAX_SHARD_BYTES).remove(0);

    // The transitions' u24 targets relabelled as the neighbours' u16 targets.
    let err = forged_error(&good, section_entry(&good, 29), &24u32.to_le_bytes());
    assert!(
        err.contains("has both `neighbour_targets_u16` and `neighbour_targets_u24`"),
        "{err}"
    );

    // 65,535: past the 40 items.
    let err = forged_error(&good, section(&good, 28).start, &[0xff, 0xff, 0x00]);
    assert!(
        err.contains("sequence table 0: target out of range"),
        "{err}"
    );

    let err = forged_error(&good, 12, &4u16.to_le_bytes());
    assert!(err.contains("does not exist in format version 4"), "{err}");
}

/// Forged narrow tables are refused by name: a target section in both widths, a u16 target
/// past the model's items, a NaN or negative f16 weight, and narrow sections in a shard that
/// says it is format 3.
#[test]
fn forged_narrow_sequence_tables_are_refused() {
    let good = one_shard();
    // The error of the shard whose section `kind` starts with the 16 bits `value`.
    let first_u16_set = |kind: u32, value: u16| {
        forged_error(&good, section(&good, kind).start, &value.to_le_bytes())
    };
    // The transitions' u16 targets relabelled as the neighbours' u32 targets.
    let err = forged_error(&good, section_entry(&good, 26), &12u32.to_le_bytes());
    assert!(
        err.contains("has both `neighbour_targets` and `neighbour_targets_u16`"),
        "{err}"
    );

    let err = first_u16_set(24, u16::MAX);
    assert!(
        err.contains("sequence table 0: target out of range"),
        "{err}"
    );

    for bits in [0x7e00u16, 0xbc00] {
        let err = first_u16_set(27, bits);
        assert!(
            err.contains("sequence table 1: negative or non-finite weight"),
            "{err}"
        );
    }

    let err = forged_error(&good, 12, &3u16.to_le_bytes());
    assert!(err.contains("does not exist in format version 3"), "{err}");
}
