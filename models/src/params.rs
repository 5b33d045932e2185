//! Named tensors of a network (trainable `Var`s and BatchNorm buffers), their DCGAN
//! initialisation, and safetensors I/O in PyTorch's `state_dict` naming.

use crate::latent::Rng;
use crate::spec::{NetSpec, ParamInfo, ParamRole};
use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// The tensors of one network, in the order of [`NetSpec::params`].
pub struct Params {
    entries: Vec<(ParamInfo, Var)>,
    index: HashMap<String, usize>,
    /// PyTorch's `num_batches_tracked` of every BatchNorm (they all see the same batches).
    pub batches_tracked: i64,
}

impl Params {
    /// DCGAN initialisation: conv weights N(0, 0.02), conv biases 0, BatchNorm γ N(1, 0.02) and
    /// β 0, InstanceNorm γ 1 and β 0, running mean 0 and variance 1. Deterministic in `rng`.
    pub fn init(spec: &NetSpec, rng: &mut Rng, dtype: DType, device: &Device) -> Result<Self> {
        let mut norm_kinds = HashMap::new();
        for info in spec.params() {
            norm_kinds.insert(info.layer, spec.layers[info.layer].norm);
        }
        let tensors = spec
            .params()
            .into_iter()
            .map(|info| {
                let n: usize = info.shape.iter().product();
                let values: Vec<f32> = match info.role {
                    ParamRole::ConvWeight => (0..n).map(|_| 0.02 * rng.normal_f32()).collect(),
                    ParamRole::NormWeight
                        if norm_kinds[&info.layer] == crate::spec::Norm::Batch =>
                    {
                        (0..n).map(|_| 1.0 + 0.02 * rng.normal_f32()).collect()
                    }
                    ParamRole::NormWeight | ParamRole::RunningVar => vec![1.0; n],
                    ParamRole::ConvBias | ParamRole::NormBias | ParamRole::RunningMean => {
                        vec![0.0; n]
                    }
                };
                let t = Tensor::from_vec(values, info.shape.as_slice(), device)?.to_dtype(dtype)?;
                Ok((info.name.clone(), t))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        Self::from_tensors(spec, tensors, 0, dtype, device)
    }

    /// Builds from named tensors, checking that every tensor of `spec` is present with the
    /// right shape and that nothing else is (`num_batches_tracked` entries are allowed).
    pub fn from_tensors(
        spec: &NetSpec,
        mut tensors: HashMap<String, Tensor>,
        batches_tracked: i64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let mut entries = Vec::new();
        let mut missing = Vec::new();
        for info in spec.params() {
            match tensors.remove(&info.name) {
                None => missing.push(info.name.clone()),
                Some(t) => {
                    if t.dims() != info.shape.as_slice() {
                        bail!(
                            "tensor {} has shape {:?}, the architecture expects {:?}",
                            info.name,
                            t.dims(),
                            info.shape
                        );
                    }
                    let t = t.to_dtype(dtype)?.to_device(device)?;
                    entries.push((info, Var::from_tensor(&t)?));
                }
            }
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
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, (info, _))| (info.name.clone(), i))
            .collect();
        Ok(Self {
            entries,
            index,
            batches_tracked,
        })
    }

    /// The tensor named `name`. Panics on a name outside the spec (a programming error).
    pub fn get(&self, name: &str) -> &Var {
        let i = self
            .index
            .get(name)
            .unwrap_or_else(|| panic!("no parameter named {name}"));
        &self.entries[*i].1
    }

    /// All tensors with their descriptions, in spec order.
    pub fn iter(&self) -> impl Iterator<Item = (&ParamInfo, &Var)> {
        self.entries.iter().map(|(i, v)| (i, v))
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
            if info.role == ParamRole::RunningMean {
                let name = info.name.replace(".running_mean", ".num_batches_tracked");
                out.insert(name, Tensor::new(self.batches_tracked, &Device::Cpu)?);
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
        let tmp = path.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&dict, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
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

/// Reads every tensor of a safetensors file on the CPU, with an error that names the file.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
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
        let gamma = params.get("net.1.1.weight").to_vec1::<f32>().unwrap();
        assert!(gamma.iter().all(|g| (g - 1.0).abs() < 0.1) && gamma.iter().any(|&g| g != 1.0));
        assert_eq!(
            params.get("net.1.1.running_var").to_vec1::<f32>().unwrap(),
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
