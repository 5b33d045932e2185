//! `POST /v1/generate`'s body and `Accept` header, checked: which images (a window of a seed's
//! images, a window of a latent walk's frames, or explicit latents) and in which format.

use super::bodies::{Source, WalkSource};
use super::error::ApiError;
use crate::latent;
use crate::walk::Walk;
use axum::http::{header, HeaderMap};
use serde::Deserialize;

/// Images `0..MAX_IMAGE_INDEX` of a seed can be asked for (`first + n` at most this): reaching
/// image `first` skips `2 · first · z_dim` draws of the stream, a fraction of a second here.
pub const MAX_IMAGE_INDEX: u64 = 1_000_000;

/// `POST /v1/generate`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// How many images: `first..first + n` of `seed` (as `runtime gen --n N --seed S` writes
    /// them), or of `walk`'s frames (default: the rest of the walk).
    pub n: Option<usize>,
    pub seed: Option<u64>,
    /// The first image's index (default 0), so a client can ask for a batch in parts.
    pub first: Option<u64>,
    /// Truncation ψ of the seed's (or the walk's key) latents, as `runtime gen --truncation`.
    pub truncation: Option<f32>,
    /// A latent walk, as `runtime gen --interpolate SEEDS --frames FRAMES`.
    pub walk: Option<WalkRequest>,
    /// Explicit latents, one row of `z_dim` values per image.
    pub z: Option<Vec<Vec<f32>>>,
    /// `png` (one grid), `npy` (`[N, C, H, W]` f32), `json` (base64 PNGs) or `zip` (one PNG per
    /// image, named as `runtime gen --out` names them); otherwise from the `Accept` header, PNG
    /// by default.
    pub format: Option<String>,
    /// Grid columns for `png` (default: about square).
    pub cols: Option<usize>,
}

/// `"walk": {"seeds": [A, B, …], "frames": N}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalkRequest {
    pub seeds: Vec<u64>,
    pub frames: usize,
}

/// The images a request asks for, checked against the model and the server's limits.
#[derive(Debug)]
pub enum Images {
    /// Images `first..first + n` of `seed`.
    Seed {
        seed: u64,
        first: u64,
        n: usize,
        truncation: Option<f32>,
    },
    /// Frames `first..first + n` of `walk`.
    Walk { walk: Walk, first: usize, n: usize },
    /// `n` rows of explicit latents.
    Latents { z: Vec<f32>, n: usize },
}

impl Images {
    /// Checks what `req` asks for (taking its latents, if any) against `z_dim` and at most
    /// `max` images per request.
    pub fn of(req: &mut GenerateRequest, z_dim: usize, max: usize) -> Result<Images, ApiError> {
        let over = |what: String| {
            ApiError::bad(format!(
                "{what}; this server makes at most {max} images per request"
            ))
        };
        if let Some(psi) = req.truncation {
            latent::check_truncation(psi, "\"truncation\"")
                .map_err(|e| ApiError::bad(e.to_string()))?;
        }
        if let Some(rows) = req.z.take() {
            if req.n.is_some() {
                return Err(ApiError::bad("give either \"n\" or \"z\", not both"));
            }
            for (field, given) in [
                ("seed", req.seed.is_some()),
                ("first", req.first.is_some()),
                ("truncation", req.truncation.is_some()),
                ("walk", req.walk.is_some()),
            ] {
                if given {
                    return Err(ApiError::bad(format!(
                        "\"{field}\" does not go with \"z\", which gives the latents themselves"
                    )));
                }
            }
            return latents_rows(rows, z_dim, max, over);
        }
        let first = req.first.unwrap_or(0);
        if req.n == Some(0) {
            return Err(ApiError::bad("\"n\" must be at least 1"));
        }
        if let Some(w) = &req.walk {
            if req.seed.is_some() {
                return Err(ApiError::bad(
                    "\"seed\" does not go with \"walk\": a walk's seeds are its \"seeds\"",
                ));
            }
            let walk = Walk::new(w.seeds.clone(), w.frames, req.truncation)
                .map_err(|e| ApiError::bad(format!("\"walk\": {e}")))?;
            let frames = walk.frames;
            if first >= frames as u64 {
                return Err(ApiError::bad(format!(
                    "\"first\" is {first}; the walk's frames are 0 to {}",
                    frames - 1
                )));
            }
            let first = first as usize;
            let n = match req.n {
                Some(n) if n > frames - first => {
                    return Err(ApiError::bad(format!(
                        "\"first\" {first} and \"n\" {n} go past the walk's {frames} frames"
                    )))
                }
                Some(n) if n > max => return Err(over(format!("\"n\" is {n}"))),
                Some(n) => n,
                None if frames - first > max => {
                    return Err(over(format!(
                        "the walk's frames {first} to {} are {} images (ask for them in parts with \"first\" and \"n\")",
                        frames - 1,
                        frames - first
                    )))
                }
                None => frames - first,
            };
            return Ok(Images::Walk { walk, first, n });
        }
        let Some(n) = req.n else {
            return Err(ApiError::bad(
                "give \"n\" (images 0..n of \"seed\", default 0), \"walk\" or \"z\" (latents, one row per image)",
            ));
        };
        if n > max {
            return Err(over(format!("\"n\" is {n}")));
        }
        if first.saturating_add(n as u64) > MAX_IMAGE_INDEX {
            return Err(ApiError::bad(format!(
                "\"first\" {first} and \"n\" {n} go past image {}, the last this server draws from a seed",
                MAX_IMAGE_INDEX - 1
            )));
        }
        Ok(Images::Seed {
            seed: req.seed.unwrap_or(0),
            first,
            n,
            truncation: req.truncation,
        })
    }

