//! Helpers of the exporter's tests: checkpoints made in code, raw f32 files, and the
//! workspace's shared test helpers (`wgan_test_support`) re-exported.
#![allow(dead_code, unused_imports)] // each test file uses its own subset

use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use wgan_models::checkpoint::CheckpointHeader;
use wgan_models::checkpoint::{GENERATOR_FILE, STATE_FILE};
use wgan_models::latent::{latents, Rng};
use wgan_models::spec::ParamRole;
use wgan_models::{preset, Generator, Mode, Preset};
#[cfg(unix)]
pub use wgan_test_support::fs::{device_like, is_char_device};
pub use wgan_test_support::{assert_input_error, binary, max_abs_diff, mean_std, stderr};

/// A generator of `preset_name` as a trained one looks to the exporter: DCGAN-initialised
/// convolutions, γ ≈ 1 ± 0.3, β ≈ ±0.2, conv biases ≈ ±0.05, and running statistics near the
/// batch statistics the network really produces (calibrated by one train-mode pass on 16
/// latents, then perturbed per channel: mean ± 0.2 σ, variance × [0.6, 1.4]). So BatchNorm
/// folding is really exercised and the images are neither constant nor saturated.
pub fn perturbed_generator(preset_name: &str, channels: usize, seed: u64) -> Generator {
    perturbed_generator_of(&preset(preset_name, channels).unwrap(), seed)
}

/// [`perturbed_generator`] of any architecture.
pub fn perturbed_generator_of(p: &Preset, seed: u64) -> Generator {
    let mut g = Generator::new(p, &mut Rng::new(seed), DType::F32, &Device::Cpu).unwrap();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let set = |var: &candle_core::Var, values: Vec<f32>, shape: &[usize]| {
        var.set(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap())
            .unwrap();
    };
    for (info, var) in g.params.iter() {
        let n: usize = info.shape.iter().product();
        let values: Vec<f32> = match info.role {
            ParamRole::NormWeight => (0..n).map(|_| 1.0 + 0.3 * rng.normal_f32()).collect(),
            ParamRole::NormBias => (0..n).map(|_| 0.2 * rng.normal_f32()).collect(),
            ParamRole::ConvBias => (0..n).map(|_| 0.05 * rng.normal_f32()).collect(),
            // Zero, so that after one update (momentum 0.1) they hold 0.1 × the batch statistics.
            ParamRole::RunningMean | ParamRole::RunningVar => vec![0.0; n],
            ParamRole::ConvWeight => continue,
        };
        set(var, values, &info.shape);
    }
    let z = Tensor::from_vec(
        latents(seed ^ 0xca1, 16, p.z_dim),
        (16, p.z_dim, 1, 1),
        &Device::Cpu,
    )
    .unwrap();
    g.forward(&z, Mode::Train).unwrap();
    let stats = |var: &candle_core::Var| -> Vec<f32> {
        var.as_tensor()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v / wgan_models::spec::BN_MOMENTUM as f32)
            .collect()
    };
    for layer in g.params.layers() {
        let Some(running) = layer.norm.as_ref().and_then(|n| n.running.as_ref()) else {
            continue;
        };
        let (rm, rv) = (&running.mean.var, &running.var.var);
        let (mean, var) = (stats(rm), stats(rv));
        let c = mean.len();
        let mean: Vec<f32> = mean
            .iter()
            .zip(&var)
            .map(|(m, v)| m + 0.2 * v.sqrt() * rng.normal_f32())
            .collect();
        let var: Vec<f32> = var
            .iter()
            .map(|v| v * (0.6 + 0.8 * rng.uniform_f32()))
            .collect();
        set(rm, mean, &[c]);
        set(rv, var, &[c]);
    }
    g.params.batches_tracked = 1000;
    g
}

/// Writes a checkpoint directory (`generator.safetensors` + a minimal `state.json`) for `g`.
pub fn write_checkpoint(dir: &Path, g: &Generator, preset: &Preset, step: u64) {
    std::fs::create_dir_all(dir).unwrap();
    g.params.save(&dir.join(GENERATOR_FILE)).unwrap();
    let header = CheckpointHeader::new(preset, step, "synthetic test data".into());
    let mut state = serde_json::to_value(header).unwrap();
    state["config"] =
        serde_json::json!({ "note": "fields beyond the header are ignored by export" });
    std::fs::write(
        dir.join(STATE_FILE),
        serde_json::to_string_pretty(&state).unwrap(),
    )
    .unwrap();
}

/// Makes a checkpoint of a perturbed generator in `dir` and returns the generator.
pub fn make_checkpoint(dir: &Path, preset_name: &str, channels: usize, seed: u64) -> Generator {
    make_checkpoint_of(dir, &preset(preset_name, channels).unwrap(), seed)
}

/// [`make_checkpoint`] of any architecture.
pub fn make_checkpoint_of(dir: &Path, preset: &Preset, seed: u64) -> Generator {
    let g = perturbed_generator_of(preset, seed);
    write_checkpoint(dir, &g, preset, 1234);
    g
}

/// Makes a run directory (`checkpoints/step_000010/` + `checkpoints/latest`) and returns it.
pub fn make_run_dir(
    root: &Path,
    preset_name: &str,
    channels: usize,
    seed: u64,
) -> (PathBuf, Generator) {
    let run = root.join("run");
    let g = make_checkpoint(
        &run.join("checkpoints/step_000010"),
        preset_name,
        channels,
        seed,
    );
    std::fs::write(run.join("checkpoints/latest"), "step_000010\n").unwrap();
    (run, g)
}

/// The Python with `onnx`, `onnxruntime` and `numpy` (`wgan_test_support::python`).
pub fn python() -> PathBuf {
    wgan_test_support::python::python("onnx, onnxruntime, numpy")
}

pub fn write_f32(path: &Path, values: &[f32]) {
    std::fs::write(
        path,
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
