//! The latent function `seed → z`, shared by the trainer, the exporter and every backend.
//!
//! Contract (platform-independent, documented so other languages can reproduce it):
//! - PRNG: xoshiro256++ whose 256-bit state is filled by four successive outputs of
//!   SplitMix64 started at `seed`.
//! - Each standard normal value consumes two 64-bit outputs `a`, `b`:
//!   `u1 = ((a >> 11) + 1) · 2⁻⁵³ ∈ (0, 1]`, `u2 = (b >> 11) · 2⁻⁵³ ∈ [0, 1)`,
//!   `z = sqrt(−2 ln u1) · cos(2π u2)` computed in f64, then rounded to f32.
//! - `latents(seed, n, z_dim)` is the first `n · z_dim` values of that stream, row-major
//!   `[n, z_dim, 1, 1]`: image `i` of a seed is the same whatever the batch size.

/// Deterministic xoshiro256++ generator with a serialisable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded from one `u64` through SplitMix64.
    pub fn new(seed: u64) -> Self {
        let mut s = seed;
        let state = [
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
        ];
        Self { state }
    }

    /// Restores a generator from [`Rng::state`]. An all-zero state is invalid for xoshiro and
    /// is rejected.
    pub fn from_state(state: [u64; 4]) -> Option<Self> {
        (state != [0; 4]).then_some(Self { state })
    }

    /// The full internal state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.state
    }

    /// Next raw 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 24 random bits (exact in f32).
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform integer in `0..n` (n > 0), by rejection so it is unbiased.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below needs n > 0");
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Standard normal value, by the Box–Muller transform described in the module docs.
    pub fn normal_f32(&mut self) -> f32 {
        const TWO_POW_M53: f64 = 1.0 / (1u64 << 53) as f64;
        let u1 = ((self.next_u64() >> 11) + 1) as f64 * TWO_POW_M53;
        let u2 = (self.next_u64() >> 11) as f64 * TWO_POW_M53;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Fills `out` with standard normal values.
    pub fn fill_normal(&mut self, out: &mut [f32]) {
        out.iter_mut().for_each(|v| *v = self.normal_f32());
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// The latents of images `0..n` for `seed`: `n · z_dim` values, row-major `[n, z_dim, 1, 1]`.
pub fn latents(seed: u64, n: usize, z_dim: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut z = vec![0f32; n * z_dim];
    rng.fill_normal(&mut z);
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_and_xoshiro_match_reference_values() {
        // SplitMix64 from seed 0: first outputs of the reference C implementation.
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
        // xoshiro256++ with state [1, 2, 3, 4]: reference outputs of xoshiro256plusplus.c.
        let mut r = Rng::from_state([1, 2, 3, 4]).unwrap();
        assert_eq!(r.next_u64(), 41_943_041);
        assert_eq!(r.next_u64(), 58_720_359);
        assert_eq!(r.next_u64(), 3_588_806_011_781_223);
    }

    #[test]
    fn latents_are_prefix_stable_and_standard_normal() {
        let a = latents(42, 3, 100);
        let b = latents(42, 10, 100);
        assert_eq!(a[..], b[..300]);
        assert_ne!(latents(43, 3, 100), a);
        let big = latents(7, 1000, 100);
        let n = big.len() as f64;
        let mean = big.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = big.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn below_and_shuffle_are_permutations() {
        let mut r = Rng::new(1);
        let mut v: Vec<usize> = (0..100).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert!(Rng::from_state([0; 4]).is_none());
    }
}
