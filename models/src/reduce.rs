//! Sums and broadcasts over the middle axis of `[A, M, C]`, as a pair of custom ops that are
//! each other's adjoint (so gradients of any order stay on these fast kernels).
//!
//! candle reduces over non-trailing axes with a per-element index computation, and
//! differentiates every broadcasting op with such a reduction; channels-last norms and biases
//! reduce over exactly those axes. [`sum_mid`] and [`expand_mid`] replace them.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};

/// `[A, M, C]` → `[A, 1, C]`, summing over `M`.
#[derive(Clone, Copy, Debug)]
struct SumMid {
    a: usize,
    m: usize,
    c: usize,
}

/// `[A, 1, C]` → `[A, M, C]`, repeating along `M`.
#[derive(Clone, Copy, Debug)]
struct ExpandMid {
    a: usize,
    m: usize,
    c: usize,
}

fn slice<'a, T: WithDType>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((x, y)) => Ok(&data[x..y]),
        None => candle_core::bail!("sum_mid/expand_mid need a contiguous input"),
    }
}

/// Sums in f64 whatever the input type: a sequential f32 sum over the `N·H·W` rows of a
/// BatchNorm (tens of thousands) loses digits exactly where the norm's gradients cancel.
fn sum_kernel<T: WithDType>(src: &[T], (a, m, c): (usize, usize, usize)) -> Vec<T> {
    let mut dst = Vec::with_capacity(a * c);
    let mut acc = vec![0f64; c];
    for i in 0..a {
        acc.fill(0.0);
        for row in src[i * m * c..(i + 1) * m * c].chunks_exact(c) {
            for (d, &v) in acc.iter_mut().zip(row) {
                *d += v.to_f64();
            }
        }
        dst.extend(acc.iter().map(|&v| T::from_f64(v)));
    }
    dst
}

fn expand_kernel<T: WithDType>(src: &[T], (a, m, c): (usize, usize, usize)) -> Vec<T> {
    let mut dst = Vec::with_capacity(a * m * c);
    for i in 0..a {
        for _ in 0..m {
            dst.extend_from_slice(&src[i * c..(i + 1) * c]);
        }
    }
    dst
}

macro_rules! run {
    ($storage:expr, $layout:expr, $f:ident, $dims:expr) => {
        match $storage {
            CpuStorage::F32(d) => CpuStorage::F32($f(slice(d, $layout)?, $dims)),
            CpuStorage::F64(d) => CpuStorage::F64($f(slice(d, $layout)?, $dims)),
            _ => candle_core::bail!("sum_mid/expand_mid support f32 and f64"),
        }
    };
}

impl CustomOp1 for SumMid {
    fn name(&self) -> &'static str {
        "sum-mid"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((
            run!(s, l, sum_kernel, (self.a, self.m, self.c)),
            Shape::from((self.a, 1, self.c)),
        ))
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(ExpandMid {
            a: self.a,
            m: self.m,
            c: self.c,
        })?))
    }
}

impl CustomOp1 for ExpandMid {
    fn name(&self) -> &'static str {
        "expand-mid"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((
            run!(s, l, expand_kernel, (self.a, self.m, self.c)),
            Shape::from((self.a, self.m, self.c)),
        ))
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(SumMid {
            a: self.a,
            m: self.m,
            c: self.c,
        })?))
    }
}

/// Sum of `x` `[A, M, C]` over `M`, keeping the axis: `[A, 1, C]`.
pub fn sum_mid(x: &Tensor) -> Result<Tensor> {
    let (a, m, c) = x.dims3()?;
    if !crate::cpu_custom_ops(x.device()) {
        return x.sum_keepdim(1);
    }
    x.contiguous()?.apply_op1(SumMid { a, m, c })
}

/// `x` `[A, 1, C]` repeated `m` times along the middle axis: `[A, m, C]` (materialised).
pub fn expand_mid(x: &Tensor, m: usize) -> Result<Tensor> {
    let (a, one, c) = x.dims3()?;
    if one != 1 {
        candle_core::bail!("expand_mid needs [A, 1, C], got {:?}", x.dims());
    }
    if !crate::cpu_custom_ops(x.device()) {
        return x.broadcast_as((a, m, c))?.contiguous();
    }
    x.contiguous()?.apply_op1(ExpandMid { a, m, c })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn sum_and_expand_match_candle_to_second_order() {
        let v: Vec<f64> = (0..2 * 3 * 4).map(|i| (i as f64 * 0.37).sin()).collect();
        let x = Var::from_tensor(&Tensor::from_vec(v, (2, 3, 4), &Device::Cpu).unwrap()).unwrap();
        let s = sum_mid(x.as_tensor()).unwrap();
        let r = x.as_tensor().sum_keepdim(1).unwrap();
        assert_eq!(s.to_vec3::<f64>().unwrap(), r.to_vec3::<f64>().unwrap());
        let e = expand_mid(&s, 5).unwrap();
        assert_eq!(
            e.to_vec3::<f64>().unwrap(),
            r.broadcast_as((2, 5, 4)).unwrap().to_vec3::<f64>().unwrap()
        );
        // f(x) = Σ (expand(sum(x²)) · x)²: first and second derivatives against candle's ops.
        let f = |ours: bool| {
            let sq = x.as_tensor().sqr().unwrap();
            let s = if ours {
                sum_mid(&sq).unwrap()
            } else {
                sq.sum_keepdim(1).unwrap()
            };
            let e = if ours {
                expand_mid(&s, 3).unwrap()
            } else {
                s.broadcast_as((2, 3, 4)).unwrap()
            };
            let y = (e * x.as_tensor())
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            let g = y.backward().unwrap().get(x.as_tensor()).unwrap().clone();
            let gg = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
                .get(x.as_tensor())
                .unwrap()
                .clone();
            (
                g.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                gg.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            )
        };
        let (a, b) = (f(true), f(false));
        for (p, q) in a.0.iter().zip(&b.0).chain(a.1.iter().zip(&b.1)) {
            assert!((p - q).abs() <= 1e-9 * q.abs().max(1.0), "{p} vs {q}");
        }
    }
}
