//! Read side of the checkpoint contract, shared by the trainer, the exporter and tests.
//!
//! A run directory holds `checkpoints/step_NNNNNN/` directories and a `checkpoints/latest`
//! file naming the newest one. A checkpoint directory holds `generator.safetensors`,
//! `critic.safetensors`, `optimizer.safetensors` and `state.json`, whose header fields are
//! [`CheckpointHeader`] (the trainer adds its own fields beside them), and, for runs trained
//! with an exponential moving average of the generator, `generator_ema.safetensors`.
//!
//! Loading the networks ([`load_generator`], [`load_critic`]) needs the `candle` feature.

#[cfg(feature = "candle")]
use crate::nets::{Critic, Generator};
use crate::spec::{preset_architecture, Architecture, ArchitectureNumbers, Preset, CUSTOM};
use anyhow::{bail, Context, Result};
#[cfg(feature = "candle")]
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the checkpoint layout written by this build.
pub const FORMAT_VERSION: u32 = 1;
pub const GENERATOR_FILE: &str = "generator.safetensors";
/// The exponential moving average of the generator's weights (runs trained with `--ema`).
pub const GENERATOR_EMA_FILE: &str = "generator_ema.safetensors";
pub const CRITIC_FILE: &str = "critic.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const LATEST_FILE: &str = "latest";

// The rest of a run folder (see ARCHITECTURE.md, "Checkpoint").
/// Every training option, as JSON (for older readers; written first, so a run folder is
/// recognised by it).
pub const CONFIG_JSON: &str = "config.json";
/// Every training option, as TOML (`trainer train --config`).
pub const CONFIG_TOML: &str = "config.toml";
/// One row per generator step.
pub const METRICS_CSV: &str = "metrics.csv";
/// The losses against the step.
pub const LOSSES_PNG: &str = "losses.png";
/// Sample grids `step_NNNNNN.png`.
pub const SAMPLES_DIR: &str = "samples";
/// TensorBoard event files.
pub const TENSORBOARD_DIR: &str = "tensorboard";

/// The fields of `state.json` that every reader relies on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointHeader {
    pub format_version: u32,
    /// Preset name (see [`crate::spec::PRESETS`]), or `custom`.
    pub preset: String,
    pub channels: usize,
    /// The architecture's numbers (image_size, z_dim, g_width, c_width). Checkpoints written
    /// before architectures were sized freely have none of them, and their preset name gives
    /// them.
    #[serde(flatten)]
    pub numbers: ArchitectureNumbers,
    /// Generator steps completed.
    pub step: u64,
    /// One-line description of the training data.
    pub dataset: String,
}

impl CheckpointHeader {
    /// The header of a checkpoint of `preset` at `step`, recording all its numbers.
    pub fn new(preset: &Preset, step: u64, dataset: String) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            preset: preset.name.clone(),
            channels: preset.channels,
            numbers: ArchitectureNumbers::of(preset),
            step,
            dataset,
        }
    }

    /// The numbers of the architecture this checkpoint was trained with.
    pub fn architecture(&self) -> Result<Architecture> {
        match self.numbers.given() {
            0 if self.preset == CUSTOM => bail!(
                "the checkpoint names a custom architecture without its numbers (image_size, z_dim, g_width, c_width)"
            ),
            0 | 4 => Ok(self.numbers.resolve(&self.preset)?),
            _ => bail!(
                "the checkpoint gives only some of image_size, z_dim, g_width and c_width: it is damaged"
            ),
        }
    }

    /// The architecture this checkpoint was trained with.
    pub fn preset(&self) -> Result<Preset> {
        if self.preset != CUSTOM {
            preset_architecture(&self.preset)?;
        }
        let preset = self.architecture()?.build(self.channels)?;
        if self.preset != CUSTOM && self.preset != preset.name {
            bail!(
                "the checkpoint names preset '{}' but its numbers ({}) are not that preset's: it is damaged",
                self.preset,
                preset.architecture()
            );
        }
        Ok(preset)
    }
}

/// Finds the checkpoint directory that `path` names: a checkpoint directory itself, or a run
/// directory whose `checkpoints/latest` names one.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    if !path.is_dir() {
        bail!(
            "{} is not a directory (expected a checkpoint or run directory)",
            path.display()
        );
    }
    if path.join(STATE_FILE).exists() {
        return Ok(path.to_path_buf());
    }
    let latest = path.join(CHECKPOINTS_DIR).join(LATEST_FILE);
    if latest.exists() {
        let name = crate::limits::read_text_bounded(&latest, 4096, "checkpoint pointer")?;
        let dir = path.join(CHECKPOINTS_DIR).join(name.trim());
        if !dir.join(STATE_FILE).exists() {
            bail!(
                "{} names {}, which is not a checkpoint",
                latest.display(),
                dir.display()
            );
        }
        return Ok(dir);
    }
    if path.join(CONFIG_JSON).exists() {
        bail!(
            "{} holds a run that stopped before its first checkpoint: there is nothing to resume or load",
            path.display()
        );
    }
    bail!(
        "{} is neither a checkpoint (no {STATE_FILE}) nor a run directory (no {CHECKPOINTS_DIR}/{LATEST_FILE})",
        path.display()
    )
}

/// Reads the header of `state.json` in checkpoint directory `dir`.
pub fn read_header(dir: &Path) -> Result<CheckpointHeader> {
    let path = dir.join(STATE_FILE);
    let text =
        crate::limits::read_text_bounded(&path, crate::limits::MAX_TEXT_FILE, "checkpoint state")?;
    let header: CheckpointHeader = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid checkpoint state", path.display()))?;
    if header.format_version != FORMAT_VERSION {
        bail!(
            "{} has checkpoint format {}, this build reads format {FORMAT_VERSION}",
            path.display(),
            header.format_version
        );
    }
    Ok(header)
}

