//! Digit measures of a set of images through the MNIST classifier ([`crate::classifier`]):
//! - **FD**: the Fréchet distance between Gaussians fitted to the classifier's 64 penultimate
//!   features of the set and of the held-out digits (the FID recipe in this classifier's
//!   features);
//! - the **class histogram** of the most probable class, its **KL divergence from uniform**
//!   `Σ pᵢ ln(10 pᵢ)` (nats; 0 when every digit is equally frequent, ln 10 ≈ 2.30 for one class),
//!   the **classes covered** (those of at least 2 % of the images);
//! - the **mean top-class confidence** (mean of the largest class probability): low for
//!   ambiguous, unreadable images.

use super::frechet::{frechet_distance, Gaussian};
use crate::classifier::{Classifier, Outputs, CLASSES, FEATURES, IMAGE_SIZE};
use anyhow::Result;
use image::imageops::{resize, FilterType};
use image::{ImageBuffer, Luma};
use serde::Serialize;
use std::borrow::Cow;

/// Share of the images a class needs to count as covered.
pub const COVERED_SHARE: f64 = 0.02;

/// The digit measures of one set of images.
#[derive(Clone, Debug, Serialize)]
pub struct DigitMeasures {
    /// Fréchet distance to the held-out digits in the classifier's features.
    pub fd: f64,
    /// Share of the images classified as each digit 0–9.
    pub histogram: Vec<f64>,
    /// KL(histogram ‖ uniform), in nats.
    pub kl_uniform: f64,
    /// Digits with at least 2 % of the images.
    pub classes_covered: usize,
    /// Mean probability of the most probable class.
    pub confidence: f64,
}

/// The held-out digits as the classifier sees them: the reference Gaussian of the FD.
pub struct DigitReference {
    pub classifier: Classifier,
    pub held_out: Gaussian,
}

impl DigitReference {
    /// Fits the held-out digits' features (`images`: grey `size`×`size`, CHW, concatenated).
    pub fn new(classifier: Classifier, held_out: &[f32], size: usize) -> Result<Self> {
        let out = classifier.run(&classifier_input(held_out, size))?;
        let held_out = Gaussian::fit(&out.features, FEATURES)?;
        Ok(Self {
            classifier,
            held_out,
        })
    }

    /// The measures of `images` (grey `size`×`size`, CHW, concatenated).
    pub fn measure(&self, images: &[f32], size: usize) -> Result<DigitMeasures> {
        let out = self.classifier.run(&classifier_input(images, size))?;
        measures(&out, &self.held_out)
    }
}

/// The measures of classifier outputs against the held-out Gaussian.
pub fn measures(out: &Outputs, held_out: &Gaussian) -> Result<DigitMeasures> {
    let fd = frechet_distance(&Gaussian::fit(&out.features, FEATURES)?, held_out);
    let n = out.len() as f64;
    let mut histogram = vec![0f64; CLASSES];
    for c in out.predictions() {
        histogram[c] += 1.0 / n;
    }
    let kl_uniform = histogram
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * (p * CLASSES as f64).ln())
        .sum();
    let classes_covered = histogram.iter().filter(|&&p| p >= COVERED_SHARE).count();
    let confidence = out
        .probabilities
        .chunks(CLASSES)
        .map(|p| p.iter().copied().fold(0f32, f32::max) as f64)
        .sum::<f64>()
        / n;
    Ok(DigitMeasures {
        fd,
        histogram,
        kl_uniform,
        classes_covered,
        confidence,
    })
}

/// `images` (grey, `size`×`size`) at the classifier's 32×32, resized with a triangle filter
/// when they are of another size.
fn classifier_input(images: &[f32], size: usize) -> Cow<'_, [f32]> {
    if size == IMAGE_SIZE {
        return Cow::Borrowed(images);
    }
    let s = IMAGE_SIZE as u32;
    Cow::Owned(
        images
            .chunks(size * size)
            .flat_map(|p| {
                // The image crate clamps f32 pixels to [0, 1]: resize in that range.
                let unit = p.iter().map(|v| (v + 1.0) * 0.5).collect();
                let img: ImageBuffer<Luma<f32>, Vec<f32>> =
                    ImageBuffer::from_raw(size as u32, size as u32, unit)
                        .expect("size × size values");
                let small = resize(&img, s, s, FilterType::Triangle).into_raw();
                small.into_iter().map(|v| v * 2.0 - 1.0).collect::<Vec<_>>()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;

    fn held_out() -> data::Dataset {
        data::embedded_mnist_test(1, IMAGE_SIZE).unwrap()
    }

    #[test]
    fn held_out_digits_against_themselves_score_the_ideal() {
        let held = held_out();
        let r = DigitReference::new(Classifier::embedded().unwrap(), &held.images().unwrap(), 32)
            .unwrap();
        let m = r.measure(&held.images().unwrap(), 32).unwrap();
        assert!(m.fd.abs() < 1e-6, "{}", m.fd);
        assert_eq!(m.classes_covered, 10);
        // The 1000 test digits are not exactly balanced (KL 0.010 from uniform).
        assert!(m.kl_uniform < 0.02, "{}", m.kl_uniform);
        assert!(m.confidence > 0.95, "{}", m.confidence);
        assert!((m.histogram.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_single_digit_covers_one_class_and_noise_is_far() {
        let held = held_out();
        let r = DigitReference::new(Classifier::embedded().unwrap(), &held.images().unwrap(), 32)
            .unwrap();
        // "A generator that outputs only one digit class": every image a copy of a seven.
        let labels = held.labels.as_ref().unwrap();
        let seven = (0..held.len).find(|&i| labels[i] == 7).unwrap();
        let sevens: Vec<f32> = (0..500).flat_map(|_| held.image(seven).unwrap()).collect();
        let m = r.measure(&sevens, 32).unwrap();
        assert_eq!(m.classes_covered, 1);
        assert!((m.histogram[7] - 1.0).abs() < 1e-9);
        assert!((m.kl_uniform - 10f64.ln()).abs() < 1e-9);
        // FD grows with the noise added to real digits.
        let mut noise = vec![0f32; held.images().unwrap().len()];
        wgan_models::latent::Rng::new(4).fill_normal(&mut noise);
        let mut last = 0.0;
        for scale in [0.1f32, 0.3, 1.0] {
            let noisy: Vec<f32> = held
                .images()
                .unwrap()
                .iter()
                .zip(&noise)
                .map(|(a, b)| (a + scale * b).clamp(-1.0, 1.0))
                .collect();
            let fd = r.measure(&noisy, 32).unwrap().fd;
            assert!(fd > last, "noise {scale}: FD {fd} after {last}");
            last = fd;
        }
        assert!(m.fd > 10.0 * held_out_floor(&r), "one digit: FD {}", m.fd);
    }

    /// The FD of the training digits to the held-out ones.
    fn held_out_floor(r: &DigitReference) -> f64 {
        let train = data::embedded_mnist(1, IMAGE_SIZE).unwrap();
        r.measure(&train.images().unwrap()[..1000 * 1024], 32)
            .unwrap()
            .fd
    }

    #[test]
    fn other_sizes_are_resized_for_the_classifier() {
        let held = data::embedded_mnist_test(1, 64).unwrap().images().unwrap();
        let input = classifier_input(&held[..3 * 64 * 64], 64);
        assert_eq!(input.len(), 3 * IMAGE_SIZE * IMAGE_SIZE);
        let r = DigitReference::new(Classifier::embedded().unwrap(), &held, 64).unwrap();
        assert!(r.measure(&held, 64).unwrap().confidence > 0.9);
    }
}
