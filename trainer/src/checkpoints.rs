//! Write side of the checkpoint contract (see `wgan_models::checkpoint`): atomic checkpoint
//! directories, the `latest` pointer, and pruning to the last K.

use crate::config::TrainState;
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wgan_models::checkpoint::{
    CHECKPOINTS_DIR, CRITIC_FILE, GENERATOR_EMA_FILE, GENERATOR_FILE, LATEST_FILE, OPTIMIZER_FILE,
    STATE_FILE,
};
use wgan_models::output::write_atomic;
use wgan_models::Params;

/// Name of the checkpoint directory of generator step `step`.
pub fn dir_name(step: u64) -> String {
    format!("step_{step:06}")
}

/// What a checkpoint holds.
pub struct CheckpointContents<'a> {
    pub generator: &'a Params,
    /// The moving average of the generator, for runs that keep one.
    pub generator_ema: Option<&'a Params>,
    pub critic: &'a Params,
    pub optimizer: HashMap<String, Tensor>,
    pub state: &'a TrainState,
}

/// Writes `run_dir/checkpoints/step_NNNNNN/` atomically (a temporary directory renamed into
/// place), points `latest` at it, and deletes all but the newest `keep` checkpoints.
pub fn save(run_dir: &Path, contents: CheckpointContents, keep: usize) -> Result<PathBuf> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let name = dir_name(contents.state.header.step);
    let final_dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    // Removed if a signal ends the process while it is written.
    let ((), _registration) =
        wgan_models::output::create_registered(|| std::fs::create_dir(&tmp), |_| tmp.clone())
            .with_context(|| format!("creating {}", tmp.display()))?;
    let write = || -> Result<()> {
        // Each file is synced before its rename (the output policy), so the folder is complete
        // on disk when it is renamed into place.
        contents.generator.save(&tmp.join(GENERATOR_FILE))?;
        contents.critic.save(&tmp.join(CRITIC_FILE))?;
        if let Some(ema) = contents.generator_ema {
            ema.save(&tmp.join(GENERATOR_EMA_FILE))?;
        }
        write_atomic(
            &tmp.join(OPTIMIZER_FILE),
            &wgan_models::params::safetensors_bytes(&contents.optimizer)?,
        )?;
        write_atomic(
            &tmp.join(STATE_FILE),
            serde_json::to_string_pretty(contents.state)?.as_bytes(),
        )?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir)?;
        }
        std::fs::rename(&tmp, &final_dir)?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("writing checkpoint {}", final_dir.display())));
    }
    write_atomic(&root.join(LATEST_FILE), name.as_bytes())?;
    prune(&root, keep)?;
    Ok(final_dir)
}

/// Checkpoint directories under `root`, oldest first.
pub fn list(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step_"))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn prune(root: &Path, keep: usize) -> Result<()> {
    let dirs = list(root)?;
    for old in dirs.iter().take(dirs.len().saturating_sub(keep.max(1))) {
        std::fs::remove_dir_all(old)
            .with_context(|| format!("removing old checkpoint {}", old.display()))?;
    }
    Ok(())
}
