//! The JSON the server answers with, typed: [`ModelDescription`] (`GET /v1/model`) and
//! [`ImagesJson`] (`POST /v1/generate` with the `json` format). Errors are
//! [`super::error::ErrorBody`]; the request is [`super::request::GenerateRequest`].

use crate::onnx::BatchDim;
use crate::Generator;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// `GET /v1/model`: the model's contract and metadata (as `runtime info` shows them) and this
/// server's limits, which the page at `/` sizes its requests by.
#[derive(Clone, Debug, Serialize)]
pub struct ModelDescription {
    /// The model file's name as given to `runtime serve`.
    pub model: String,
    pub input: String,
    pub output: String,
    /// A number, or `"dynamic"`.
    #[serde(serialize_with = "batch_dim")]
    pub batch: BatchDim,
    pub z_dim: usize,
    /// `[C, H, W]` of one image.
    pub image: [usize; 3],
    /// Weight values in the file.
    pub parameters: u64,
    /// The backend running the model, as `runtime gen` prints it.
    pub backend: String,
    /// The file's `metadata_props`.
    pub metadata: BTreeMap<String, String>,
    pub limits: Limits,
}

/// What one request may ask for.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Limits {
    pub max_images_per_request: usize,
    pub max_image_index: u64,
    pub max_walk_frames: usize,
    pub max_walk_seeds: usize,
    pub min_truncation: f32,
}

impl ModelDescription {
    /// Describes `generator`, loaded from `name`, served with at most `max_images` per request.
    pub fn of(generator: &Generator, name: &str, max_images: usize) -> ModelDescription {
        let contract = generator.contract();
        let info = generator.info();
        ModelDescription {
            model: name.to_string(),
            input: contract.input.clone(),
            output: contract.output.clone(),
            batch: contract.batch,
            z_dim: contract.z_dim,
            image: generator.image_shape(),
            parameters: info.parameters,
            backend: generator.describe(),
            metadata: info.metadata.iter().cloned().collect(),
            limits: Limits {
                max_images_per_request: max_images,
                max_image_index: super::request::MAX_IMAGE_INDEX - 1,
                max_walk_frames: crate::latent::MAX_FRAMES,
                max_walk_seeds: crate::walk::MAX_WALK_SEEDS,
                min_truncation: crate::latent::MIN_TRUNCATION,
            },
        }
    }
}

fn batch_dim<S: Serializer>(batch: &BatchDim, s: S) -> Result<S::Ok, S::Error> {
    match batch {
        BatchDim::Dynamic => s.serialize_str("dynamic"),
        BatchDim::Fixed(n) => s.serialize_u64(*n as u64),
    }
}

/// Where a request's images come from. `seed` is null for walks and explicit latents.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Source {
    Seed {
        seed: u64,
        first: u64,
        truncation: Option<f32>,
    },
    Walk {
        seed: Option<u64>,
        walk: WalkSource,
        first: usize,
        truncation: Option<f32>,
    },
    Latents {
        seed: Option<u64>,
    },
}

/// A walk's key seeds and its number of frames.
#[derive(Clone, Debug, Serialize)]
pub struct WalkSource {
    pub seeds: Vec<u64>,
    pub frames: usize,
}

/// `POST /v1/generate` in the `json` format: where the images come from, how many, the shape
/// of one, and each as a base64 PNG.
#[derive(Debug, Serialize)]
pub struct ImagesJson {
    #[serde(flatten)]
    pub source: Source,
    pub n: usize,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    pub images: Vec<String>,
}
