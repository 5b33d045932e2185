//! Sliced Wasserstein distance between two image sets on a Laplacian pyramid of 7×7 patches
//! (Karras et al. 2018, "Progressive Growing of GANs", appendix D), as their reference code
//! computes it:
//! - a Laplacian pyramid per image, from full resolution down to 16×16 (`[32, 16]` for 32×32
//!   images, `[64, 32, 16]` for 64×64): Gaussian filter `[1 4 6 4 1]ᵀ[1 4 6 4 1] / 256` with
//!   mirror boundaries (`scipy.ndimage.convolve(mode='mirror')`, as `cv2.pyrDown`), level `l` is
//!   `G_l − up(G_{l+1})`, the last level is the Gaussian itself;
//! - 128 patches of 7×7 pixels per image and level, at random positions, as descriptors of
//!   `channels · 49` values, each channel normalised to mean 0 and standard deviation 1 over the
//!   whole set;
//! - 4 repeats of 128 random unit directions: project both sets, sort each projection, mean
//!   absolute difference; the distance is the mean over repeats and directions, times 1000.
//!
//! Deterministic for a seed (patch positions and directions come from it); every set is cut at
//! the same patch positions, so identical sets are at distance 0.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use wgan_models::latent::Rng;

/// Side of a patch.
pub const PATCH: usize = 7;
/// Patches drawn per image and level.
pub const PATCHES_PER_IMAGE: usize = 128;
/// Rounds of random directions.
pub const REPEATS: usize = 4;
/// Directions per round.
pub const DIRECTIONS: usize = 128;
/// The coarsest pyramid level.
pub const MIN_RESOLUTION: usize = 16;

/// A batch of images: `n` CHW images of `channels × size × size`, concatenated.
#[derive(Clone, Copy, Debug)]
pub struct Images<'a> {
    pub data: &'a [f32],
    pub channels: usize,
    pub size: usize,
}

impl Images<'_> {
    fn len(&self) -> usize {
        self.data.len() / (self.channels * self.size * self.size)
    }
}

/// The resolutions of the pyramid of `size`×`size` images: `size`, `size/2`, … down to 16
/// (just `size` when it is below 16).
pub fn resolutions(size: usize) -> Vec<usize> {
    let mut out = vec![size];
    let mut r = size / 2;
    while r >= MIN_RESOLUTION && r * 2 == *out.last().expect("non-empty") {
        out.push(r);
        r /= 2;
    }
    out
}

/// Index `i` reflected into `0..n` without repeating the edge (`… 2 1 | 0 1 2 … n−1 | n−2 …`).
fn mirror(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

/// Filter taps of the pyramid's Gaussian along one axis.
const TAPS: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];

/// Separable 5×5 convolution of one `s`×`s` plane with `TAPS · gain` on both axes, mirror
/// boundaries.
fn blur(plane: &[f32], s: usize, gain: f32) -> Vec<f32> {
    let mut rows = vec![0f32; s * s];
    for y in 0..s {
        for x in 0..s {
            let mut acc = 0f32;
            for (k, t) in TAPS.iter().enumerate() {
                acc += t * plane[y * s + mirror(x as isize + k as isize - 2, s)];
            }
            rows[y * s + x] = acc * gain;
        }
    }
    let mut out = vec![0f32; s * s];
    for y in 0..s {
        for x in 0..s {
            let mut acc = 0f32;
            for (k, t) in TAPS.iter().enumerate() {
                acc += t * rows[mirror(y as isize + k as isize - 2, s) * s + x];
            }
            out[y * s + x] = acc * gain;
        }
    }
    out
}

/// `cv2.pyrDown` of one plane: blur, keep even rows and columns.
fn down(plane: &[f32], s: usize) -> Vec<f32> {
    let b = blur(plane, s, 1.0);
    let h = s.div_ceil(2);
    let mut out = Vec::with_capacity(h * h);
    for y in (0..s).step_by(2) {
        for x in (0..s).step_by(2) {
            out.push(b[y * s + x]);
        }
    }
    out
}

/// `cv2.pyrUp` of one plane to side `2s`: zeros between the samples, blur with gain 2 per axis.
fn up(plane: &[f32], s: usize) -> Vec<f32> {
    let t = 2 * s;
    let mut z = vec![0f32; t * t];
    for y in 0..s {
        for x in 0..s {
            z[2 * y * t + 2 * x] = plane[y * s + x];
        }
    }
    blur(&z, t, 2.0)
}

