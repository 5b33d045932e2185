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
//! - Truncation ψ (the truncation trick, [`truncate`]): image `i` of seed `S` draws its
//!   replacements from its own stream, `Rng::new(h ⊕ i)` with `h` the first SplitMix64 output
//!   started at `S ⊕ 0x5452_554E_4341_5445` ("TRUNCATE" in ASCII). Its components are visited in
//!   order; each with `|z| > ψ` is replaced by that stream's next normal values (drawn as above)
//!   until one has `|v| ≤ ψ`. Image `i` therefore depends on `(S, i, ψ)` only. ψ ≥
//!   [`MIN_TRUNCATION`].
//! - Walks ([`walk`]): the key latent of seed `S` is image 0 of `S` (truncated when asked).
//!   `F` frames run from the first key to the last: frame `k` sits at `u = k·(K − 1)/(F − 1)`
//!   along the `K` keys, between keys `j = min(⌊u⌋, K − 2)` and `j + 1` at `t = u − j`, and is
//!   their spherical interpolation ([`slerp`], in f64, rounded to f32); frames at a key are
//!   that key exactly.

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

/// The latents of images `first..first + n` of `seed`: rows `first..first + n` of
/// [`latents`], reached by skipping the `2 · first · z_dim` outputs before them (about a
/// nanosecond each).
pub fn latents_from(seed: u64, first: u64, n: usize, z_dim: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    for _ in 0..2 * first * z_dim as u64 {
        rng.next_u64();
    }
    let mut z = vec![0f32; n * z_dim];
    rng.fill_normal(&mut z);
    z
}

/// The smallest truncation ψ: below it the rejection draws get long (≈ 1/(0.8 ψ) per
/// component) for no visible change.
pub const MIN_TRUNCATION: f32 = 0.01;

/// Most frames in one walk.
pub const MAX_FRAMES: usize = 10_000;

/// A truncation ψ outside `[MIN_TRUNCATION, ∞)`, with the flag or field that gave it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{what} is {psi}; truncation keeps latent components within ±ψ, so ψ must be at least {MIN_TRUNCATION} (values from 1 to 2 are usual)")]
pub struct BadTruncation {
    pub what: String,
    pub psi: f32,
}

/// Checks a truncation ψ, naming `what` (the flag or field) in the error.
pub fn check_truncation(psi: f32, what: &str) -> Result<(), BadTruncation> {
    if psi.is_finite() && psi >= MIN_TRUNCATION {
        Ok(())
    } else {
        Err(BadTruncation {
            what: what.to_string(),
            psi,
        })
    }
}

/// The stream that truncation draws image `index` of `seed`'s replacements from.
fn truncation_stream(seed: u64, index: u64) -> Rng {
    let mut s = seed ^ 0x5452_554E_4341_5445;
    Rng::new(splitmix64(&mut s) ^ index)
}

/// Truncates latents in place: `z` holds rows of `z_dim` values for images `first, first + 1,
/// …` of `seed`; every component with `|v| > psi` is redrawn from the image's own stream until
/// it is within ±`psi` (see the module docs). `psi` must pass [`check_truncation`].
pub fn truncate(z: &mut [f32], seed: u64, first: u64, z_dim: usize, psi: f32) {
    assert!(
        psi >= MIN_TRUNCATION,
        "truncation {psi} is below the minimum"
    );
    for (row, values) in z.chunks_mut(z_dim).enumerate() {
        let mut rng = None;
        for v in values.iter_mut() {
            while v.abs() > psi {
                *v = rng
                    .get_or_insert_with(|| truncation_stream(seed, first + row as u64))
                    .normal_f32();
            }
        }
    }
}

/// The latent of image 0 of `seed`, truncated when `truncation` is given: a walk's key.
pub fn key_latent(seed: u64, z_dim: usize, truncation: Option<f32>) -> Vec<f32> {
    let mut z = latents(seed, 1, z_dim);
    if let Some(psi) = truncation {
        truncate(&mut z, seed, 0, z_dim, psi);
    }
    z
}

/// Spherical interpolation from `a` (t = 0, exactly) to `b` (t = 1, exactly): the direction
/// moves along the great circle at a constant angular speed and the length goes linearly from
/// `|a|` to `|b|` (so a walk between typical Gaussian latents stays at their typical length,
/// where a straight line would cut through the low-density middle).
pub fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    assert_eq!(
        a.len(),
        b.len(),
        "slerp between latents of different lengths"
    );
    if t == 0.0 {
        return a.to_vec();
    }
    if t == 1.0 {
        return b.to_vec();
    }
    let na = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        return a
            .iter()
            .zip(b)
            .map(|(&x, &y)| ((1.0 - t) * x as f64 + t * y as f64) as f32)
            .collect();
    }
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let omega = (dot / (na * nb)).clamp(-1.0, 1.0).acos();
    // Weights of the unit vectors along the great circle, then the radius.
    let (ua, ub) = if omega.sin().abs() < 1e-6 {
        (1.0 - t, t)
    } else {
        let so = omega.sin();
        (((1.0 - t) * omega).sin() / so, (t * omega).sin() / so)
    };
    let radius = (1.0 - t) * na + t * nb;
    let mut out: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| ua * x as f64 / na + ub * y as f64 / nb)
        .collect();
    let norm = out.iter().map(|v| v * v).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { radius / norm } else { 0.0 };
    out.iter_mut().for_each(|v| *v *= scale);
    out.into_iter().map(|v| v as f32).collect()
}

