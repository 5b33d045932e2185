//! The ONNX generator contract: what the exporter writes and the runtime checks, defined once.
//!
//! A generator file maps latents to images, `z [N, z_dim, 1, 1] → image [N, C, H, W]`, f32,
//! images in `[-1, 1]`; `N` is the symbolic [`BATCH_SYMBOL`] (one file for every batch size) or
//! a fixed number ([`BatchDim`]). The latents are [`crate::latent::latents`]. The file's
//! `metadata_props` carry:
//!
//! | key | value |
//! |---|---|
//! | [`Z_DIM`] `wgan.z_dim` | latent size, e.g. `100` |
//! | [`CHANNELS`] `wgan.channels` | image channels, `1` or `3` |
//! | [`IMAGE_SIZE`] `wgan.image_size` | side length in pixels, e.g. `64` |
//! | [`PRESET`] `wgan.preset` | preset name, e.g. `dcgan64`, or `custom` |
//! | [`G_WIDTH`] `wgan.g_width` | the generator's width (`features_g`), e.g. `64` |
//! | [`C_WIDTH`] `wgan.c_width` | the critic's width (`features_d`) it was trained against |
//! | [`STEP`] `wgan.step` | generator steps the checkpoint was trained for |
//! | [`DATASET`] `wgan.dataset` | the checkpoint's one-line data-set description |
//! | [`OUTPUT_RANGE`] `wgan.output_range` | [`OUTPUT_RANGE_VALUE`], `-1,1` |
//! | [`PRODUCER`] `wgan.producer` | `wgan-export <version>` |
//! | [`LATENT`] `wgan.latent` | [`LATENT_FUNCTION`]: how `seed → z` is computed |
//!
//! Files from other exporters are accepted when their shapes fit (other names, no metadata);
//! the runtime then notes each departure.

use std::fmt;
use std::str::FromStr;

/// Name of the graph input (the latents).
pub const INPUT_NAME: &str = "z";
/// Name of the graph output (the images).
pub const OUTPUT_NAME: &str = "image";
/// Name of the symbolic batch dimension.
pub const BATCH_SYMBOL: &str = "N";

/// Prefix of every metadata key of the contract.
pub const METADATA_PREFIX: &str = "wgan.";
pub const Z_DIM: &str = "wgan.z_dim";
pub const CHANNELS: &str = "wgan.channels";
pub const IMAGE_SIZE: &str = "wgan.image_size";
pub const PRESET: &str = "wgan.preset";
pub const G_WIDTH: &str = "wgan.g_width";
pub const C_WIDTH: &str = "wgan.c_width";
pub const STEP: &str = "wgan.step";
pub const DATASET: &str = "wgan.dataset";
pub const OUTPUT_RANGE: &str = "wgan.output_range";
pub const PRODUCER: &str = "wgan.producer";
pub const LATENT: &str = "wgan.latent";

/// Value of [`OUTPUT_RANGE`].
pub const OUTPUT_RANGE_VALUE: &str = "-1,1";
/// Value of [`LATENT`]: the latent function of [`crate::latent`].
pub const LATENT_FUNCTION: &str = "xoshiro256++/splitmix64 box-muller v1";

/// The batch dimension of the graph's input and output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchDim {
    /// Symbolic: one file for every batch size.
    #[default]
    Dynamic,
    /// A fixed batch size: larger runs are split (and the last batch padded).
    Fixed(usize),
}

/// A batch dimension that is neither `dynamic` nor a batch size of at least 1.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BadBatchDim {
    #[error("the batch size must be at least 1")]
    Zero,
    #[error("'{0}' is neither 'dynamic' nor a batch size")]
    NotABatchSize(String),
}

impl FromStr for BatchDim {
    type Err = BadBatchDim;

    /// `dynamic` or a batch size of at least 1.
    fn from_str(s: &str) -> Result<Self, BadBatchDim> {
        if s.eq_ignore_ascii_case("dynamic") {
            return Ok(BatchDim::Dynamic);
        }
        match s.parse::<usize>() {
            Ok(0) => Err(BadBatchDim::Zero),
            Ok(n) => Ok(BatchDim::Fixed(n)),
            Err(_) => Err(BadBatchDim::NotABatchSize(s.to_string())),
        }
    }
}

impl fmt::Display for BatchDim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchDim::Dynamic => write!(f, "dynamic ({BATCH_SYMBOL})"),
            BatchDim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_dim_parses_dynamic_or_a_positive_size() {
        assert_eq!("dynamic".parse::<BatchDim>(), Ok(BatchDim::Dynamic));
        assert_eq!("8".parse::<BatchDim>(), Ok(BatchDim::Fixed(8)));
        assert!("0".parse::<BatchDim>().is_err() && "big".parse::<BatchDim>().is_err());
        assert_eq!(BatchDim::Dynamic.to_string(), "dynamic (N)");
    }
}
