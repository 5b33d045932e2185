//! Weights in the engines' matrix layouts, read from [`Params`], and gradients written back
//! in PyTorch's layout.
//!
//! A convolution weight `[Cout, Cin, k, k]` is held as `[Cout, k, k, Cin]` (row `co` is the
//! filter over an im2col patch row) and a transposed convolution's `[Cin, Cout, k, k]` as
//! `[Cin, k, k, Cout]` (row `ci` is what one input pixel adds to a col2im patch): both move
//! PyTorch's second axis last.

use super::Real;
use crate::kernels::{last_axis_second, second_axis_last};
use crate::params::{Gradients, Param, Params};
use crate::spec::{NetSpec, ParamRole};
use anyhow::{ensure, Context, Result};
use candle_core::{Device, Tensor};

/// One layer's tensors in engine layout.
#[derive(Clone, Debug)]
pub struct LayerWeights<T> {
    pub weight: Vec<T>,
    pub bias: Option<Vec<T>>,
    pub gamma: Option<Vec<T>>,
    pub beta: Option<Vec<T>>,
}

/// A network's tensors in engine layout, layer by layer.
#[derive(Clone, Debug)]
pub struct NetWeights<T> {
    pub layers: Vec<LayerWeights<T>>,
}

impl<T: Real> NetWeights<T> {
    /// Reads the trainable tensors of `params` (which must hold `T` values) for `spec`.
    pub fn from_params(spec: &NetSpec, params: &Params) -> Result<Self> {
        let read = |p: &Param| -> Result<Vec<T>> {
            p.tensor()
                .flatten_all()?
                .to_vec1::<T>()
                .with_context(|| format!("reading {}", p.info.name))
        };
        ensure!(
            params.layers().len() == spec.layers.len(),
            "the parameters have {} layers, the architecture {}",
            params.layers().len(),
            spec.layers.len()
        );
        let layers = spec
            .layers
            .iter()
            .zip(params.layers())
            .map(|(l, t)| {
                Ok(LayerWeights {
                    weight: second_axis_last(&read(&t.weight)?, l.weight_shape()),
                    bias: t.bias.as_ref().map(read).transpose()?,
                    gamma: t.norm.as_ref().map(|n| read(&n.weight)).transpose()?,
                    beta: t.norm.as_ref().map(|n| read(&n.bias)).transpose()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }
}

/// Gradient accumulators of one layer: the weight in engine layout, the rest in f64.
#[derive(Clone, Debug)]
pub struct LayerGrads<T> {
    pub weight: Vec<T>,
    pub bias: Option<Vec<f64>>,
    pub gamma: Option<Vec<f64>>,
    pub beta: Option<Vec<f64>>,
}

impl<T: Real> LayerGrads<T> {
    /// Zero gradients shaped like `w`.
    pub fn zeros_like(w: &LayerWeights<T>) -> Self {
        let z = |v: &Option<Vec<T>>| v.as_ref().map(|v| vec![0.0; v.len()]);
        Self {
            weight: vec![T::zero(); w.weight.len()],
            bias: z(&w.bias),
            gamma: z(&w.gamma),
            beta: z(&w.beta),
        }
    }
}

/// Converts per-layer gradients into [`Gradients`] (PyTorch layout, `params.trainable()`
/// order) on `device`.
pub fn to_gradients<T: Real>(
    spec: &NetSpec,
    grads: &[LayerGrads<T>],
    device: &Device,
) -> Result<Gradients> {
    let mut out = Vec::new();
    for info in spec.params().into_iter().filter(|i| i.role.trainable()) {
        let g = &grads[info.layer];
        let small = |v: &Option<Vec<f64>>| -> Vec<T> {
            v.as_ref()
                .expect("spec and gradients agree")
                .iter()
                .map(|&x| T::of(x))
                .collect()
        };
        let data = match info.role {
            ParamRole::ConvWeight => {
                last_axis_second(&g.weight, spec.layers[info.layer].weight_shape())
            }
            ParamRole::ConvBias => small(&g.bias),
            ParamRole::NormWeight => small(&g.gamma),
            ParamRole::NormBias => small(&g.beta),
            ParamRole::RunningMean | ParamRole::RunningVar => unreachable!("not trainable"),
        };
        out.push(Tensor::from_vec(data, info.shape.as_slice(), device)?);
    }
    Ok(Gradients(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_moves_are_inverse() {
        let dims = [3, 5, 4, 4];
        let v: Vec<usize> = (0..3 * 5 * 16).collect();
        let moved = second_axis_last(&v, dims);
        // [i, j, t] of the source is at [i, t, j] after the move.
        assert_eq!(moved[(2 * 16 + 7) * 5 + 4], v[(2 * 5 + 4) * 16 + 7]);
        assert_eq!(last_axis_second(&moved, dims), v);
    }
}
