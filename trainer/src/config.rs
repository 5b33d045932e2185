//! Training configuration and the resumable training state stored in `state.json`.

use crate::adam::AdamConfig;
use crate::data::Format;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use wgan_models::checkpoint::CheckpointHeader;
use wgan_models::spec::{Architecture, ArchitectureNumbers};
use wgan_models::Preset;

/// Everything that defines a run. Saved as `config.json` and inside every `state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The architecture's name: a preset, or `custom` (see [`wgan_models::spec::PRESETS`]).
    pub preset: String,
    pub channels: usize,
    /// The architecture's numbers (image_size, z_dim, g_width, c_width): those given on the
    /// command line, all four once the run has started. Configurations written before
    /// architectures were sized freely have none, and the preset name gives them.
    #[serde(flatten)]
    pub numbers: ArchitectureNumbers,
    /// Data path; `None` trains on the MNIST subset embedded in the binary.
    pub data: Option<PathBuf>,
    pub format: Format,
    /// Generator steps to reach.
    pub steps: u64,
    pub batch_size: usize,
    pub n_critic: usize,
    pub lambda_gp: f64,
    pub adam: AdamConfig,
    pub seed: u64,
    pub sample_every: u64,
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (older ones are deleted).
    pub keep_checkpoints: usize,
    pub device: String,
    /// Decay of the exponential moving average of the generator's weights (`--ema`); `None`
    /// keeps no average. Absent in runs made before the option existed.
    #[serde(default)]
    pub ema: Option<f64>,
    /// Images held out of training for `eval` (`--holdout`), chosen by a hash of their names
    /// seeded with `holdout_seed`.
    #[serde(default)]
    pub holdout: usize,
    #[serde(default)]
    pub holdout_seed: u64,
    /// Horizontal flips: each epoch shows every image once each way round (`--mirror`).
    #[serde(default)]
    pub mirror: bool,
    /// Threads of the training engine and of decoding (`--threads`); `None` in runs made
    /// before the option existed (they used every core).
    #[serde(default)]
    pub threads: Option<usize>,
    /// TensorBoard event files under `RUN/tensorboard/` (`--no-tensorboard` turns them off).
    /// Runs made before the option existed write them from their next session on.
    #[serde(default = "enabled")]
    pub tensorboard: bool,
}

fn enabled() -> bool {
    true
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            preset: "small".into(),
            channels: 1,
            numbers: ArchitectureNumbers::default(),
            data: None,
            format: Format::Auto,
            steps: 2000,
            batch_size: 64,
            n_critic: 5,
            lambda_gp: 10.0,
            adam: AdamConfig::default(),
            seed: 0,
            sample_every: 100,
            checkpoint_every: 500,
            keep_checkpoints: 3,
            device: "cpu".into(),
            ema: None,
            holdout: 0,
            holdout_seed: 0,
            mirror: false,
            threads: None,
            tensorboard: true,
        }
    }
}

impl TrainConfig {
    /// Rejects values that cannot train, with a message naming the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.steps == 0 {
            bail!("--steps must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if self.n_critic == 0 {
            bail!("--n-critic must be at least 1");
        }
        if !(self.lambda_gp.is_finite() && self.lambda_gp >= 0.0) {
            bail!("--lambda-gp must be a finite number ≥ 0");
        }
        let a = self.adam;
        if !(a.lr.is_finite() && a.lr > 0.0) {
            bail!("--lr must be a positive number");
        }
        if !((0.0..1.0).contains(&a.beta1) && (0.0..1.0).contains(&a.beta2)) {
            bail!("--beta1 and --beta2 must be in [0, 1)");
        }
        if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
            bail!("--weight-decay must be ≥ 0");
        }
        if self.channels != 1 && self.channels != 3 {
            bail!("--channels must be 1 or 3");
        }
        if self.sample_every == 0 || self.checkpoint_every == 0 || self.keep_checkpoints == 0 {
            bail!("--sample-every, --checkpoint-every and --keep-checkpoints must be at least 1");
        }
        if let Some(t) = self.threads {
            wgan_models::limits::check_threads("--threads", t)?;
        }
        if let Some(d) = self.ema {
            if !(d > 0.0 && d < 1.0) {
                bail!("--ema must be a decay between 0 and 1 (exclusive), e.g. 0.999");
            }
        }
        self.architecture()?.build(self.channels)?;
        Ok(())
    }

    /// The architecture's numbers: the recorded ones, else the preset's.
    pub fn architecture(&self) -> anyhow::Result<Architecture> {
        Ok(self.numbers.resolve(&self.preset)?)
    }

    /// The generator and critic this configuration trains.
    pub fn preset(&self) -> anyhow::Result<Preset> {
        Ok(self.architecture()?.build(self.channels)?)
    }

    /// Records `preset` as the architecture: its name and all its numbers.
    pub fn set_architecture(&mut self, preset: &Preset) {
        self.preset = preset.name.clone();
        self.numbers = ArchitectureNumbers::of(preset);
    }
}

/// `state.json`: the header every reader relies on, plus what resuming needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    #[serde(flatten)]
    pub header: CheckpointHeader,
    pub config: TrainConfig,
    /// State of the training RNG (latents and interpolation weights).
    pub rng_state: [u64; 4],
    /// Seed of the data order.
    pub data_seed: u64,
    /// Samples consumed from the shuffled data stream.
    pub data_cursor: u64,
    /// Seed of the fixed latents behind the sample grids.
    pub sample_seed: u64,
    /// Wall time spent training so far.
    pub elapsed_secs: f64,
    /// The data trained on (absent in checkpoints written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<crate::run_data::DataRecord>,
}

impl TrainState {
    /// Reads `state.json` of checkpoint directory `dir`.
    pub fn read(dir: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let path = dir.join(wgan_models::checkpoint::STATE_FILE);
        let text = wgan_models::limits::read_text_bounded(
            &path,
            wgan_models::limits::MAX_TEXT_FILE,
            "checkpoint state",
        )?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid training state", path.display()))
    }
}
