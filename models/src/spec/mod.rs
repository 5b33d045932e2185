//! Architecture as data: a network is a list of [`LayerSpec`]s. The candle modules are built
//! from these lists and the ONNX exporter walks the same lists, so a preset is defined once.
//! The architectures themselves (named presets and custom sizes) are in [`preset`].

use serde::{Deserialize, Serialize};

mod preset;
pub use preset::*;

pub use crate::tensors::{
    batches_tracked_name, LayerTensors, NormTensors, ParamInfo, ParamRole, RunningStats,
};

/// Convolution direction of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// `nn.Conv2d`: weight `[out, in, k, k]`.
    Conv,
    /// `nn.ConvTranspose2d`: weight `[in, out, k, k]`.
    ConvTranspose,
}

/// Normalisation after the convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    None,
    /// `nn.BatchNorm2d` (eps 1e-5, momentum 0.1) with running statistics.
    Batch,
    /// `nn.InstanceNorm2d(affine=True)` (eps 1e-5), no running statistics.
    Instance,
}

/// Activation after the normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    None,
    Relu,
    /// Leaky ReLU with slope [`LEAKY_SLOPE`].
    LeakyRelu,
    Tanh,
}

/// Negative slope of the critic's leaky ReLU.
pub const LEAKY_SLOPE: f64 = 0.2;
/// Epsilon of BatchNorm and InstanceNorm (PyTorch's default).
pub const NORM_EPS: f64 = 1e-5;
/// BatchNorm running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// Eval-mode BatchNorm as the per-channel affine map it is, `y = x·scale + shift` with
/// `scale = γ / √(σ² + ε)` and `shift = β − μ·scale` (running mean μ, running variance σ²),
/// computed in f64. The one formula the exporter (folding into the convolution before) and the
/// runtime's native backend (lowering BatchNormalization nodes) both use. The four slices have
/// one value per channel (callers check the lengths).
pub fn batch_norm_affine(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    let scale: Vec<f64> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| g as f64 / (v as f64 + eps).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| b as f64 - m as f64 * s)
        .collect();
    (scale, shift)
}

/// One convolution block: conv → optional norm → optional activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    pub kind: LayerKind,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub bias: bool,
    pub norm: Norm,
    pub activation: Activation,
}

impl LayerSpec {
    /// Output side length for an input of side `n`.
    pub fn out_size(&self, n: usize) -> usize {
        match self.kind {
            LayerKind::Conv => (n + 2 * self.padding - self.kernel) / self.stride + 1,
            LayerKind::ConvTranspose => (n - 1) * self.stride + self.kernel - 2 * self.padding,
        }
    }

    /// Shape of the convolution weight, in PyTorch's layout.
    pub fn weight_shape(&self) -> [usize; 4] {
        let k = self.kernel;
        match self.kind {
            LayerKind::Conv => [self.out_channels, self.in_channels, k, k],
            LayerKind::ConvTranspose => [self.in_channels, self.out_channels, k, k],
        }
    }
}

/// Module paths of one layer, in the PyTorch reference's naming (used for ONNX node names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerNames {
    pub conv: String,
    /// Path of the norm module (`{norm}.weight`, …) when the layer has a norm.
    pub norm: Option<String>,
}

/// A network: its `state_dict` prefix (`net` or `disc`) and its layers in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    pub prefix: String,
    pub layers: Vec<LayerSpec>,
}

