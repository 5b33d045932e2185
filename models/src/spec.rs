//! Architecture as data: a network is a list of [`LayerSpec`]s. The candle modules are built
//! from these lists and the ONNX exporter walks the same lists, so a preset is defined once.

use serde::{Deserialize, Serialize};

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

/// A complete architecture: generator, critic and the data shape they agree on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    pub z_dim: usize,
    pub channels: usize,
    pub image_size: usize,
    pub generator: NetSpec,
    pub critic: NetSpec,
}

/// Names accepted by [`preset`], with a one-line description each.
pub const PRESETS: &[(&str, &str)] = &[
    ("dcgan64", "DCGAN-64 reference: 64×64, z 100, generator 1024→512→256→128, critic 64→128→256→512"),
    ("small", "32×32 (MNIST/CIFAR), z 100, generator 256→128→64, critic 64→128→256: trains on CPU in minutes"),
    ("tiny", "16×16, z 8, generator 32→16, critic 16→32: for tests"),
];

/// Unknown preset name.
#[derive(Debug, thiserror::Error)]
#[error("unknown preset '{0}' (known: dcgan64, small, tiny)")]
pub struct UnknownPreset(pub String);

/// The preset `name` for images of `channels` channels (1 or 3).
pub fn preset(name: &str, channels: usize) -> Result<Preset, UnknownPreset> {
    let (z_dim, gen_widths, critic_widths, last_stride): (usize, &[usize], &[usize], usize) =
        match name {
            "dcgan64" => (100, &[1024, 512, 256, 128], &[64, 128, 256, 512], 2),
            "small" => (100, &[256, 128, 64], &[64, 128, 256], 1),
            "tiny" => (8, &[32, 16], &[16, 32], 1),
            other => return Err(UnknownPreset(other.to_string())),
        };
    let generator = generator_spec(z_dim, gen_widths, channels);
    let critic = critic_spec(channels, critic_widths, last_stride);
    let image_size = generator.out_size(1);
    debug_assert_eq!(critic.out_size(image_size), 1);
    Ok(Preset {
        name: name.to_string(),
        z_dim,
        channels,
        image_size,
        generator,
        critic,
    })
}

fn layer(
    kind: LayerKind,
    i: usize,
    o: usize,
    (s, p): (usize, usize),
    bias: bool,
    norm: Norm,
    a: Activation,
) -> LayerSpec {
    LayerSpec {
        kind,
        in_channels: i,
        out_channels: o,
        kernel: 4,
        stride: s,
        padding: p,
        bias,
        norm,
        activation: a,
    }
}

/// DCGAN generator: ConvT 4/1/0 from the latent, ConvT 4/2/1 doublings with BatchNorm + ReLU,
/// a final ConvT 4/2/1 with bias and Tanh.
fn generator_spec(z_dim: usize, widths: &[usize], channels: usize) -> NetSpec {
    use {Activation::*, LayerKind::ConvTranspose};
    let mut layers = vec![layer(
        ConvTranspose,
        z_dim,
        widths[0],
        (1, 0),
        false,
        Norm::Batch,
        Relu,
    )];
    for w in widths.windows(2) {
        layers.push(layer(
            ConvTranspose,
            w[0],
            w[1],
            (2, 1),
            false,
            Norm::Batch,
            Relu,
        ));
    }
    layers.push(layer(
        ConvTranspose,
        *widths.last().unwrap(),
        channels,
        (2, 1),
        true,
        Norm::None,
        Tanh,
    ));
    NetSpec {
        prefix: "net".into(),
        layers,
    }
}

/// WGAN-GP critic: Conv 4/2/1 with bias + LeakyReLU, Conv 4/2/1 halvings with
/// InstanceNorm(affine) + LeakyReLU, a final Conv 4/s/0 with bias to one scalar. No BatchNorm.
fn critic_spec(channels: usize, widths: &[usize], last_stride: usize) -> NetSpec {
    use {Activation::*, LayerKind::Conv};
    let mut layers = vec![layer(
        Conv,
        channels,
        widths[0],
        (2, 1),
        true,
        Norm::None,
        LeakyRelu,
    )];
    for w in widths.windows(2) {
        layers.push(layer(
            Conv,
            w[0],
            w[1],
            (2, 1),
            false,
            Norm::Instance,
            LeakyRelu,
        ));
    }
    layers.push(layer(
        Conv,
        *widths.last().unwrap(),
        1,
        (last_stride, 0),
        true,
        Norm::None,
        None,
    ));
    NetSpec {
        prefix: "disc".into(),
        layers,
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
        for (name, _) in PRESETS {
            for c in [1, 3] {
                let p = preset(name, c).unwrap();
                assert_eq!(p.critic.out_size(p.image_size), 1, "{name}");
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
}
