//! Named tensors of a network (trainable `Var`s and BatchNorm buffers), their DCGAN
//! initialisation, and safetensors I/O in PyTorch's `state_dict` naming.

use crate::latent::Rng;
use crate::spec::{batches_tracked_name, LayerTensors, NetSpec, Norm, ParamInfo, ParamRole};
use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// One named tensor of a network: its description and its values.
#[derive(Clone, Debug)]
pub struct Param {
    pub info: ParamInfo,
    pub var: Var,
}

impl Param {
    /// The values.
    pub fn tensor(&self) -> &Tensor {
        self.var.as_tensor()
    }
}

/// The tensors of one network, layer by layer as [`NetSpec::layer_tensors`] describes them.
pub struct Params {
    layers: Vec<LayerTensors<Param>>,
    /// PyTorch's `num_batches_tracked` of every BatchNorm (they all see the same batches).
    pub batches_tracked: i64,
}

impl Params {
    /// DCGAN initialisation: conv weights N(0, 0.02), conv biases 0, BatchNorm γ N(1, 0.02) and
    /// β 0, InstanceNorm γ 1 and β 0, running mean 0 and variance 1. Deterministic in `rng`.
    pub fn init(spec: &NetSpec, rng: &mut Rng, dtype: DType, device: &Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        for (l, layer) in spec.layers.iter().zip(spec.layer_tensors()) {
            for info in layer.iter() {
                let n: usize = info.shape.iter().product();
                let values: Vec<f32> = match info.role {
                    ParamRole::ConvWeight => (0..n).map(|_| 0.02 * rng.normal_f32()).collect(),
                    ParamRole::NormWeight if l.norm == Norm::Batch => {
                        (0..n).map(|_| 1.0 + 0.02 * rng.normal_f32()).collect()
                    }
                    ParamRole::NormWeight | ParamRole::RunningVar => vec![1.0; n],
                    ParamRole::ConvBias | ParamRole::NormBias | ParamRole::RunningMean => {
                        vec![0.0; n]
                    }
                };
                let t = Tensor::from_vec(values, info.shape.as_slice(), device)?.to_dtype(dtype)?;
                tensors.insert(info.name.clone(), t);
            }
        }
        Self::from_tensors(spec, tensors, 0, dtype, device)
    }

    /// Builds from named tensors, checking that every tensor of `spec` is present with the
    /// right shape and that nothing else is (`num_batches_tracked` entries are allowed). The
    /// error names every missing tensor, or the misshapen or unexpected ones.
    pub fn from_tensors(
        spec: &NetSpec,
        mut tensors: HashMap<String, Tensor>,
        batches_tracked: i64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let mut missing = Vec::new();
        let mut layers = Vec::new();
        for layer in spec.layer_tensors() {
            let found = layer.try_map(|info| match tensors.remove(&info.name) {
                None => {
                    missing.push(info.name.clone());
                    Ok(None)
                }
                Some(t) if t.dims() != info.shape.as_slice() => bail!(
                    "tensor {} has shape {:?}, the architecture expects {:?}",
                    info.name,
                    t.dims(),
                    info.shape
                ),
                Some(t) => {
                    let t = t.to_dtype(dtype)?.to_device(device)?;
                    Ok(Some(Param {
                        info: info.clone(),
                        var: Var::from_tensor(&t)?,
                    }))
                }
            })?;
            layers.push(found);
        }
        if !missing.is_empty() {
            bail!(
                "missing tensors for this architecture: {}",
                missing.join(", ")
            );
        }
        let mut unexpected: Vec<_> = tensors
            .keys()
            .filter(|k| !k.ends_with(".num_batches_tracked"))
            .cloned()
            .collect();
        if !unexpected.is_empty() {
            unexpected.sort();
            bail!(
                "tensors not in this architecture: {}",
                unexpected.join(", ")
            );
        }
        let layers = layers
            .into_iter()
            .map(|l| l.try_map(|p| p.clone().context("checked above")))
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            batches_tracked,
        })
    }

    /// Each layer's tensors, in [`NetSpec::layers`] order: the typed way to reach a tensor.
    pub fn layers(&self) -> &[LayerTensors<Param>] {
        &self.layers
    }

    /// The tensor named `name`, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&Var> {
        self.iter()
            .find(|(info, _)| info.name == name)
            .map(|(_, var)| var)
            .with_context(|| format!("this network has no tensor named {name}"))
    }

    /// All tensors with their descriptions, in spec order.
    pub fn iter(&self) -> impl Iterator<Item = (&ParamInfo, &Var)> {
        self.layers
            .iter()
            .flat_map(|l| l.iter())
            .map(|p| (&p.info, &p.var))
    }

    /// The tensors the optimiser updates, in spec order.
    pub fn trainable(&self) -> impl Iterator<Item = (&ParamInfo, &Var)> {
        self.iter().filter(|(i, _)| i.role.trainable())
    }

    /// The `state_dict`: every tensor plus an i64 `num_batches_tracked` per BatchNorm.
    pub fn state_dict(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (info, var) in self.iter() {
            out.insert(info.name.clone(), var.as_tensor().clone());
        }
        for layer in &self.layers {
            if let Some(running) = layer.norm.as_ref().and_then(|n| n.running.as_ref()) {
                out.insert(
                    batches_tracked_name(&running.mean.info.name),
                    Tensor::new(self.batches_tracked, &Device::Cpu)?,
                );
            }
        }
        Ok(out)
    }

    /// Writes the `state_dict` as safetensors (f32 for float tensors), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dict = self
            .state_dict()?
            .into_iter()
            .map(|(k, t)| {
                let t = if t.dtype() == DType::I64 {
                    t
                } else {
                    t.to_dtype(DType::F32)?
                };
                Ok((k, t.to_device(&Device::Cpu)?))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        crate::output::write_atomic(path, &safetensors_bytes(&dict)?)
    }

    /// Reads a `state_dict` written by [`Params::save`] or by PyTorch's safetensors export.
    pub fn load(spec: &NetSpec, path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let tensors = read_safetensors(path)?;
        let batches = tensors
            .iter()
            .find(|(k, _)| k.ends_with(".num_batches_tracked"))
            .map(|(_, t)| {
                t.to_dtype(DType::I64)
                    .and_then(|t| t.flatten_all()?.get(0)?.to_scalar::<i64>())
            })
            .transpose()
            .with_context(|| format!("reading num_batches_tracked in {}", path.display()))?
            .unwrap_or(0);
        for (name, t) in &tensors {
            if !t.dtype().is_float() {
                continue;
            }
            // One tensor at a time, as f32 (what training and export use).
            let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                bail!(
                    "{} holds a non-finite weight: {name} is {v} at index {i} (the run diverged or the file is damaged); use an earlier checkpoint",
                    path.display()
                );
            }
        }
        Self::from_tensors(spec, tensors, batches, dtype, device)
            .with_context(|| format!("{} does not match the architecture", path.display()))
    }
}

