//! The MNIST digit classifier behind `trainer eval`'s digit measures (Fréchet distance in its
//! features, class histogram, coverage, confidence), and `trainer classifier`, which trains it.
//!
//! Architecture (a [`NetSpec`], so it runs on the same candle blocks as the critic): 32×32 grey
//! digits in [-1, 1] → Conv 4/2/1 16 → ReLU → Conv 4/2/1 32 → ReLU → Conv 4/2/1 64 → ReLU →
//! Conv 4/1/0 64 → ReLU (the 64 **features**) → Conv 1×1 10 (the logits). 107,578 weights,
//! 430 kB as f32 safetensors, shipped in `trainer/assets/mnist-classifier.safetensors` and
//! embedded in the binary.
//!
//! Training ([`train`]): the 9,000 embedded training digits, each batch shifted by up to 2
//! pixels at random, dropout 0.3 on the features, cross-entropy, Adam (β 0.9, 0.999) with a
//! cosine learning-rate decay, He initialisation. Deterministic for a seed and thread count.
//! The 1,000 embedded test digits are never trained on; they give the held-out accuracy.

use crate::adam::{Adam, AdamConfig};
use crate::data::{self, Dataset};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use std::path::Path;
use wgan_models::latent::Rng;
use wgan_models::layers;
use wgan_models::spec::{Activation, LayerKind, LayerSpec, NetSpec, Norm, ParamRole};
use wgan_models::{Gradients, Params};

/// Side length of the images the classifier reads.
pub const IMAGE_SIZE: usize = 32;
/// Width of the penultimate layer (the features of the Fréchet distance).
pub const FEATURES: usize = 64;
/// Digit classes.
pub const CLASSES: usize = 10;

/// The shipped weights (`trainer classifier --out trainer/assets/mnist-classifier.safetensors`).
static EMBEDDED: &[u8] = include_bytes!("../assets/mnist-classifier.safetensors");

/// Held-out accuracy below which the classifier is not good enough to measure generators.
pub const MIN_ACCURACY: f64 = 0.98;

/// Images per forward pass at inference.
const BATCH: usize = 256;

/// The classifier's layers.
pub fn spec() -> NetSpec {
    let conv = |i, o, k, s, p, activation| LayerSpec {
        kind: LayerKind::Conv,
        in_channels: i,
        out_channels: o,
        kernel: k,
        stride: s,
        padding: p,
        bias: true,
        norm: Norm::None,
        activation,
    };
    use Activation::{None as Linear, Relu};
    NetSpec {
        prefix: "clf".into(),
        layers: vec![
            conv(1, 16, 4, 2, 1, Relu),
            conv(16, 32, 4, 2, 1, Relu),
            conv(32, 64, 4, 2, 1, Relu),
            conv(64, FEATURES, 4, 1, 0, Relu),
            conv(FEATURES, CLASSES, 1, 1, 0, Linear),
        ],
    }
}

/// What the classifier says about a set of images.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// `n × FEATURES`, row-major.
    pub features: Vec<f32>,
    /// `n × CLASSES` class probabilities (softmax of the logits), row-major.
    pub probabilities: Vec<f32>,
}

impl Outputs {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.features.len() / FEATURES
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// The most probable class of each image.
    pub fn predictions(&self) -> Vec<usize> {
        self.probabilities
            .chunks(CLASSES)
            .map(|p| {
                (0..CLASSES)
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                    .expect("ten classes")
            })
            .collect()
    }
}

/// The digit classifier (CPU, f32).
pub struct Classifier {
    spec: NetSpec,
    params: Params,
}

impl Classifier {
    /// The classifier shipped in the binary.
    pub fn embedded() -> Result<Self> {
        let tensors = candle_core::safetensors::load_buffer(EMBEDDED, &Device::Cpu).context(
            "the embedded digit classifier is damaged (rebuild with `trainer classifier`)",
        )?;
        let spec = spec();
        let params = Params::from_tensors(&spec, tensors, 0, DType::F32, &Device::Cpu)
            .context("the embedded digit classifier does not match its architecture")?;
        Ok(Self { spec, params })
    }

