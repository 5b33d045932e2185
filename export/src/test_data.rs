//! A test-data set beside the model, laid out as the ONNX backend tests do:
//! `test_data_set_0/input_0.pb` (`z`, the latents of a seed) and `test_data_set_0/output_0.pb`
//! (`image`, candle's eval-mode output), each a serialized `TensorProto` with f32 `raw_data`.
//! Any runtime can check itself against them, e.g. `onnx.numpy_helper.to_array(onnx.load_tensor(p))`.

use crate::graph::f32_tensor;
use crate::pb::{tensor_proto::DataType, TensorProto};
use crate::verify::candle_images;
use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use std::path::{Path, PathBuf};
use wgan_models::latent::latents;
use wgan_models::Generator;

/// Name of the test-data directory.
pub const TEST_DATA_DIR: &str = "test_data_set_0";

/// Writes `dir/test_data_set_0/` for `n` latents of `seed` (replacing an existing one, and
/// atomically: the set is assembled in a temporary directory and renamed into place).
/// Returns the directory.
pub fn write_test_data(
    dir: &Path,
    generator: &mut Generator,
    seed: u64,
    n: usize,
) -> Result<PathBuf> {
    let z = latents(seed, n, generator.z_dim);
    let images = candle_images(generator, &z, n)?;
    let channels = generator
        .spec
        .layers
        .last()
        .context("the generator has no layers")?
        .out_channels;
    let side = ((images.len() / (n * channels)) as f64).sqrt() as usize;
    ensure!(
        n * channels * side * side == images.len(),
        "images are not square"
    );
    let input = f32_tensor(crate::INPUT_NAME, &[n, generator.z_dim, 1, 1], &z);
    let output = f32_tensor(crate::OUTPUT_NAME, &[n, channels, side, side], &images);

    let target = dir.join(TEST_DATA_DIR);
    if target.exists() && !target.is_dir() {
        bail!("{} exists and is not a directory", target.display());
    }
    let name = std::ffi::OsStr::new(TEST_DATA_DIR);
    wgan_models::output::remove_stale_temps_of(dir, name);
    // Removed if a signal ends the process while it is written.
    let (tmp, _registration) = wgan_models::output::create_registered(
        || {
            tempfile::Builder::new()
                .prefix(&wgan_models::output::temp_prefix(name))
                .suffix(".tmp")
                .tempdir_in(dir)
        },
        |t| t.path().to_path_buf(),
    )
    .with_context(|| format!("cannot write test data in {}", dir.display()))?;
    for (file, tensor) in [("input_0.pb", &input), ("output_0.pb", &output)] {
        let path = tmp.path().join(file);
        std::fs::write(&path, tensor.encode_to_vec())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("cannot replace {}", target.display()))?;
    }
    let tmp = tmp.keep();
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("cannot write {}", target.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })?;
    Ok(target)
}

/// Reads a `TensorProto` file of f32 values (`raw_data` or `float_data`): name, dims, values.
pub fn read_f32_tensor(path: &Path) -> Result<(String, Vec<usize>, Vec<f32>)> {
    let bytes = wgan_models::limits::read_bounded(path, 2 << 30, "tensor file")?;
    let t = TensorProto::decode(bytes.as_slice())
        .with_context(|| format!("{} is not a TensorProto", path.display()))?;
    ensure!(
        t.data_type == DataType::Float as i32,
        "{} is not a float tensor",
        path.display()
    );
    let values = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    ensure!(
        dims.iter().product::<usize>() == values.len(),
        "{}: dims {dims:?} for {} values",
        path.display(),
        values.len()
    );
    Ok((t.name, dims, values))
}
