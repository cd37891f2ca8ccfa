//! Tests that run inside wasm (Node, via wasm-bindgen-test-runner): the SIMD kernels against
//! the scalar references, and the frozen golden shard ranking exactly as the native build ranks
//! it (the golden ranking file was produced natively). `make test-wasm` runs them twice: the
//! simd128 build, and the relaxed-SIMD build (Node 20 needs `--experimental-wasm-relaxed-simd`,
//! and `--no-liftoff` because its baseline compiler gets relaxed dot products wrong).
#![cfg(target_arch = "wasm32")]

use edgerec::coarse::{CoarseQuery, RowBounds};
use edgerec::kernels::{self, coarse_candidates, dot_i8_block, scalar};
use edgerec::math::SplitMix64;
use edgerec::testing::Synthetic;
use edgerec::{Engine, EventType, Request, Session, Shard};
use wasm_bindgen_test::wasm_bindgen_test;

const GOLDEN: &[u8] = include_bytes!("golden/v1-tiny.shard");
const GOLDEN_RANKING: &str = include_str!("golden/v1-tiny.ranking");
const GOLDEN_V2: &[u8] = include_bytes!("golden/v2-tiny.shard");
const GOLDEN_V2_RANKING: &str = include_str!("golden/v2-tiny.ranking");
const GOLDEN_V3: &[u8] = include_bytes!("golden/v3-tiny.shard");
const GOLDEN_V3_RANKING: &str = include_str!("golden/v3-tiny.ranking");
const GOLDEN_V4: &[u8] = include_bytes!("golden/v4-tiny.shard");
const GOLDEN_V4_RANKING: &str = include_str!("golden/v4-tiny.ranking");
const GOLDEN_V5: &[u8] = include_bytes!("golden/v5-tiny.shard");
const GOLDEN_V5_RANKING: &str = include_str!("golden/v5-tiny.ranking");
const GOLDEN_V6: &[u8] = include_bytes!("golden/v6-tiny.shard");
const GOLDEN_V6_RANKING: &str = include_str!("golden/v6-tiny.ranking");
const GOLDEN_V7: &[u8] = include_bytes!("golden/v7-tiny.shard");
const GOLDEN_V7_RANKING: &str = include_str!("golden/v7-tiny.ranking");
const GOLDEN_V7_PAGED_INDEX: &[u8] = include_bytes!("golden/v7-tiny-paged.index");
const GOLDEN_V7_PAGED_PAGES: &[u8] = include_bytes!("golden/v7-tiny-paged.pages");
const GOLDEN_V8: &[u8] = include_bytes!("golden/v8-tiny.shard");
const GOLDEN_V8_RANKING: &str = include_str!("golden/v8-tiny.ranking");
const GOLDEN_V8_QUERY: &str = include_str!("golden/v8-tiny.query");
const GOLDEN_V8_PAGED_INDEX: &[u8] = include_bytes!("golden/v8-tiny-paged.index");
const GOLDEN_V8_PAGED_PAGES: &[u8] = include_bytes!("golden/v8-tiny-paged.pages");

#[wasm_bindgen_test]
fn simd128_kernel_matches_scalar() {
    assert!(
        cfg!(target_feature = "simd128"),
        "wasm tests must run the simd128 kernel"
    );
    let mut rng = SplitMix64::new(11);
    for stride in [16usize, 32, 64, 128, 1024] {
        for n in [0usize, 1, 3, 17] {
            let query: Vec<i16> = (0..stride).map(|_| rng.next_u64() as i16).collect();
            let rows: Vec<i8> = (0..n * stride).map(|_| rng.next_u64() as i8).collect();
            let (mut a, mut b) = (vec![0; n], vec![0; n]);
            scalar::dot_i8_block(&query, &rows, stride, &mut a);
            dot_i8_block(&query, &rows, stride, &mut b);
            assert_eq!(a, b, "stride {stride}, rows {n}");
        }
    }
}

