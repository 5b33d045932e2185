//! Latent walks: the frames between the key latents of some seeds (the latent of seed `S` is
//! image 0 of `S`), spherically interpolated. The frames' latents are the contract's
//! ([`crate::latent::walk`]), so every backend draws the same walk.

use crate::latent::{self, MAX_FRAMES};

/// Most seeds one walk goes through.
pub const MAX_WALK_SEEDS: usize = 1000;

/// A walk through the key latents of `seeds` in `frames` frames, from the first seed's latent to
/// the last's (no return: a looping GIF jumps back).
#[derive(Clone, Debug, PartialEq)]
pub struct Walk {
    pub seeds: Vec<u64>,
    pub frames: usize,
    /// Truncation ψ of the key latents (see [`crate::latent::truncate`]).
    pub truncation: Option<f32>,
}

/// Why a walk was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BadWalk {
    /// Fewer than two seeds (how many were given).
    #[error("a walk goes between at least two seeds and {0} {verb} given", verb = was_were(.0))]
    TooFewSeeds(usize),
    /// More than [`MAX_WALK_SEEDS`] seeds.
    #[error("a walk goes through at most {MAX_WALK_SEEDS} seeds and {0} were given")]
    TooManySeeds(usize),
    /// A frame count outside `2..=MAX_FRAMES`.
    #[error("a walk has from 2 to {MAX_FRAMES} frames, and {0} {verb} asked for", verb = was_were(.0))]
    Frames(usize),
    #[error(transparent)]
    Truncation(latent::BadTruncation),
}

fn was_were(n: &usize) -> &'static str {
    if *n == 1 {
        "was"
    } else {
        "were"
    }
}

impl Walk {
    /// A checked walk. The errors say what is wrong in words a flag or a JSON field can both
    /// prefix.
    pub fn new(seeds: Vec<u64>, frames: usize, truncation: Option<f32>) -> Result<Walk, BadWalk> {
        if seeds.len() < 2 {
            return Err(BadWalk::TooFewSeeds(seeds.len()));
        }
        if seeds.len() > MAX_WALK_SEEDS {
            return Err(BadWalk::TooManySeeds(seeds.len()));
        }
        if !(2..=MAX_FRAMES).contains(&frames) {
            return Err(BadWalk::Frames(frames));
        }
        if let Some(psi) = truncation {
            latent::check_truncation(psi, "the truncation").map_err(BadWalk::Truncation)?;
        }
        Ok(Walk {
            seeds,
            frames,
            truncation,
        })
    }

    /// The frames' latents, `frames · z_dim` values, `[frames, z_dim, 1, 1]`.
    pub fn latents(&self, z_dim: usize) -> Vec<f32> {
        self.frame_latents(z_dim, 0..self.frames)
    }

    /// The latents of frames `range` (within `0..frames`), the same rows as [`Walk::latents`].
    pub fn frame_latents(&self, z_dim: usize, range: std::ops::Range<usize>) -> Vec<f32> {
        let keys: Vec<Vec<f32>> = self
            .seeds
            .iter()
            .map(|&s| latent::key_latent(s, z_dim, self.truncation))
            .collect();
        latent::walk_frames(&keys, self.frames, range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_are_checked_and_start_and_end_on_the_keys() {
        assert!(Walk::new(vec![1], 8, None)
            .unwrap_err()
            .to_string()
            .contains("at least two seeds"));
        assert!(Walk::new(vec![1, 2], 1, None)
            .unwrap_err()
            .to_string()
            .contains("from 2 to"));
        assert!(Walk::new(vec![1, 2], MAX_FRAMES + 1, None).is_err());
        assert!(Walk::new(vec![1, 2], 8, Some(0.0))
            .unwrap_err()
            .to_string()
            .contains("at least 0.01"));
        let w = Walk::new(vec![4, 5], 6, Some(0.8)).unwrap();
        let z = w.latents(10);
        assert_eq!(z.len(), 60);
        let mut first = latent::latents(4, 1, 10);
        latent::truncate(&mut first, 4, 0, 10, 0.8);
        assert_eq!(z[..10], first[..]);
        assert_eq!(z[50..], latent::key_latent(5, 10, Some(0.8))[..]);
    }
}