/// Which of a checkpoint's generators to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GeneratorWeights {
    /// The moving average when the checkpoint has one, else the trained weights.
    #[default]
    Auto,
    /// The exponential moving average (an error when the run kept none).
    Ema,
    /// The weights as the optimiser left them.
    Raw,
}

/// A `--weights` value that names none of [`GeneratorWeights`].
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("unknown weights '{0}': use auto, ema or raw")]
pub struct UnknownWeights(pub String);

impl std::str::FromStr for GeneratorWeights {
    type Err = UnknownWeights;

    fn from_str(s: &str) -> Result<Self, UnknownWeights> {
        match s {
            "auto" => Ok(Self::Auto),
            "ema" => Ok(Self::Ema),
            "raw" => Ok(Self::Raw),
            other => Err(UnknownWeights(other.to_string())),
        }
    }
}

impl GeneratorWeights {
    /// The generator file of checkpoint directory `dir` these weights name, and whether it is
    /// the moving average.
    pub fn file(self, dir: &Path) -> Result<(PathBuf, bool)> {
        let ema = dir.join(GENERATOR_EMA_FILE);
        match self {
            Self::Raw => Ok((dir.join(GENERATOR_FILE), false)),
            Self::Auto if ema.exists() => Ok((ema, true)),
            Self::Auto => Ok((dir.join(GENERATOR_FILE), false)),
            Self::Ema if ema.exists() => Ok((ema, true)),
            Self::Ema => bail!(
                "checkpoint {} has no moving average of the generator ({GENERATOR_EMA_FILE}): the run was trained without --ema; use --weights raw",
                dir.display()
            ),
        }
    }
}

/// A generator loaded from a checkpoint.
#[cfg(feature = "candle")]
pub struct LoadedGenerator {
    pub generator: Generator,
    pub header: CheckpointHeader,
    /// The checkpoint directory it came from.
    pub dir: PathBuf,
    /// Whether these are the moving-average weights.
    pub ema: bool,
}

#[cfg(feature = "candle")]
impl LoadedGenerator {
    /// `"ema"` or `"raw"`.
    pub fn weights_name(&self) -> &'static str {
        if self.ema {
            "ema"
        } else {
            "raw"
        }
    }
}

/// Loads the generator (`weights` chooses the moving average or the trained weights) of a
/// checkpoint or run directory.
#[cfg(feature = "candle")]
pub fn load_generator(
    path: &Path,
    weights: GeneratorWeights,
    dtype: DType,
    device: &Device,
) -> Result<LoadedGenerator> {
    let dir = resolve(path)?;
    let header = read_header(&dir)?;
    let (file, ema) = weights.file(&dir)?;
    let generator = Generator::load(&header.preset()?, &file, dtype, device)?;
    Ok(LoadedGenerator {
        generator,
        header,
        dir,
        ema,
    })
}

/// Loads the critic of a checkpoint or run directory.
#[cfg(feature = "candle")]
pub fn load_critic(
    path: &Path,
    dtype: DType,
    device: &Device,
) -> Result<(Critic, CheckpointHeader)> {
    let dir = resolve(path)?;
    let header = read_header(&dir)?;
    let c = Critic::load(&header.preset()?, &dir.join(CRITIC_FILE), dtype, device)?;
    Ok((c, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Result<Preset> {
        serde_json::from_str::<CheckpointHeader>(json)?.preset()
    }

    #[test]
    fn headers_with_and_without_the_numbers() {
        // Written before architectures were sized freely: the name gives the numbers.
        let old = r#"{"format_version":1,"preset":"small","channels":1,"step":5,"dataset":"d"}"#;
        assert_eq!(header(old).unwrap(), crate::preset("small", 1).unwrap());
        let custom = Architecture {
            image_size: 128,
            z_dim: 16,
            g_width: 4,
            c_width: 8,
        }
        .build(3)
        .unwrap();
        let h = CheckpointHeader::new(&custom, 7, "d".into());
        let text = serde_json::to_string(&h).unwrap();
        assert!(text.contains(r#""preset":"custom""#) && text.contains(r#""g_width":4"#));
        assert_eq!(header(&text).unwrap(), custom);
        // A named preset written with its numbers reads back the same.
        let small = crate::preset("small", 3).unwrap();
        let text = serde_json::to_string(&CheckpointHeader::new(&small, 1, "d".into())).unwrap();
        assert_eq!(header(&text).unwrap(), small);
    }

    #[test]
    fn damaged_headers_are_errors() {
        let e = |json: &str| format!("{:#}", header(json).unwrap_err());
        let some = r#"{"format_version":1,"preset":"custom","channels":1,"image_size":64,"step":5,"dataset":"d"}"#;
        assert!(e(some).contains("only some of"), "{}", e(some));
        let none = r#"{"format_version":1,"preset":"custom","channels":1,"step":5,"dataset":"d"}"#;
        assert!(e(none).contains("without its numbers"), "{}", e(none));
        let wrong = r#"{"format_version":1,"preset":"small","channels":1,"image_size":64,"z_dim":100,"g_width":64,"c_width":64,"step":5,"dataset":"d"}"#;
        assert!(e(wrong).contains("not that preset's"), "{}", e(wrong));
        let size = r#"{"format_version":1,"preset":"custom","channels":1,"image_size":48,"z_dim":100,"g_width":64,"c_width":64,"step":5,"dataset":"d"}"#;
        assert!(e(size).contains("power of two"), "{}", e(size));
    }
}
