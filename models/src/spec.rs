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
    /// The named preset these numbers are ([`PRESETS`]), or [`CUSTOM`].
    pub name: String,
    pub z_dim: usize,
    pub channels: usize,
    pub image_size: usize,
    /// The generator's width (see [`Architecture::g_width`]).
    pub g_width: usize,
    /// The critic's width (see [`Architecture::c_width`]).
    pub c_width: usize,
    pub generator: NetSpec,
    pub critic: NetSpec,
}

impl Preset {
    /// The four numbers this architecture is built from.
    pub fn architecture(&self) -> Architecture {
        Architecture {
            image_size: self.image_size,
            z_dim: self.z_dim,
            g_width: self.g_width,
            c_width: self.c_width,
        }
    }

    /// Values of every weight of both networks (buffers included).
    pub fn parameter_count(&self) -> usize {
        [&self.generator, &self.critic]
            .iter()
            .flat_map(|n| n.params())
            .map(|p| p.shape.iter().product::<usize>())
            .fold(0, usize::saturating_add)
    }
}

/// The numbers that define an architecture, channels aside. The layer lists follow from them
/// the way the reference DCGAN extends to any size (see [`Architecture::build`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Architecture {
    /// Side of the images in pixels: a power of two from [`MIN_IMAGE_SIZE`] to
    /// [`MAX_IMAGE_SIZE`].
    pub image_size: usize,
    /// Length of the latent vector.
    pub z_dim: usize,
    /// The generator's width (`features_g` of the reference): its layer at side `s` has
    /// `g_width · image_size / s` channels.
    pub g_width: usize,
    /// The critic's width (`features_d` of the reference): its layer at side `s` has
    /// `c_width · image_size / (2 s)` channels.
    pub c_width: usize,
}

/// Smallest image side an architecture is built for.
pub const MIN_IMAGE_SIZE: usize = 16;
/// Largest image side an architecture is built for.
pub const MAX_IMAGE_SIZE: usize = 256;
/// Largest latent size accepted.
pub const MAX_Z_DIM: usize = 65_536;
/// Name of an architecture that is none of the [`PRESETS`].
pub const CUSTOM: &str = "custom";

/// A named architecture.
#[derive(Clone, Copy, Debug)]
pub struct PresetEntry {
    pub name: &'static str,
    pub architecture: Architecture,
    /// Stride of the critic's last (4×4 → 1×1) convolution: any stride gives the same one
    /// output there; it is kept as each preset was first written.
    critic_last_stride: usize,
    /// One line for `--help`.
    pub about: &'static str,
}

/// The named architectures (the widths are the reference's `features_g` / `features_d`).
pub const PRESETS: &[PresetEntry] = &[
    PresetEntry {
        name: "dcgan64",
        architecture: Architecture {
            image_size: 64,
            z_dim: 100,
            g_width: 64,
            c_width: 64,
        },
        critic_last_stride: 2,
        about: "DCGAN-64 reference: 64×64, z 100, generator 1024→512→256→128, critic 64→128→256→512",
    },
    PresetEntry {
        name: "small",
        architecture: Architecture {
            image_size: 32,
            z_dim: 100,
            g_width: 32,
            c_width: 64,
        },
        critic_last_stride: 1,
        about: "32×32 (MNIST/CIFAR), z 100, generator 256→128→64, critic 64→128→256: trains on CPU in minutes",
    },
    PresetEntry {
        name: "tiny",
        architecture: Architecture {
            image_size: 16,
            z_dim: 8,
            g_width: 8,
            c_width: 16,
        },
        critic_last_stride: 1,
        about: "16×16, z 8, generator 32→16, critic 16→32: for tests",
    },
];

/// The names of [`PRESETS`], comma-separated.
pub fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Unknown preset name.
#[derive(Debug, thiserror::Error)]
#[error("unknown preset '{0}' (known: {names})", names = preset_names())]
pub struct UnknownPreset(pub String);

/// An architecture that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ArchitectureError {
    #[error("unknown preset '{0}' (known: {names})", names = preset_names())]
    UnknownPreset(String),
    #[error("image size {0} is not a power of two from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (--image-size)")]
    ImageSize(usize),
    #[error("a width of 0 leaves the {0} without channels: widths start at 1")]
    ZeroWidth(&'static str),
    #[error("latent size {0} is outside 1 to {MAX_Z_DIM} (--z-dim)")]
    ZDim(usize),
    #[error("images must have 1 or 3 channels, not {0}")]
    Channels(usize),
    #[error("the {what} width {width} at {size}×{size} gives layers of more channels than this machine can address")]
    TooWide {
        what: &'static str,
        width: usize,
        size: usize,
    },
}

impl From<UnknownPreset> for ArchitectureError {
    fn from(e: UnknownPreset) -> Self {
        ArchitectureError::UnknownPreset(e.0)
    }
}

impl Architecture {
    /// Doublings from the generator's 4×4 start to `image_size` (4 for 64×64).
    fn blocks(&self) -> usize {
        (self.image_size / 4).trailing_zeros() as usize
    }