/// The Laplacian pyramid of every plane of `images`: one image batch per entry of
/// [`resolutions`], same layout as the input.
pub fn laplacian_pyramid(images: Images) -> Vec<Vec<f32>> {
    let res = resolutions(images.size);
    let planes = images.data.len() / (images.size * images.size);
    let mut levels: Vec<Vec<f32>> = res
        .iter()
        .map(|r| Vec::with_capacity(planes * r * r))
        .collect();
    for p in images.data.chunks(images.size * images.size) {
        let mut g = p.to_vec();
        for (l, &r) in res.iter().enumerate() {
            if l + 1 == res.len() {
                levels[l].extend_from_slice(&g);
                break;
            }
            let next = down(&g, r);
            let back = up(&next, r / 2);
            levels[l].extend(g.iter().zip(&back).map(|(a, b)| a - b));
            g = next;
        }
    }
    levels
}

/// Patch descriptors of one pyramid level (`n` images of `channels × s × s`): `PATCHES_PER_IMAGE`
/// per image at random positions, each channel normalised over the set. Row-major
/// `(n · PATCHES_PER_IMAGE) × (channels · 49)`.
fn descriptors(level: &[f32], channels: usize, s: usize, rng: &mut Rng) -> Vec<f32> {
    let h = PATCH / 2;
    let n = level.len() / (channels * s * s);
    let dim = channels * PATCH * PATCH;
    let mut out = Vec::with_capacity(n * PATCHES_PER_IMAGE * dim);
    let span = (s - 2 * h) as u64;
    for img in level.chunks(channels * s * s) {
        for _ in 0..PATCHES_PER_IMAGE {
            let x = h + rng.below(span) as usize;
            let y = h + rng.below(span) as usize;
            for c in 0..channels {
                let plane = &img[c * s * s..(c + 1) * s * s];
                for dy in 0..PATCH {
                    let row = (y + dy - h) * s + x - h;
                    out.extend_from_slice(&plane[row..row + PATCH]);
                }
            }
        }
    }
    // Per-channel standardisation over all descriptors and pixels (population std).
    let per_channel = PATCH * PATCH;
    for c in 0..channels {
        let (mut sum, mut sq) = (0f64, 0f64);
        for d in out.chunks(dim) {
            for &v in &d[c * per_channel..(c + 1) * per_channel] {
                sum += v as f64;
                sq += (v as f64) * (v as f64);
            }
        }
        let count = (out.len() / dim * per_channel) as f64;
        let mean = sum / count;
        let std = (sq / count - mean * mean).max(0.0).sqrt();
        let scale = if std > 1e-12 { 1.0 / std } else { 1.0 };
        for d in out.chunks_mut(dim) {
            for v in &mut d[c * per_channel..(c + 1) * per_channel] {
                *v = ((*v as f64 - mean) * scale) as f32;
            }
        }
    }
    out
}

/// An order-preserving map of f32 to u32 (negative values reversed below the positive ones),
/// so that projections sort as integers.
fn order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Each direction's projections of `desc` (`rows × dim`), sorted: `DIRECTIONS` rows of `rows`
/// order keys.
fn sorted_projections(desc: &[f32], dim: usize, dirs: &Tensor) -> Result<Vec<u32>> {
    let rows = desc.len() / dim;
    let d = Tensor::from_slice(desc, (rows, dim), &Device::Cpu)?;
    let proj = dirs.matmul(&d.t()?)?.flatten_all()?.to_vec1::<f32>()?;
    let mut keys: Vec<u32> = proj.into_iter().map(order_key).collect();
    keys.par_chunks_mut(rows).for_each(|r| r.sort_unstable());
    Ok(keys)
}

fn from_key(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    })
}

