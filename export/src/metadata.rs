//! `metadata_props` of an exported generator: what the runtime reads instead of a side file.
//! The keys and their meaning are the contract's ([`wgan_models::contract`]).

use crate::pb::StringStringEntryProto;
use wgan_models::checkpoint::CheckpointHeader;
use wgan_models::contract::{
    CHANNELS, C_WIDTH, DATASET, G_WIDTH, IMAGE_SIZE, LATENT, LATENT_FUNCTION, OUTPUT_RANGE,
    OUTPUT_RANGE_VALUE, PRESET, PRODUCER, STEP, Z_DIM,
};
use wgan_models::Preset;

/// The metadata entries, in the order of the contract's table.
pub fn entries(preset: &Preset, header: &CheckpointHeader) -> Vec<(&'static str, String)> {
    vec![
        (Z_DIM, preset.z_dim.to_string()),
        (CHANNELS, preset.channels.to_string()),
        (IMAGE_SIZE, preset.image_size.to_string()),
        (PRESET, preset.name.clone()),
        (G_WIDTH, preset.g_width.to_string()),
        (C_WIDTH, preset.c_width.to_string()),
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