#[wasm_bindgen_test]
fn golden_rankings_match_native() {
    use edgerec::testing::golden_mismatch;
    assert_eq!(golden_mismatch(1, GOLDEN, GOLDEN_RANKING), None);
    assert_eq!(golden_mismatch(2, GOLDEN_V2, GOLDEN_V2_RANKING), None);
    // Format 3 ranks through the two-stage scan: its tables, kernel and candidate selection
    // give the native build's rankings.
    assert_eq!(golden_mismatch(3, GOLDEN_V3, GOLDEN_V3_RANKING), None);
    // Format 4's narrow sequence tables (u16 targets, f16 weights) widen the same way.
    assert_eq!(golden_mismatch(4, GOLDEN_V4, GOLDEN_V4_RANKING), None);
    // Format 5's 3-byte targets.
    assert_eq!(golden_mismatch(5, GOLDEN_V5, GOLDEN_V5_RANKING), None);
    // Format 6's first-pass runs.
    assert_eq!(golden_mismatch(6, GOLDEN_V6, GOLDEN_V6_RANKING), None);
    // Format 7: whole shards as before, and the same model paged, its pages loaded as each
    // request asks for them.
    assert_eq!(golden_mismatch(7, GOLDEN_V7, GOLDEN_V7_RANKING), None);
    assert_eq!(
        edgerec::testing::golden_paged_mismatch(
            7,
            GOLDEN_V7_PAGED_INDEX,
            GOLDEN_V7_PAGED_PAGES,
            GOLDEN_V7_RANKING
        ),
        None
    );
    // Format 8's session encoder: the same query vectors, bit for bit, as the native build
    // (its f32 products through the simd128 kernel), so the same rankings, whole and paged.
    assert_eq!(golden_mismatch(8, GOLDEN_V8, GOLDEN_V8_RANKING), None);
    assert_eq!(
        edgerec::testing::golden_query_mismatch(8, GOLDEN_V8, GOLDEN_V8_QUERY),
        None
    );
    assert_eq!(
        edgerec::testing::golden_paged_mismatch(
            8,
            GOLDEN_V8_PAGED_INDEX,
            GOLDEN_V8_PAGED_PAGES,
            GOLDEN_V8_RANKING
        ),
        None
    );
}

#[wasm_bindgen_test]
fn f32_dot_kernel_matches_scalar_bits() {
    let mut rng = SplitMix64::new(23);
    for n in [0usize, 1, 3, 4, 5, 16, 31, 64, 130] {
        for magnitude in [1e-3f32, 1.0, 1e4] {
            let a: Vec<f32> = (0..n).map(|_| magnitude * rng.approx_normal()).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.approx_normal()).collect();
            assert_eq!(
                kernels::dot_f32(&a, &b).to_bits(),
                scalar::dot_f32(&a, &b).to_bits(),
                "length {n}, magnitude {magnitude}"
            );
        }
    }
}

/// The first pass's block kernel (swizzle lookups; the relaxed build's relaxed swizzle) against
/// the scalar reference: random tables and codes, every column count up to the largest stride,
/// bases up to the largest the tables allow, and bars on both sides of the sums.
#[wasm_bindgen_test]
fn fast_scan_kernel_matches_scalar() {
    use edgerec::first_pass::{BLOCK_ITEMS, CENTROIDS, COLUMN_BYTES};
    let mut rng = SplitMix64::new(23);
    for columns in [1usize, 2, 5, 17, 33, 100, 257] {
        for round in 0..20 {
            let luts: Vec<u8> = (0..columns * CENTROIDS)
                .map(|_| {
                    if round == 0 {
                        255
                    } else {
                        rng.next_u64() as u8
                    }
                })
                .collect();
            let codes: Vec<u8> = (0..columns * COLUMN_BYTES)
                .map(|_| rng.next_u64() as u8)
                .collect();
            let base = (rng.next_u64() % u64::from(65_535 - 255 * columns as u32 + 1)) as u16;
            let bar = rng.next_u64() as u16;
            let (mut a, mut b) = ([0u16; BLOCK_ITEMS], [0u16; BLOCK_ITEMS]);
            let any_a = scalar::fast_scan_block(&luts, &codes, base, bar, &mut a);
            let any_b = kernels::fast_scan_block(&luts, &codes, base, bar, &mut b);
            assert_eq!((a, any_a), (b, any_b), "columns {columns}, round {round}");
        }
    }
}

#[wasm_bindgen_test]
fn corrupt_shards_are_errors_not_panics() {
    let mut rng = SplitMix64::new(5);
    for _ in 0..200 {
        let mut bytes = GOLDEN.to_vec();
        let at = rng.below(bytes.len());
        bytes[at] ^= 1 + (rng.next_u64() as u8 % 255);
        assert!(Shard::from_bytes(&bytes).is_err());
        let cut = rng.below(bytes.len());
        assert!(Shard::from_bytes(&GOLDEN[..cut]).is_err());
    }
}