    /// Checks every number (see the field docs) before anything is derived from them.
    pub fn validate(&self) -> Result<(), ArchitectureError> {
        let s = self.image_size;
        if !(MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(&s) || !s.is_power_of_two() {
            return Err(ArchitectureError::ImageSize(s));
        }
        if !(1..=MAX_Z_DIM).contains(&self.z_dim) {
            return Err(ArchitectureError::ZDim(self.z_dim));
        }
        for (what, width) in [("generator", self.g_width), ("critic", self.c_width)] {
            if width == 0 {
                return Err(ArchitectureError::ZeroWidth(what));
            }
            // The widest layer has `width · 2^blocks` channels and 16 · that² weights at most.
            let widest = width.checked_mul(1 << self.blocks());
            if widest
                .and_then(|w| w.checked_mul(w)?.checked_mul(16))
                .is_none()
            {
                return Err(ArchitectureError::TooWide {
                    what,
                    width,
                    size: s,
                });
            }
        }
        Ok(())
    }

    /// The named preset with these numbers, if any.
    fn entry(&self) -> Option<&'static PresetEntry> {
        PRESETS.iter().find(|p| p.architecture == *self)
    }

    /// Generator and critic for images of `channels` channels, named after the preset with
    /// these numbers or [`CUSTOM`]. With `n` = log2(image_size / 4) doublings:
    /// - generator: ConvT 4/1/0 from the latent to `g_width · 2^n` channels at 4×4, then
    ///   ConvT 4/2/1 halving the channels at each doubling down to `2 · g_width`, then a
    ///   ConvT 4/2/1 to the image channels with Tanh;
    /// - critic: Conv 4/2/1 from the image to `c_width` channels, Conv 4/2/1 doubling the
    ///   channels at each halving up to `c_width · 2^(n−1)` at 4×4, then Conv 4/s/0 to one
    ///   value.
    pub fn build(&self, channels: usize) -> Result<Preset, ArchitectureError> {
        self.validate()?;
        if channels != 1 && channels != 3 {
            return Err(ArchitectureError::Channels(channels));
        }
        let n = self.blocks();
        let entry = self.entry();
        let gen_widths: Vec<usize> = (0..n).map(|i| self.g_width << (n - i)).collect();
        let critic_widths: Vec<usize> = (0..n).map(|i| self.c_width << i).collect();
        let last_stride = entry.map_or(2, |e| e.critic_last_stride);
        let generator = generator_spec(self.z_dim, &gen_widths, channels);
        let critic = critic_spec(channels, &critic_widths, last_stride);
        debug_assert_eq!(generator.out_size(1), self.image_size);
        debug_assert_eq!(critic.out_size(self.image_size), 1);
        Ok(Preset {
            name: entry.map_or(CUSTOM, |e| e.name).to_string(),
            z_dim: self.z_dim,
            channels,
            image_size: self.image_size,
            g_width: self.g_width,
            c_width: self.c_width,
            generator,
            critic,
        })
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{s}×{s}, z {}, generator width {}, critic width {}",
            self.z_dim,
            self.g_width,
            self.c_width,
            s = self.image_size
        )
    }
}

/// An architecture's numbers as a checkpoint header or a run's configuration records them.
/// A number that is absent comes from the preset named beside it: files written before
/// architectures were sized freely have none, and a configuration built from flags has only
/// the ones given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchitectureNumbers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub g_width: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_width: Option<usize>,
}

impl ArchitectureNumbers {
    /// All four numbers of `preset`.
    pub fn of(preset: &Preset) -> Self {
        Self {
            image_size: Some(preset.image_size),
            z_dim: Some(preset.z_dim),
            g_width: Some(preset.g_width),
            c_width: Some(preset.c_width),
        }
    }

    /// How many of the four are given.
    pub fn given(&self) -> usize {
        [self.image_size, self.z_dim, self.g_width, self.c_width]
            .iter()
            .filter(|v| v.is_some())
            .count()
    }

    /// The architecture: each number given, else the one of preset `name`.
    pub fn resolve(&self, name: &str) -> Result<Architecture, UnknownPreset> {
        let pick = |value: Option<usize>, of: fn(Architecture) -> usize| match value {
            Some(v) => Ok(v),
            None => preset_architecture(name).map(of),
        };
        Ok(Architecture {
            image_size: pick(self.image_size, |a| a.image_size)?,
            z_dim: pick(self.z_dim, |a| a.z_dim)?,
            g_width: pick(self.g_width, |a| a.g_width)?,
            c_width: pick(self.c_width, |a| a.c_width)?,
        })
    }
}

/// The numbers of the preset `name`.
pub fn preset_architecture(name: &str) -> Result<Architecture, UnknownPreset> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.architecture)
        .ok_or_else(|| UnknownPreset(name.to_string()))
}

/// The preset `name` for images of `channels` channels (1 or 3).
pub fn preset(name: &str, channels: usize) -> Result<Preset, ArchitectureError> {
    preset_architecture(name)?.build(channels)
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
