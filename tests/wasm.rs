//! Tests that run inside wasm (Node, via wasm-bindgen-test-runner): the simd128 kernel against
//! the scalar reference, and the frozen golden shard ranking exactly as the native build ranks
//! it (the golden ranking file was produced natively).
#![cfg(target_arch = "wasm32")]

use edgerec::kernels::{dot_i8_block, scalar};
use edgerec::math::SplitMix64;
use edgerec::Shard;
use wasm_bindgen_test::wasm_bindgen_test;

const GOLDEN: &[u8] = include_bytes!("golden/v1-tiny.shard");
const GOLDEN_RANKING: &str = include_str!("golden/v1-tiny.ranking");
const GOLDEN_V2: &[u8] = include_bytes!("golden/v2-tiny.shard");
const GOLDEN_V2_RANKING: &str = include_str!("golden/v2-tiny.ranking");

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