    /// Weights saved by [`Classifier::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let spec = spec();
        let params = Params::load(&spec, path, DType::F32, &Device::Cpu)?;
        Ok(Self { spec, params })
    }

    /// He-initialised weights (normal, std √(2 / fan-in)), zero biases; deterministic in `rng`.
    pub fn new(rng: &mut Rng) -> Result<Self> {
        let spec = spec();
        let mut tensors = std::collections::HashMap::new();
        for info in spec.params() {
            let n: usize = info.shape.iter().product();
            let values: Vec<f32> = match info.role {
                ParamRole::ConvWeight => {
                    let fan_in: usize = info.shape[1..].iter().product();
                    let std = (2.0 / fan_in as f32).sqrt();
                    (0..n).map(|_| std * rng.normal_f32()).collect()
                }
                _ => vec![0.0; n],
            };
            let t = Tensor::from_vec(values, info.shape.as_slice(), &Device::Cpu)?;
            tensors.insert(info.name.clone(), t);
        }
        let params = Params::from_tensors(&spec, tensors, 0, DType::F32, &Device::Cpu)?;
        Ok(Self { spec, params })
    }

    /// Writes the weights as safetensors (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.params.save(path)
    }

    /// `(features [N, FEATURES], logits [N, CLASSES])` of `x` `[N, 32, 32, 1]`; with
    /// `dropout = Some((p, rng))` the features are dropped with probability `p` (training).
    fn forward(
        &self,
        x: &Tensor,
        mut dropout: Option<(f32, &mut Rng)>,
    ) -> Result<(Tensor, Tensor)> {
        let last = self.spec.layers.len() - 1;
        let mut h = x.clone();
        let mut features = None;
        for (i, l) in self.spec.layers.iter().enumerate() {
            if i == last {
                let n = h.dim(0)?;
                let f = h.reshape((n, FEATURES))?;
                features = Some(f.clone());
                if let Some((p, rng)) = dropout.take() {
                    let keep: Vec<f32> = (0..n * FEATURES)
                        .map(|_| {
                            if rng.uniform_f32() < p {
                                0.0
                            } else {
                                1.0 / (1.0 - p)
                            }
                        })
                        .collect();
                    let mask = Tensor::from_vec(keep, (n, FEATURES), h.device())?;
                    h = (f * mask)?.reshape((n, 1, 1, FEATURES))?;
                }
            }
            let t = &self.params.layers()[i];
            let b = t.bias.as_ref().map(|b| b.tensor());
            h = layers::convolution(&h, l, t.weight.tensor(), b)?;
            h = layers::activation(&h, l.activation)?;
        }
        let n = h.dim(0)?;
        Ok((
            features.expect("set at the last layer"),
            h.reshape((n, CLASSES))?,
        ))
    }

    /// Features and class probabilities of `images` (32×32 grey, CHW each, concatenated, values
    /// in [-1, 1]).
    pub fn run(&self, images: &[f32]) -> Result<Outputs> {
        let dim = IMAGE_SIZE * IMAGE_SIZE;
        if !images.len().is_multiple_of(dim) {
            bail!("the classifier reads 1×{IMAGE_SIZE}×{IMAGE_SIZE} images");
        }
        let mut out = Outputs {
            features: Vec::with_capacity(images.len() / dim * FEATURES),
            probabilities: Vec::with_capacity(images.len() / dim * CLASSES),
        };
        for chunk in images.chunks(BATCH * dim) {
            let n = chunk.len() / dim;
            // One channel: CHW and HWC are the same layout.
            let x = Tensor::from_slice(chunk, (n, IMAGE_SIZE, IMAGE_SIZE, 1), &Device::Cpu)?;
            let (f, logits) = self.forward(&x, None)?;
            let p = candle_core::Tensor::exp(&log_softmax(&logits)?)?;
            out.features.extend(f.flatten_all()?.to_vec1::<f32>()?);
            out.probabilities.extend(p.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Fraction of `d`'s images whose most probable class is their label.
    pub fn accuracy(&self, d: &Dataset) -> Result<f64> {
        let labels = labels_of(d)?;
        let predicted = self.run(&d.images()?)?.predictions();
        let right = predicted
            .iter()
            .zip(labels)
            .filter(|(p, &l)| **p == l as usize)
            .count();
        Ok(right as f64 / d.len as f64)
    }
}

/// `logits − logsumexp(logits)` along the last dimension.
fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

fn labels_of(d: &Dataset) -> Result<&[u8]> {
    match &d.labels {
        Some(l) => Ok(l),
        None => bail!("{} has no labels", d.description),
    }
}

/// Settings of [`train`].
#[derive(Clone, Copy, Debug)]
pub struct TrainSettings {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (decays to 0 over the run, cosine).
    pub lr: f64,
    pub seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 64,
            lr: 2e-3,
            seed: 0,
        }
    }
}

/// One epoch's numbers.
#[derive(Clone, Copy, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub held_out_accuracy: f64,
}

/// Largest shift of the training augmentation, in pixels.
const MAX_SHIFT: i64 = 2;
/// Dropout probability on the features during training.
const DROPOUT: f32 = 0.3;

