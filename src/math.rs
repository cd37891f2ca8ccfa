//! Floating-point helpers with one definition on every platform.
//!
//! `f32::exp` calls the platform's libm, which may differ in the last bit between the native
//! build and wasm; rankings must not. These use only +, ×, floor and bit manipulation, which
//! IEEE 754 defines exactly.

/// 2^x, with a relative error below 5e-7 on [-126, 127] (degree-5 polynomial); 0 below, +∞ above.
pub fn exp2(x: f32) -> f32 {
    if x.is_nan() {
        return f32::NAN;
    }
    if x < -126.0 {
        return 0.0;
    }
    if x >= 128.0 {
        return f32::INFINITY;
    }
    // Range reduction to f in [-0.5, 0.5], then the degree-6 Taylor polynomial of 2^f, whose
    // truncation error there is below 1.3e-7.
    let whole = x.round();
    let f = x - whole;
    let p = 1.0
        + f * (core::f32::consts::LN_2
            + f * (0.240_226_5
                + f * (0.055_504_11
                    + f * (0.009_618_129 + f * (0.001_333_355_8 + f * 0.000_154_035_3)))));
    let e = whole as i32;
    if e >= 127 {
        return p * f32::from_bits(((e - 1 + 127) as u32) << 23) * 2.0;
    }
    p * f32::from_bits(((e + 127) as u32) << 23)
}

/// e^x via [`exp2`].
pub fn exp(x: f32) -> f32 {
    exp2(x * core::f32::consts::LOG2_E)
}

/// SplitMix64: a tiny, well-studied PRNG; deterministic for a seed on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in 0..n (n > 0); Lemire's multiply-shift, bias below 2^-32 for our n.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 32).wrapping_mul(n as u64) >> 32) as usize
    }

    /// Roughly normal with mean 0 and variance 1/3: the sum of four uniforms, minus 2. Close
    /// enough for initial weights and test data, and the same on every platform.
    pub fn approx_normal(&mut self) -> f32 {
        (0..4).map(|_| self.next_f32()).sum::<f32>() - 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_is_accurate() {
        let mut x = -125.0f32;
        while x < 126.0 {
            let want = (x as f64).exp2();
            let got = exp2(x) as f64;
            assert!(
                ((got - want) / want).abs() < 5e-7,
                "x={x} got={got} want={want}"
            );
            x += 0.013;
        }
        assert_eq!(exp2(-200.0), 0.0);
        assert_eq!(exp2(0.0), 1.0);
        assert!(exp2(200.0).is_infinite());
        assert!((exp(1.0) - core::f32::consts::E).abs() < 1e-6);
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let f = a.next_f32();
            assert!((0.0..1.0).contains(&f));
            assert!(b.below(13) < 13);
            a.below(13);
            b.next_f32();
        }
    }
}