/// The rows a coarse pass offers, with `candidate` raising the threshold to each offered row's
/// exact score when that is higher (as the ranker's heap does).
fn offered(
    cq: &CoarseQuery,
    query: &[i16],
    block: &kernels::CoarseRows<'_>,
    stride: usize,
    threshold: f32,
    reference: bool,
) -> Vec<usize> {
    let mut got = Vec::new();
    let mut current = threshold;
    let mut candidate = |j: usize| {
        got.push(j);
        let mut dot = [0];
        scalar::dot_i8_block(
            query,
            &block.rows[j * stride..(j + 1) * stride],
            stride,
            &mut dot,
        );
        let score = kernels::i8_score(dot[0], 0.01, block.row_scales[j], block.bias[j]);
        current = current.max(score);
        current
    };
    if reference {
        scalar::coarse_candidates(cq, 0.01, block, stride, threshold, &mut candidate);
    } else {
        coarse_candidates(cq, 0.01, block, stride, threshold, &mut candidate);
    }
    got
}

/// The largest f32 below `x` (finite `x`).
fn float_below(x: f32) -> f32 {
    if x > 0.0 {
        f32::from_bits(x.to_bits() - 1)
    } else if x < 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        -f32::from_bits(1)
    }
}

#[wasm_bindgen_test]
fn coarse_kernels_match_scalar() {
    let mut rng = SplitMix64::new(12);
    for stride in [16usize, 32, 48, 64, 128, 256] {
        for n in [0usize, 1, 3, 7, 8, 9, 33, 300] {
            let query: Vec<i16> = (0..stride).map(|_| rng.next_u64() as i16).collect();
            let rows: Vec<i8> = (0..n * stride).map(|_| rng.next_u64() as i8).collect();
            let cq = CoarseQuery::new(&query, stride).unwrap();
            let bounds = RowBounds::of(&rows, stride).unwrap();
            let scales: Vec<f32> = (0..n).map(|_| rng.next_f32() * 0.02).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.next_f32() - 0.5).collect();
            let block = kernels::CoarseRows {
                rows: &rows,
                sum: &bounds.sum,
                l1: &bounds.l1,
                row_scales: &scales,
                bias: &bias,
            };
            for threshold in [f32::NEG_INFINITY, -1e3, 0.0, 1e3, f32::INFINITY] {
                assert_eq!(
                    offered(&cq, &query, &block, stride, threshold, false),
                    offered(&cq, &query, &block, stride, threshold, true),
                    "coarse candidates: stride {stride}, rows {n}, threshold {threshold}"
                );
            }
            // Each row's bound exactly: at a threshold equal to the reference bound the row is
            // not a candidate, one float below it the row is (the candidate never raises the
            // threshold here). Rows 0..40 and the last 8 cover the fused quads and the tail.
            let mut coarse = vec![0; n];
            scalar::coarse_dot_block(&cq.digits, &rows, stride, &mut coarse);
            let reference: Vec<f32> = (0..n)
                .map(|j| {
                    let hi = cq.upper_bound(coarse[j], bounds.sum[j], bounds.l1[j]);
                    kernels::i8_score(hi, 0.01, scales[j], bias[j])
                })
                .collect();
            let checked = (0..n.min(40)).chain(n.saturating_sub(8)..n);
            for j in checked {
                for threshold in [reference[j], float_below(reference[j])] {
                    let mut got = Vec::new();
                    coarse_candidates(&cq, 0.01, &block, stride, threshold, &mut |i| {
                        got.push(i);
                        threshold
                    });
                    let expected: Vec<usize> = (0..n)
                        .filter(|&i| kernels::may_beat(reference[i], threshold))
                        .collect();
                    assert_eq!(got, expected, "bounds: stride {stride}, rows {n}, row {j}");
                }
            }
        }
    }
}

#[wasm_bindgen_test]
fn row_sum_and_ascii_kernels_match_scalar() {
    let mut rng = SplitMix64::new(13);
    for stride in [16usize, 32, 48, 64, 128, 256] {
        for n in [0usize, 1, 3, 300] {
            let mut rows: Vec<i8> = (0..n * stride).map(|_| rng.next_u64() as i8).collect();
            // The extremes: a row of -128s (its sum is i16::MIN at stride 256) and of 127s.
            if n >= 3 {
                rows[..stride].fill(i8::MIN);
                rows[stride..2 * stride].fill(i8::MAX);
            }
            let (mut sum, mut l1) = (vec![0; n], vec![0; n]);
            let (mut sum_ref, mut l1_ref) = (vec![0; n], vec![0; n]);
            kernels::row_sums(&rows, stride, &mut sum, &mut l1);
            scalar::row_sums(&rows, stride, &mut sum_ref, &mut l1_ref);
            assert_eq!(
                (sum, l1),
                (sum_ref, l1_ref),
                "row sums: stride {stride}, rows {n}"
            );
        }
    }
    // ASCII, then one high byte at every position of lengths around the 64-byte step.
    for len in [0usize, 1, 15, 16, 63, 64, 65, 127, 128, 200] {
        let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        assert!(kernels::is_ascii(&text), "ASCII of length {len}");
        for at in 0..len {
            let mut t = text.clone();
            t[at] = 0x80 | (rng.next_u64() as u8);
            assert_eq!(
                kernels::is_ascii(&t),
                scalar::is_ascii(&t),
                "length {len}, at {at}"
            );
            assert!(!kernels::is_ascii(&t), "high byte at {at} of {len}");
        }
    }
}