/// Trains a classifier on the embedded MNIST training digits; `on_epoch` sees each epoch's
/// loss and accuracy on the embedded test digits.
pub fn train(
    settings: TrainSettings,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<Classifier> {
    if settings.epochs == 0 || settings.batch_size == 0 {
        bail!("--epochs and --batch-size must be at least 1");
    }
    if !(settings.lr.is_finite() && settings.lr > 0.0) {
        bail!("--lr must be a positive number");
    }
    let train_set = data::embedded_mnist(1, IMAGE_SIZE)?;
    let test_set = data::embedded_mnist_test(1, IMAGE_SIZE)?;
    let labels = labels_of(&train_set)?.to_vec();
    let train_images = train_set.images()?;
    let mut rng = Rng::new(settings.seed);
    let model = Classifier::new(&mut rng)?;
    let config = AdamConfig {
        lr: settings.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut opt = Adam::new(config, &model.params)?;
    let b = settings.batch_size.min(train_set.len);
    let per_epoch = train_set.len / b;
    let total = (settings.epochs * per_epoch) as f64;
    let dim = IMAGE_SIZE * IMAGE_SIZE;
    let mut step = 0usize;
    for epoch in 1..=settings.epochs {
        let mut order: Vec<usize> = (0..train_set.len).collect();
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for batch in order.chunks_exact(b) {
            let mut x = Vec::with_capacity(b * dim);
            let mut onehot = vec![0f32; b * CLASSES];
            for (k, &i) in batch.iter().enumerate() {
                let dx = rng.below(2 * MAX_SHIFT as u64 + 1) as i64 - MAX_SHIFT;
                let dy = rng.below(2 * MAX_SHIFT as u64 + 1) as i64 - MAX_SHIFT;
                x.extend(shifted(&train_images[i * dim..(i + 1) * dim], dx, dy));
                onehot[k * CLASSES + labels[i] as usize] = 1.0;
            }
            let x = Tensor::from_vec(x, (b, IMAGE_SIZE, IMAGE_SIZE, 1), &Device::Cpu)?;
            let onehot = Tensor::from_vec(onehot, (b, CLASSES), &Device::Cpu)?;
            let (_, logits) = model.forward(&x, Some((DROPOUT, &mut rng)))?;
            let loss = (log_softmax(&logits)? * onehot)?
                .sum_all()?
                .affine(-1.0 / b as f64, 0.0)?;
            let grads = Gradients::from_grad_store(&model.params, &loss.backward()?)?;
            opt.config.lr =
                settings.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos());
            opt.step(&model.params, &grads)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            step += 1;
        }
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / per_epoch as f64,
            held_out_accuracy: model.accuracy(&test_set)?,
        };
        if !report.train_loss.is_finite() {
            bail!("classifier training diverged in epoch {epoch}: lower --lr");
        }
        on_epoch(&report);
    }
    Ok(model)
}

/// `img` (32×32, one channel) moved by `(dx, dy)` pixels; uncovered pixels are background (−1).
fn shifted(img: &[f32], dx: i64, dy: i64) -> Vec<f32> {
    let s = IMAGE_SIZE as i64;
    let mut out = vec![-1f32; img.len()];
    for y in 0..s {
        let sy = y - dy;
        if !(0..s).contains(&sy) {
            continue;
        }
        for x in 0..s {
            let sx = x - dx;
            if (0..s).contains(&sx) {
                out[(y * s + x) as usize] = img[(sy * s + sx) as usize];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifting_moves_pixels_and_fills_with_background() {
        let img: Vec<f32> = (0..IMAGE_SIZE * IMAGE_SIZE).map(|v| v as f32).collect();
        let s = shifted(&img, 2, -1);
        let at = |v: &[f32], x: usize, y: usize| v[y * IMAGE_SIZE + x];
        assert_eq!(at(&s, 5, 3), at(&img, 3, 4));
        assert_eq!(at(&s, 0, 3), -1.0);
        assert_eq!(at(&s, 5, IMAGE_SIZE - 1), -1.0);
        assert_eq!(shifted(&img, 0, 0), img);
    }

    #[test]
    fn the_architecture_is_small_and_ends_in_features_then_logits() {
        let n: usize = spec()
            .params()
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum();
        assert_eq!(n, 107_578);
        assert_eq!(spec().out_size(IMAGE_SIZE), 1);
    }

    #[test]
    fn the_embedded_classifier_reads_held_out_digits() {
        let test = data::embedded_mnist_test(1, IMAGE_SIZE).unwrap();
        let acc = Classifier::embedded().unwrap().accuracy(&test).unwrap();
        assert!(acc >= MIN_ACCURACY, "held-out accuracy {acc}");
    }

    #[test]
    fn probabilities_sum_to_one_and_features_are_non_negative() {
        let test = data::embedded_mnist_test(1, IMAGE_SIZE).unwrap();
        let out = Classifier::embedded()
            .unwrap()
            .run(&test.images().unwrap()[..5 * IMAGE_SIZE * IMAGE_SIZE])
            .unwrap();
        assert_eq!(out.len(), 5);
        for p in out.probabilities.chunks(CLASSES) {
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        assert!(out.features.iter().all(|&f| f >= 0.0));
    }
}