/// Sliced Wasserstein distances (×1000) of each of `others` to `reference`, per level of the
/// pyramid ([`resolutions`] order). All sets need the same number of images and shape.
pub fn sliced_wasserstein(
    reference: Images,
    others: &[Images],
    seed: u64,
) -> Result<Vec<Vec<f64>>> {
    let n = reference.len();
    if n == 0 {
        bail!("the sliced Wasserstein distance needs images");
    }
    if reference.size < PATCH {
        bail!(
            "images of {0}×{0} are smaller than the 7×7 patches",
            reference.size
        );
    }
    for o in others {
        if (o.len(), o.channels, o.size) != (n, reference.channels, reference.size) {
            bail!("the sliced Wasserstein distance compares sets of the same count and shape");
        }
    }
    let res = resolutions(reference.size);
    let c = reference.channels;
    let dim = c * PATCH * PATCH;
    let pyramids: Vec<Vec<Vec<f32>>> = std::iter::once(reference)
        .chain(others.iter().copied())
        .map(laplacian_pyramid)
        .collect();
    let mut out = vec![Vec::with_capacity(res.len()); others.len()];
    for (l, &s) in res.iter().enumerate() {
        let desc: Vec<Vec<f32>> = pyramids
            .iter()
            .map(|p| {
                // The same patch positions in every set: identical sets are at distance 0.
                let mut rng = Rng::new(seed ^ ((l as u64 + 1) << 32));
                descriptors(&p[l], c, s, &mut rng)
            })
            .collect();
        let rows = n * PATCHES_PER_IMAGE;
        let mut sums = vec![0f64; others.len()];
        let mut dir_rng = Rng::new(seed ^ 0x5D1C_ED00 ^ l as u64);
        for _ in 0..REPEATS {
            let mut dirs = vec![0f32; DIRECTIONS * dim];
            dir_rng.fill_normal(&mut dirs);
            for d in dirs.chunks_mut(dim) {
                let norm = d.iter().map(|v| v * v).sum::<f32>().sqrt();
                d.iter_mut().for_each(|v| *v /= norm);
            }
            let dirs = Tensor::from_vec(dirs, (DIRECTIONS, dim), &Device::Cpu)?;
            let reference_keys = sorted_projections(&desc[0], dim, &dirs)?;
            for (k, other) in desc[1..].iter().enumerate() {
                let keys = sorted_projections(other, dim, &dirs)?;
                let total: f64 = reference_keys
                    .par_iter()
                    .zip(&keys)
                    .map(|(&a, &b)| (from_key(a) - from_key(b)).abs() as f64)
                    .sum();
                sums[k] += total / (rows * DIRECTIONS) as f64;
            }
        }
        for (k, s) in sums.iter().enumerate() {
            out[k].push(1e3 * s / REPEATS as f64);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.uniform_f32() * 2.0 - 1.0).collect()
    }

    #[test]
    fn resolutions_halve_down_to_16() {
        assert_eq!(resolutions(64), vec![64, 32, 16]);
        assert_eq!(resolutions(32), vec![32, 16]);
        assert_eq!(resolutions(16), vec![16]);
        assert_eq!(resolutions(12), vec![12]);
    }

    #[test]
    fn mirror_reflects_without_repeating_the_edge() {
        let got: Vec<usize> = (-3..8).map(|i| mirror(i, 5)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
    }

    #[test]
    fn order_keys_sort_like_the_floats() {
        let mut v = vec![3.5f32, -0.0, 0.0, -2.0, 1e-30, -1e30, 7.0];
        let mut keys: Vec<u32> = v.iter().map(|&x| order_key(x)).collect();
        keys.sort_unstable();
        v.sort_by(f32::total_cmp);
        let back: Vec<f32> = keys.into_iter().map(from_key).collect();
        assert_eq!(back, v);
    }

    #[test]
    fn the_pyramid_matches_progressive_gans_scipy_code() {
        use crate::eval::frechet::tests::{floats, goldens};
        let goldens = goldens();
        for case in goldens["pyramid"].as_array().unwrap() {
            let images = floats(&case["images"]);
            let levels = laplacian_pyramid(Images {
                data: &images,
                channels: case["channels"].as_u64().unwrap() as usize,
                size: case["size"].as_u64().unwrap() as usize,
            });
            let want = case["levels"].as_array().unwrap();
            assert_eq!(levels.len(), want.len(), "{}", case["name"]);
            for (l, (got, want)) in levels.iter().zip(want).enumerate() {
                let want = floats(want);
                assert_eq!(got.len(), want.len());
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-5, "{} level {l}: max diff {worst}", case["name"]);
            }
        }
    }

    #[test]
    fn a_constant_image_has_a_flat_laplacian() {
        let img = vec![0.25f32; 2 * 32 * 32];
        let levels = laplacian_pyramid(Images {
            data: &img,
            channels: 2,
            size: 32,
        });
        assert!(levels[0].iter().all(|v| v.abs() < 1e-6));
        assert!(levels[1].iter().all(|v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn identical_sets_are_at_distance_zero_and_different_ones_are_not() {
        let (c, s, n) = (3, 32, 20);
        let a = noise(n * c * s * s, 1);
        let smooth: Vec<f32> = a.iter().map(|v| 0.2 * v).collect();
        let img = |d| Images {
            data: d,
            channels: c,
            size: s,
        };
        let d = sliced_wasserstein(img(&a), &[img(&a), img(&smooth)], 7).unwrap();
        assert!(d[0].iter().all(|&v| v == 0.0), "{:?}", d[0]);
        // Scaling alone is normalised away; a blurred copy is not the same distribution.
        assert!(d[1].iter().all(|&v| v < 1e-2), "{:?}", d[1]);
        let blurred: Vec<f32> = a.chunks(s * s).flat_map(|p| blur(p, s, 1.0)).collect();
        let d = sliced_wasserstein(img(&a), &[img(&blurred)], 7).unwrap();
        assert!(d[0][0] > 10.0, "{:?}", d[0]);
    }
}
