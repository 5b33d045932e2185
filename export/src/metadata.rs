//! `metadata_props` of an exported generator: what the runtime reads instead of a side file.
//!
//! | key | value |
//! |---|---|
//! | `wgan.z_dim` | latent size, e.g. `100` |
//! | `wgan.channels` | image channels, `1` or `3` |
//! | `wgan.image_size` | side length in pixels, e.g. `64` |
//! | `wgan.preset` | preset name, e.g. `dcgan64` |
//! | `wgan.step` | generator steps the checkpoint was trained for |
//! | `wgan.dataset` | the checkpoint's one-line data-set description |
//! | `wgan.output_range` | `-1,1` |
//! | `wgan.producer` | `wgan-export <version>` |
//! | `wgan.latent` | [`LATENT_FUNCTION`]: how `seed → z` is computed |

use crate::pb::StringStringEntryProto;
use wgan_models::checkpoint::CheckpointHeader;
use wgan_models::Preset;

pub const Z_DIM: &str = "wgan.z_dim";
pub const CHANNELS: &str = "wgan.channels";
pub const IMAGE_SIZE: &str = "wgan.image_size";
pub const PRESET: &str = "wgan.preset";
pub const STEP: &str = "wgan.step";
pub const DATASET: &str = "wgan.dataset";
pub const OUTPUT_RANGE: &str = "wgan.output_range";
pub const PRODUCER: &str = "wgan.producer";
pub const LATENT: &str = "wgan.latent";

/// Value of `wgan.output_range`.
pub const OUTPUT_RANGE_VALUE: &str = "-1,1";
/// Value of `wgan.latent`: the latent function of `wgan_runtime::latent`.
pub const LATENT_FUNCTION: &str = "xoshiro256++/splitmix64 box-muller v1";

/// The metadata entries, in the order of the table above.
pub fn entries(preset: &Preset, header: &CheckpointHeader) -> Vec<(&'static str, String)> {
    vec![
        (Z_DIM, preset.z_dim.to_string()),
        (CHANNELS, preset.channels.to_string()),
        (IMAGE_SIZE, preset.image_size.to_string()),
        (PRESET, preset.name.clone()),
        (STEP, header.step.to_string()),
        (DATASET, header.dataset.clone()),
        (OUTPUT_RANGE, OUTPUT_RANGE_VALUE.to_string()),
        (
            PRODUCER,
            format!("{} {}", crate::PRODUCER_NAME, crate::PRODUCER_VERSION),
        ),
        (LATENT, LATENT_FUNCTION.to_string()),
    ]
}

/// The entries as `metadata_props`.
pub fn props(preset: &Preset, header: &CheckpointHeader) -> Vec<StringStringEntryProto> {
    entries(preset, header)
        .into_iter()
        .map(|(key, value)| StringStringEntryProto {
            key: key.to_string(),
            value,
        })
        .collect()
}
