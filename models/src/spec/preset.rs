//! Architectures: the named presets ([`PRESETS`]) and custom sizes ([`Architecture`]), each
//! built into a [`Preset`], the generator's and critic's layer lists with the data shape they
//! agree on.

use super::*;
use serde::{Deserialize, Serialize};

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