impl NetSpec {
    /// Names of each layer following the PyTorch reference module: a layer with a norm is an
    /// `nn.Sequential(conv, norm, act)` at index k (`prefix.k.0`, `prefix.k.1`); a layer without
    /// one puts its conv at k and its activation, if any, at k + 1.
    pub fn layer_names(&self) -> Vec<LayerNames> {
        let mut k = 0;
        let mut out = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            if l.norm == Norm::None {
                out.push(LayerNames {
                    conv: format!("{}.{k}", self.prefix),
                    norm: None,
                });
                k += if l.activation == Activation::None {
                    1
                } else {
                    2
                };
            } else {
                out.push(LayerNames {
                    conv: format!("{}.{k}.0", self.prefix),
                    norm: Some(format!("{}.{k}.1", self.prefix)),
                });
                k += 1;
            }
        }
        out
    }

    /// Every layer's tensors with their names, shapes and roles: the one place they are derived.
    pub fn layer_tensors(&self) -> Vec<LayerTensors<ParamInfo>> {
        self.layers
            .iter()
            .zip(self.layer_names())
            .enumerate()
            .map(|(layer, (l, names))| {
                let info = |name: String, shape: Vec<usize>, role| ParamInfo {
                    name,
                    shape,
                    role,
                    layer,
                };
                let c = vec![l.out_channels];
                LayerTensors {
                    weight: info(
                        format!("{}.weight", names.conv),
                        l.weight_shape().to_vec(),
                        ParamRole::ConvWeight,
                    ),
                    bias: l.bias.then(|| {
                        info(
                            format!("{}.bias", names.conv),
                            c.clone(),
                            ParamRole::ConvBias,
                        )
                    }),
                    norm: names.norm.as_ref().map(|n| NormTensors {
                        weight: info(format!("{n}.weight"), c.clone(), ParamRole::NormWeight),
                        bias: info(format!("{n}.bias"), c.clone(), ParamRole::NormBias),
                        running: (l.norm == Norm::Batch).then(|| RunningStats {
                            mean: info(
                                format!("{n}.running_mean"),
                                c.clone(),
                                ParamRole::RunningMean,
                            ),
                            var: info(format!("{n}.running_var"), c.clone(), ParamRole::RunningVar),
                        }),
                    }),
                }
            })
            .collect()
    }

    /// Every tensor of the network (trainable ones and buffers), in layer order.
    pub fn params(&self) -> Vec<ParamInfo> {
        self.layer_tensors()
            .iter()
            .flat_map(|l| l.iter().cloned())
            .collect()
    }

    /// Output side length for an input of side `n`.
    pub fn out_size(&self, n: usize) -> usize {
        self.layers.iter().fold(n, |s, l| l.out_size(s))
    }

    /// Values of every layer's output together, per sample, for an input of side `n` (what
    /// one sample's activations hold; the memory checks scale it).
    pub fn activation_values(&self, n: usize) -> usize {
        let mut side = n;
        self.layers
            .iter()
            .map(|l| {
                side = l.out_size(side);
                l.out_channels * side * side
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcgan64_matches_the_reference_table() {
        let p = preset("dcgan64", 3).unwrap();
        assert_eq!((p.z_dim, p.image_size), (100, 64));
        let mut side = 1;
        let gen_out: Vec<(usize, usize)> = p
            .generator
            .layers
            .iter()
            .map(|l| {
                side = l.out_size(side);
                (l.out_channels, side)
            })
            .collect();
        assert_eq!(
            gen_out,
            [(1024, 4), (512, 8), (256, 16), (128, 32), (3, 64)]
        );
        let mut side = 64;
        let critic_out: Vec<(usize, usize)> = p
            .critic
            .layers
            .iter()
            .map(|l| {
                side = l.out_size(side);
                (l.out_channels, side)
            })
            .collect();
        assert_eq!(
            critic_out,
            [(64, 32), (128, 16), (256, 8), (512, 4), (1, 1)]
        );
        assert!(p.critic.layers.iter().all(|l| l.norm != Norm::Batch));
        assert_eq!(p.critic.layers[4].stride, 2);
    }

    #[test]
    fn names_follow_the_pytorch_reference() {
        let p = preset("dcgan64", 1).unwrap();
        let g: Vec<String> = p.generator.params().into_iter().map(|i| i.name).collect();
        assert_eq!(
            g[..6],
            [
                "net.0.0.weight",
                "net.0.1.weight",
                "net.0.1.bias",
                "net.0.1.running_mean",
                "net.0.1.running_var",
                "net.1.0.weight"
            ]
        );
        assert_eq!(g[g.len() - 2..], ["net.4.weight", "net.4.bias"]);
        let c: Vec<String> = p.critic.params().into_iter().map(|i| i.name).collect();
        assert_eq!(
            c,
            [
                "disc.0.weight",
                "disc.0.bias",
                "disc.2.0.weight",
                "disc.2.1.weight",
                "disc.2.1.bias",
                "disc.3.0.weight",
                "disc.3.1.weight",
                "disc.3.1.bias",
                "disc.4.0.weight",
                "disc.4.1.weight",
                "disc.4.1.bias",
                "disc.5.weight",
                "disc.5.bias",
            ]
        );
    }

    #[test]
    fn every_preset_round_trips_its_image_size() {
        for entry in PRESETS {
            for c in [1, 3] {
                let p = preset(entry.name, c).unwrap();
                assert_eq!(p.name, entry.name);
                assert_eq!(p.architecture(), entry.architecture);
                assert_eq!(p.critic.out_size(p.image_size), 1, "{}", entry.name);
                assert_eq!(p.generator.layers.last().unwrap().out_channels, c);
            }
        }
        assert_eq!(preset("small", 1).unwrap().image_size, 32);
        assert_eq!(preset("tiny", 1).unwrap().image_size, 16);
        assert!(preset("resnet", 1)
            .unwrap_err()
            .to_string()
            .contains("unknown preset 'resnet'"));
    }

    /// The channel list of a network, first input to last output.
    fn widths(net: &NetSpec) -> Vec<usize> {
        let mut w = vec![net.layers[0].in_channels];
        w.extend(net.layers.iter().map(|l| l.out_channels));
        w
    }

    #[test]
    fn the_presets_are_the_layer_lists_they_were_written_as() {
        let small = preset("small", 1).unwrap();
        assert_eq!(widths(&small.generator), [100, 256, 128, 64, 1]);
        assert_eq!(widths(&small.critic), [1, 64, 128, 256, 1]);
        let tiny = preset("tiny", 3).unwrap();
        assert_eq!(widths(&tiny.generator), [8, 32, 16, 3]);
        assert_eq!(widths(&tiny.critic), [3, 16, 32, 1]);
        assert_eq!(tiny.critic.layers.last().unwrap().stride, 1);
        let dcgan = preset("dcgan64", 3).unwrap();
        assert_eq!(widths(&dcgan.generator), [100, 1024, 512, 256, 128, 3]);
    }

    #[test]
    fn any_power_of_two_from_16_to_256_builds_and_round_trips() {
        for s in [16, 32, 64, 128, 256] {
            let a = Architecture {
                image_size: s,
                z_dim: 7,
                g_width: 3,
                c_width: 5,
            };
            let p = a.build(3).unwrap();
            assert_eq!(p.name, CUSTOM);
            assert_eq!(p.generator.out_size(1), s);
            assert_eq!(p.critic.out_size(s), 1);
            assert_eq!(p.architecture(), a);
            // One block per doubling, the same kernel, stride and padding as the reference.
            let n = (s / 4).trailing_zeros() as usize;
            assert_eq!(p.generator.layers.len(), n + 1);
            assert_eq!(p.critic.layers.len(), n + 1);
            assert!(p.generator.layers[1..]
                .iter()
                .all(|l| (l.kernel, l.stride, l.padding) == (4, 2, 1)));
            assert_eq!(widths(&p.generator)[1], 3 << n);
            assert_eq!(widths(&p.critic)[n], 5 << (n - 1));
        }
        // 128×128 with width 4: 4·32 = 128 channels at 4×4 down to 8; the critic 4 up to 64.
        let p = Architecture {
            image_size: 128,
            z_dim: 16,
            g_width: 4,
            c_width: 4,
        }
        .build(1)
        .unwrap();
        assert_eq!(widths(&p.generator), [16, 128, 64, 32, 16, 8, 1]);
        assert_eq!(widths(&p.critic), [1, 4, 8, 16, 32, 64, 1]);
        // The numbers of a preset give the preset, by name.
        assert_eq!(
            preset_architecture("small").unwrap().build(1).unwrap(),
            preset("small", 1).unwrap()
        );
    }

    #[test]
    fn bad_architectures_are_errors_naming_the_number() {
        let base = preset_architecture("small").unwrap();
        for s in [0, 8, 24, 48, 512, 1000] {
            let e = Architecture {
                image_size: s,
                ..base
            }
            .build(1)
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!("image size {s} ")) && e.contains("power of two"),
                "{e}"
            );
        }
        let e = Architecture { g_width: 0, ..base }
            .build(1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("width of 0") && e.contains("generator"), "{e}");
        let e = Architecture { c_width: 0, ..base }
            .build(1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("critic"), "{e}");
        let e = Architecture { z_dim: 0, ..base }
            .build(1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("latent size 0"), "{e}");
        let e = Architecture {
            g_width: usize::MAX / 4,
            ..base
        }
        .build(1)
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("more channels than this machine can address"),
            "{e}"
        );
        assert!(base
            .build(2)
            .unwrap_err()
            .to_string()
            .contains("1 or 3 channels"));
    }
}