/// Gradients of a network's trainable tensors, in [`Params::trainable`] order.
pub struct Gradients(pub Vec<Tensor>);

impl Gradients {
    /// From candle's autograd. A tensor the objective does not depend on gets a zero gradient
    /// (candle then records none).
    pub fn from_grad_store(params: &Params, grads: &GradStore) -> Result<Self> {
        params
            .trainable()
            .map(|(_, var)| match grads.get(var.as_tensor()) {
                Some(g) => Ok(g.detach()),
                None => Ok(var.as_tensor().zeros_like()?),
            })
            .collect::<Result<_>>()
            .map(Self)
    }
}

/// The safetensors encoding of `tensors` (CPU tensors), for [`crate::output::write_atomic`]:
/// written through the output policy, the file gets the usual mode and temporary name
/// (the safetensors crate's own file writer makes a 0600 file through a temporary of its own).
pub fn safetensors_bytes(tensors: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    Ok(safetensors::serialize(tensors.iter(), None)?)
}

/// Largest weights file read (far above any architecture's weights with Adam's moments).
const MAX_SAFETENSORS: u64 = 64 << 30;

/// Reads every tensor of a safetensors file on the CPU, with an error that names the file.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = crate::limits::read_bounded(path, MAX_SAFETENSORS, "weights file")?;
    let tensors = safetensors_from_bytes(&bytes).with_context(|| {
        format!(
            "{} is not a valid safetensors file (truncated or corrupted?)",
            path.display()
        )
    })?;
    Ok(tensors)
}

fn safetensors_from_bytes(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::preset;

    #[test]
    fn init_statistics_and_round_trip() {
        let p = preset("small", 1).unwrap();
        let mut rng = Rng::new(3);
        let params = Params::init(&p.generator, &mut rng, DType::F32, &Device::Cpu).unwrap();
        let w = params
            .get("net.1.0.weight")
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let n = w.len() as f32;
        let mean = w.iter().sum::<f32>() / n;
        let std = (w.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
        assert!(
            mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3,
            "mean {mean} std {std}"
        );
        let gamma = params
            .get("net.1.1.weight")
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(gamma.iter().all(|g| (g - 1.0).abs() < 0.1) && gamma.iter().any(|&g| g != 1.0));
        assert_eq!(
            params
                .get("net.1.1.running_var")
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            vec![1.0; 128]
        );

        let dir = std::env::temp_dir().join(format!("wgan-params-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.safetensors");
        params.save(&path).unwrap();
        let back = Params::load(&p.generator, &path, DType::F32, &Device::Cpu).unwrap();
        for ((a, va), (_, vb)) in params.iter().zip(back.iter()) {
            let d = (va.as_tensor() - vb.as_tensor())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{}", a.name);
        }
        // A different preset's tensors are rejected with the offending name.
        let other = preset("tiny", 1).unwrap();
        let err = format!(
            "{:#}",
            Params::load(&other.generator, &path, DType::F32, &Device::Cpu)
                .err()
                .unwrap()
        );
        assert!(err.contains("shape") || err.contains("missing"), "{err}");
        // A missing tensor is an error naming it; so is an unknown name.
        let mut dict = params.state_dict().unwrap();
        dict.remove("net.1.1.running_mean");
        let err = Params::from_tensors(&p.generator, dict, 0, DType::F32, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("missing") && err.contains("net.1.1.running_mean"),
            "{err}"
        );
        let err = params.get("net.9.weight").unwrap_err().to_string();
        assert!(err.contains("net.9.weight"), "{err}");
        // The typed accessor and the names agree.
        let norm = params.layers()[1].norm.as_ref().unwrap();
        assert_eq!(
            norm.running.as_ref().unwrap().var.info.name,
            "net.1.1.running_var"
        );
        assert!(params.layers().last().unwrap().norm.is_none());
        // Truncation is reported as a bad file.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = format!(
            "{:#}",
            Params::load(&p.generator, &path, DType::F32, &Device::Cpu)
                .err()
                .unwrap()
        );
        assert!(err.contains("not a valid safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