/// The `frames` latents of a walk through `keys` (each `z_dim` long; see the module docs), row
/// after row. Needs at least two keys and two frames.
pub fn walk(keys: &[Vec<f32>], frames: usize) -> Vec<f32> {
    walk_frames(keys, frames, 0..frames)
}

/// Frames `range` of [`walk`]`(keys, frames)`: each frame depends on its position only.
pub fn walk_frames(keys: &[Vec<f32>], frames: usize, range: std::ops::Range<usize>) -> Vec<f32> {
    assert!(
        keys.len() >= 2 && frames >= 2 && range.end <= frames,
        "a walk needs two keys, two frames, and frames within them"
    );
    let last = (keys.len() - 1) as f64;
    let mut out = Vec::with_capacity(range.len() * keys[0].len());
    for k in range {
        let u = k as f64 * last / (frames - 1) as f64;
        let j = (u.floor() as usize).min(keys.len() - 2);
        out.extend(slerp(&keys[j], &keys[j + 1], u - j as f64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latents_from_a_first_image_are_that_window_of_the_stream_and_walks_of_frames() {
        let all = latents(9, 7, 13);
        assert_eq!(latents_from(9, 0, 7, 13), all);
        assert_eq!(latents_from(9, 4, 3, 13), all[4 * 13..]);
        assert_eq!(latents_from(9, 6, 1, 13), all[6 * 13..]);
        let keys = [latents(1, 1, 13), latents(2, 1, 13), latents(3, 1, 13)];
        let whole = walk(&keys, 9);
        assert_eq!(walk_frames(&keys, 9, 3..7), whole[3 * 13..7 * 13]);
        assert_eq!(walk_frames(&keys, 9, 8..9), keys[2]);
    }

    #[test]
    fn truncation_bounds_each_image_by_its_own_stream() {
        let (zd, psi) = (50, 0.7);
        let mut z = latents(5, 8, zd);
        let orig = z.clone();
        truncate(&mut z, 5, 0, zd, psi);
        assert!(z.iter().all(|v| v.abs() <= psi));
        // Components within ±ψ are kept; the others were redrawn.
        for (a, b) in orig.iter().zip(&z) {
            if a.abs() <= psi {
                assert_eq!(a, b);
            } else {
                assert_ne!(a, b);
            }
        }
        // Image 3 alone, truncated as image 3, is the same row: no dependence on the others.
        let mut one = orig[3 * zd..4 * zd].to_vec();
        truncate(&mut one, 5, 3, zd, psi);
        assert_eq!(one, z[3 * zd..4 * zd]);
        // Another seed or index draws other replacements.
        let mut other = orig[3 * zd..4 * zd].to_vec();
        truncate(&mut other, 6, 3, zd, psi);
        assert_ne!(other, one);
        // Every value is now a standard normal conditioned on |v| ≤ ψ, whose variance is
        // 1 − 2ψφ(ψ)/(2Φ(ψ) − 1) = 0.15292 at ψ = 0.7.
        let mut big = latents(1, 4000, zd);
        truncate(&mut big, 1, 0, zd, psi);
        let var = big.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / big.len() as f64;
        assert!((var - 0.15292).abs() < 0.002, "variance {var}");
        assert!(check_truncation(0.0, "--truncation").is_err());
        assert!(check_truncation(-1.0, "--truncation").is_err());
        assert!(check_truncation(f32::NAN, "--truncation").is_err());
        assert!(check_truncation(0.5, "--truncation").is_ok());
    }

    #[test]
    fn slerp_keeps_the_radius_of_equal_norm_vectors_and_hits_the_keys() {
        let a = latents(1, 1, 64);
        let b = latents(2, 1, 64);
        let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        // On a unit circle the midpoint of two orthogonal vectors is their normalised sum.
        let m = slerp(&[1.0, 0.0], &[0.0, 1.0], 0.5);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((m[0] - h).abs() < 1e-7 && (m[1] - h).abs() < 1e-7, "{m:?}");
        let q = slerp(&[1.0, 0.0], &[0.0, 1.0], 1.0 / 3.0);
        assert!((q[0] - 30f32.to_radians().cos()).abs() < 1e-6, "{q:?}");
        // Between two latents the angle to `a` grows linearly in t.
        let angle = |x: &[f32], y: &[f32]| {
            let d: f64 = x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum();
            (d / (norm(x) * norm(y))).acos()
        };
        let full = angle(&a, &b);
        for t in [0.25, 0.5, 0.75] {
            let s = slerp(&a, &b, t);
            assert!((angle(&a, &s) - t * full).abs() < 1e-5, "t {t}");
        }
        let frames = walk(&[a.clone(), b.clone(), a.clone()], 5);
        assert_eq!(frames.len(), 5 * 64);
        assert_eq!(frames[..64], a[..]);
        assert_eq!(frames[2 * 64..3 * 64], b[..]);
        assert_eq!(frames[4 * 64..], a[..]);
        assert_eq!(frames[64..128], slerp(&a, &b, 0.5)[..]);
        assert_eq!(key_latent(9, 64, None), latents(9, 1, 64));
    }

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