    /// How many images.
    pub fn n(&self) -> usize {
        match self {
            Images::Seed { n, .. } | Images::Walk { n, .. } | Images::Latents { n, .. } => *n,
        }
    }

    /// The first image's index (0 for explicit latents): where `zip` entry names start.
    pub fn first(&self) -> u64 {
        match self {
            Images::Seed { first, .. } => *first,
            Images::Walk { first, .. } => *first as u64,
            Images::Latents { .. } => 0,
        }
    }

    /// The latents, `n · z_dim` values. Up to a second of work for a window far into a seed's
    /// stream: call it off the async workers.
    pub fn latents(self, z_dim: usize) -> Vec<f32> {
        match self {
            Images::Seed {
                seed,
                first,
                n,
                truncation,
            } => {
                let mut z = latent::latents_from(seed, first, n, z_dim);
                if let Some(psi) = truncation {
                    latent::truncate(&mut z, seed, first, z_dim, psi);
                }
                z
            }
            Images::Walk { walk, first, n } => walk.frame_latents(z_dim, first..first + n),
            Images::Latents { z, .. } => z,
        }
    }

    /// Where the images come from, for the JSON answer.
    pub fn source(&self) -> Source {
        match self {
            Images::Seed {
                seed,
                first,
                truncation,
                ..
            } => Source::Seed {
                seed: *seed,
                first: *first,
                truncation: *truncation,
            },
            Images::Walk { walk, first, .. } => Source::Walk {
                seed: None,
                walk: WalkSource {
                    seeds: walk.seeds.clone(),
                    frames: walk.frames,
                },
                first: *first,
                truncation: walk.truncation,
            },
            Images::Latents { .. } => Source::Latents { seed: None },
        }
    }
}

/// Explicit latents, checked: `1..=max` rows of `z_dim` finite values.
fn latents_rows(
    rows: Vec<Vec<f32>>,
    z_dim: usize,
    max: usize,
    over: impl Fn(String) -> ApiError,
) -> Result<Images, ApiError> {
    if rows.is_empty() {
        return Err(ApiError::bad("\"z\" holds no latents"));
    }
    if rows.len() > max {
        return Err(over(format!("\"z\" holds {} latents", rows.len())));
    }
    let mut z = Vec::with_capacity(rows.len() * z_dim);
    for (i, row) in rows.iter().enumerate() {
        if row.len() != z_dim {
            return Err(ApiError::bad(format!(
                "\"z\"[{i}] has {} values; this model's latents have {z_dim}",
                row.len()
            )));
        }
        if row.iter().any(|v| !v.is_finite()) {
            return Err(ApiError::bad(format!(
                "\"z\"[{i}] holds a non-finite value"
            )));
        }
        z.extend_from_slice(row);
    }
    Ok(Images::Latents { n: rows.len(), z })
}

/// A response format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Npy,
    Json,
    Zip,
}

pub fn format_of(request: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
    if let Some(f) = request {
        return match f {
            "png" => Ok(Format::Png),
            "npy" => Ok(Format::Npy),
            "json" => Ok(Format::Json),
            "zip" => Ok(Format::Zip),
            other => Err(ApiError::bad(format!(
                "unknown format '{other}': use png, npy, json or zip"
            ))),
        };
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format::Png);
    };
    // The media ranges by preference: highest `q` first, then in the order given; `q=0` means
    // "not this one" (RFC 9110, 12.5.1).
    let mut ranges: Vec<(f32, usize, &str)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, item)| {
            let mut parts = item.split(';');
            let media = parts.next()?.trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (q > 0.0).then_some((q, i, media))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, media) in ranges {
        match media {
            "image/png" | "image/*" | "*/*" | "" => return Ok(Format::Png),
            "application/x-npy" | "application/octet-stream" => return Ok(Format::Npy),
            "application/json" => return Ok(Format::Json),
            "application/zip" => return Ok(Format::Zip),
            _ => {}
        }
    }
    Err(ApiError::not_acceptable(format!(
        "cannot answer with '{accept}': ask for image/png, application/x-npy, application/json or application/zip (or set \"format\")"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn accept_follows_q_values() {
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            format_of(None, &h)
        };
        assert_eq!(
            with("image/png;q=0, application/json;q=0.5").unwrap(),
            Format::Json
        );
        assert_eq!(
            with("application/json;q=0.2, application/zip").unwrap(),
            Format::Zip
        );
        assert_eq!(with("application/x-npy, image/png").unwrap(), Format::Npy);
        assert_eq!(
            with("*/*;q=0.1, application/json;q=0.9").unwrap(),
            Format::Json
        );
        assert!(with("image/png;q=0").is_err());
    }
}