/// The load-time checks' kernels (int8 −128, increasing offsets and keys) against their
/// scalar references: lengths around each kernel's step, and one violation at every position,
/// including the last element and the step boundaries.
#[wasm_bindgen_test]
fn validation_kernels_match_scalar() {
    let mut rng = SplitMix64::new(29);
    for len in [
        0usize, 1, 2, 8, 9, 15, 16, 17, 33, 63, 64, 65, 127, 128, 129, 300,
    ] {
        // Every value but -128.
        let bytes: Vec<i8> = (0..len)
            .map(|_| ((rng.next_u64() % 255) as i16 - 127) as i8)
            .collect();
        assert!(!kernels::contains_i8_min(&bytes), "no -128 in {len}");
        for at in 0..len {
            let mut b = bytes.clone();
            b[at] = i8::MIN;
            assert_eq!(
                kernels::contains_i8_min(&b),
                scalar::contains_i8_min(&b),
                "{len}, {at}"
            );
            assert!(kernels::contains_i8_min(&b), "-128 at {at} of {len}");
        }
        // Increasing with gaps of 1 to 3, then one step made equal or decreasing anywhere; the
        // u64 values straddle 2^63, where a signed comparison would be wrong.
        let offsets: Vec<u32> = (0..len)
            .scan(0u32, |at, _| {
                *at += 1 + (rng.next_u64() % 3) as u32;
                Some(*at)
            })
            .collect();
        let keys: Vec<u64> = offsets
            .iter()
            .map(|&o| (1u64 << 63).wrapping_sub(200).wrapping_add(u64::from(o)))
            .collect();
        assert!(kernels::strictly_increasing(&offsets), "offsets of {len}");
        assert!(kernels::strictly_increasing_u64(&keys), "keys of {len}");
        for at in 1..len {
            for delta in [0u32, 1] {
                let mut o = offsets.clone();
                o[at] = o[at - 1] - delta;
                assert_eq!(
                    kernels::strictly_increasing(&o),
                    scalar::strictly_increasing(&o)
                );
                assert!(!kernels::strictly_increasing(&o), "offset {at} of {len}");
                let mut k = keys.clone();
                k[at] = k[at - 1] - u64::from(delta);
                assert_eq!(
                    kernels::strictly_increasing_u64(&k),
                    scalar::strictly_increasing_u64(&k)
                );
                assert!(!kernels::strictly_increasing_u64(&k), "key {at} of {len}");
            }
        }
    }
}

#[wasm_bindgen_test]
fn coarse_pass_never_changes_a_ranking() {
    assert_eq!(
        kernels::FAST_COARSE,
        cfg!(target_feature = "relaxed-simd"),
        "the coarse pass is on by default exactly in the relaxed-SIMD build"
    );
    for (seed, dim) in [(1u64, 64usize), (2, 32), (3, 100), (4, 128)] {
        let syn = Synthetic {
            items: 2000,
            dim,
            clusters: 9,
            seed,
            with_trend: true,
            ..Synthetic::default()
        };
        let shards = syn.shards(256 * 1024);
        let mut coarse = Engine::from_bytes(shards.iter().map(|s| s.as_slice())).unwrap();
        coarse.set_coarse_pass(true);
        let mut exact = coarse.clone();
        exact.set_coarse_pass(false);
        let mut rng = SplitMix64::new(seed);
        for case in 0..40 {
            let mut session = Session::new();
            for t in 0..case % 6 {
                let id = format!("item-{}", rng.below(2000));
                session.observe(&id, EventType::Click, 1_700_000_000 + t as u64);
            }
            let request = Request {
                k: 1 + case % 25,
                diversity: if case % 4 == 3 { 0.3 } else { 0.0 },
                ..Request::default()
            };
            assert_eq!(
                exact.recommend(&session, &request),
                coarse.recommend(&session, &request),
                "dim {dim}, case {case}"
            );
        }
    }
}
