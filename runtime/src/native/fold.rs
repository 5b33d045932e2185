//! Constant folding: a node whose inputs are all constants (initializers, Constant nodes,
//! earlier folded nodes) is evaluated while the graph is lowered, and its output becomes one
//! more constant. Exporters write such nodes around the weights: PyTorch's TorchScript
//! exporter reads a freshly initialised BatchNorm's running statistics through `Identity`
//! nodes of the equal weight and bias tensors it deduplicated, and shape arithmetic
//! (`Shape`, `Gather`, `Unsqueeze`, `Concat`, `Cast`) feeds `Reshape`. [`FOLDED`] lists the
//! operators folded, one `(operator, fold)` entry each; any other all-constant node is
//! [`Unsupported`], naming it.

use super::constant::{checked_len, constant, elem, Attrs, Constant, Values};
use super::error::Unsupported;

/// A node with constant inputs, as a fold sees it.
pub(super) struct FoldNode<'a> {
    pub label: &'a str,
    pub op: &'a str,
    pub inputs: Vec<Option<&'a Constant>>,
    pub attrs: Attrs<'a>,
}

impl<'a> FoldNode<'a> {
    fn input(&self, i: usize, what: &str) -> Result<&'a Constant, Unsupported> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| self.refuse(format!("needs {what}")))
    }

    fn ints(&self, i: usize, what: &str) -> Result<&'a [i64], Unsupported> {
        self.input(i, what)?
            .i64()
            .ok_or_else(|| self.refuse(format!("{what} is not an integer tensor")))
    }

    fn refuse(&self, why: impl std::fmt::Display) -> Unsupported {
        Unsupported::at(self.label, why)
    }
}

type Fold = fn(&mut FoldNode<'_>) -> Result<Constant, Unsupported>;

/// An operator folded when its inputs are constants.
pub struct Folded {
    pub name: &'static str,
    fold: Fold,
}

const fn folded(name: &'static str, fold: Fold) -> Folded {
    Folded { name, fold }
}

/// Every operator folded on constant inputs.
pub const FOLDED: &[Folded] = &[
    folded("Constant", constant_node),
    folded("Identity", |n| n.input(0, "an input").cloned()),
    folded("Cast", cast),
    folded("Reshape", reshape),
    folded("Unsqueeze", unsqueeze),
    folded("Squeeze", squeeze),
    folded("Concat", concat),
    folded("Shape", shape),
    folded("Gather", gather),
    folded("Transpose", transpose),
    folded("ConstantOfShape", constant_of_shape),
    folded("Add", binary),
    folded("Sub", binary),
    folded("Mul", binary),
    folded("Div", binary),
    folded("Neg", unary),
    folded("Sqrt", unary),
    folded("Reciprocal", unary),
];

/// The folded operators' names, comma-separated.
pub fn names() -> String {
    FOLDED.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

/// Evaluates `op_type` on constant inputs; `Unsupported` when it is not in [`FOLDED`] or has
/// attributes or inputs a fold does not implement.
pub(super) fn fold(node: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let op_type = node.op;
    let Some(entry) = FOLDED.iter().find(|f| f.name == op_type) else {
        return Err(node.refuse(format!(
            "its inputs are all constants, and the native backend does not fold {op_type} \
             (it folds {})",
            names()
        )));
    };
    let c = (entry.fold)(node)?;
    if c.len() > MAX_VALUES {
        return Err(node.refuse(format!(
            "folds to {} values, more than the {MAX_VALUES} a constant may hold",
            c.len()
        )));
    }
    Ok(c)
}

/// The most values a folded constant may hold (2 GiB of f32, the largest model file read).
const MAX_VALUES: usize = 1 << 29;

/// The number of values of `dims`, or a refusal when it is above [`MAX_VALUES`].
fn count(n: &FoldNode<'_>, dims: &[usize]) -> Result<usize, Unsupported> {
    checked_len(dims)
        .filter(|&v| v <= MAX_VALUES)
        .ok_or_else(|| n.refuse(format!("output shape {dims:?} is too large")))
}

fn constant_node(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let a = &mut n.attrs;
    let (tensor, float, floats, int, ints) = (
        a.tensor("value"),
        a.float_opt("value_float"),
        a.floats("value_floats"),
        a.int_opt("value_int"),
        a.ints("value_ints"),
    );
    if let Some(t) = tensor {
        return constant(t);
    }
    let number = float
        .map(|v| Constant::scalar(Values::F32(vec![v])))
        .or_else(|| floats.map(|v| Constant::vector(Values::F32(v))))
        .or_else(|| int.map(|v| Constant::scalar(Values::I64(vec![v]))))
        .or_else(|| ints.map(|v| Constant::vector(Values::I64(v))));
    number.ok_or_else(|| n.refuse("only tensor and number constants are implemented"))
}

fn cast(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let to = n.attrs.int_opt("to");
    n.attrs.int_opt("saturate");
    let x = n.input(0, "an input")?;
    let values = match (to.map(|t| t as i32), &x.values) {
        (Some(elem::FLOAT | elem::DOUBLE), Values::F32(v)) => Values::F32(v.clone()),
        (Some(elem::FLOAT | elem::DOUBLE), Values::I64(v)) => {
            Values::F32(v.iter().map(|&x| x as f32).collect())
        }
        (Some(elem::INT64 | elem::INT32), Values::I64(v)) => Values::I64(v.clone()),
        // ONNX casts float to integer by truncation toward zero.
        (Some(elem::INT64 | elem::INT32), Values::F32(v)) => {
            Values::I64(v.iter().map(|&x| x.trunc() as i64).collect())
        }
        (to, _) => {
            return Err(n.refuse(format!(
                "cast to {} is not implemented",
                to.map_or("nothing", crate::onnx::elem_type_name)
            )))
        }
    };
    Ok(Constant {
        dims: x.dims.clone(),
        values,
    })
}

/// `x` with new dims (same values).
fn with_dims(x: &Constant, dims: Vec<usize>) -> Constant {
    Constant {
        dims,
        values: x.values.clone(),
    }
}

/// A (possibly negative) axis of a rank-`rank` tensor.
fn axis(n: &FoldNode<'_>, a: i64, rank: usize) -> Result<usize, Unsupported> {
    let r = rank as i64;
    if a < -r || a >= r {
        return Err(n.refuse(format!("axis {a} is outside rank {rank}")));
    }
    Ok(a.rem_euclid(r.max(1)) as usize)
}

/// [`axis`] of each of `axes`.
fn axes_of(n: &FoldNode<'_>, axes: &[i64], rank: usize) -> Result<Vec<usize>, Unsupported> {
    axes.iter().map(|&a| axis(n, a, rank)).collect()
}

fn reshape(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let allow_zero = n.attrs.int_opt("allowzero").unwrap_or(0) != 0;
    let x = n.input(0, "data")?;
    let target = n.ints(1, "a shape")?;
    let mut dims = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        dims.push(match d {
            0 if !allow_zero => *x.dims.get(i).ok_or_else(|| {
                n.refuse(format!(
                    "shape {target:?} copies a dimension {x:?} lacks",
                    x = x.dims
                ))
            })?,
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            d if d >= 0 => d as usize,
            _ => return Err(n.refuse(format!("shape {target:?} is not a valid target"))),
        });
    }
    let known = count(n, &dims)?;
    if let Some(i) = infer {
        if known == 0 || x.len() % known != 0 {
            return Err(n.refuse(format!(
                "cannot infer a dimension of {target:?} for {} values",
                x.len()
            )));
        }
        dims[i] = x.len() / known;
    }
    if count(n, &dims)? != x.len() {
        return Err(n.refuse(format!("shape {target:?} does not hold {} values", x.len())));
    }
    Ok(with_dims(x, dims))
}

/// Axes from the `axes` attribute (older opsets) or the second input (opset 13 on).
fn axes(n: &mut FoldNode<'_>) -> Result<Option<Vec<i64>>, Unsupported> {
    if let Some(a) = n.attrs.ints("axes") {
        return Ok(Some(a));
    }
    match n.inputs.get(1).copied().flatten() {
        Some(_) => Ok(Some(n.ints(1, "axes")?.to_vec())),
        None => Ok(None),
    }
}

fn unsqueeze(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let axes = axes(n)?.ok_or_else(|| n.refuse("needs axes"))?;
    let x = n.input(0, "data")?;
    let rank = x.dims.len() + axes.len();
    let mut at = axes_of(n, &axes, rank)?;
    at.sort_unstable();
    if at.windows(2).any(|w| w[0] == w[1]) {
        return Err(n.refuse(format!("axes {axes:?} repeat")));
    }
    let mut dims = x.dims.clone();
    for a in at {
        dims.insert(a, 1);
    }
    Ok(with_dims(x, dims))
}

fn squeeze(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let axes = axes(n)?;
    let x = n.input(0, "data")?;
    let rank = x.dims.len();
    let drop: Vec<usize> = match axes {
        Some(axes) => axes_of(n, &axes, rank)?,
        None => (0..rank).filter(|&i| x.dims[i] == 1).collect(),
    };
    if let Some(&a) = drop.iter().find(|&&a| x.dims[a] != 1) {
        return Err(n.refuse(format!("axis {a} of {:?} is not 1", x.dims)));
    }
    let dims = (0..rank)
        .filter(|i| !drop.contains(i))
        .map(|i| x.dims[i])
        .collect();
    Ok(with_dims(x, dims))
}

fn concat(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let a = n
        .attrs
        .int_opt("axis")
        .ok_or_else(|| n.refuse("needs an axis"))?;
    let parts: Vec<&Constant> = (0..n.inputs.len())
        .map(|i| n.input(i, "every input"))
        .collect::<Result<_, _>>()?;
    let first = parts.first().ok_or_else(|| n.refuse("has no inputs"))?;
    let rank = first.dims.len();
    let ax = axis(n, a, rank)?;
    for p in &parts {
        let same_rest =
            p.dims.len() == rank && (0..rank).all(|i| i == ax || p.dims[i] == first.dims[i]);
        if !same_rest || p.values.type_name() != first.values.type_name() {
            return Err(n.refuse(format!(
                "inputs {:?} ({}) and {:?} ({}) do not join on axis {ax}",
                first.dims,
                first.values.type_name(),
                p.dims,
                p.values.type_name()
            )));
        }
    }
    let mut dims = first.dims.clone();
    dims[ax] = parts.iter().map(|p| p.dims[ax]).sum();
    count(n, &dims)?;
    // Row-major: each part contributes blocks of dims[ax..] values per outer index.
    let outer: usize = first.dims[..ax].iter().product();
    let inner: usize = first.dims[ax + 1..].iter().product();
    let values = match &first.values {
        Values::F32(_) => Values::F32(interleave(&parts, ax, outer, inner, Constant::f32)),
        Values::I64(_) => Values::I64(interleave(&parts, ax, outer, inner, Constant::i64)),
    };
    Ok(Constant { dims, values })
}

/// Concatenation along axis `ax`, with `outer` blocks before it and `inner` values per step
/// of it after.
fn interleave<T: Copy>(
    parts: &[&Constant],
    ax: usize,
    outer: usize,
    inner: usize,
    values: impl Fn(&Constant) -> Option<&[T]>,
) -> Vec<T> {
    let mut out = Vec::new();
    for o in 0..outer {
        for p in parts {
            let len = p.dims[ax] * inner;
            let v = values(p).expect("the types were checked");
            out.extend_from_slice(&v[o * len..(o + 1) * len]);
        }
    }
    out
}

fn shape(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let start = n.attrs.int_opt("start").unwrap_or(0);
    let end = n.attrs.int_opt("end");
    let x = n.input(0, "data")?;
    let r = x.dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let dims: Vec<i64> = x.dims[s..e.max(s)].iter().map(|&d| d as i64).collect();
    Ok(Constant::vector(Values::I64(dims)))
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

fn gather(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let a = n.attrs.int_opt("axis").unwrap_or(0);
    let x = n.input(0, "data")?;
    let idx = n.input(1, "indices")?;
    let iv = idx
        .i64()
        .ok_or_else(|| n.refuse("indices are not an integer tensor"))?;
    let ax = axis(n, a, x.dims.len())?;
    let size = x.dims[ax];
    let picks: Vec<usize> = iv
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + size as i64 } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < size)
                .ok_or_else(|| n.refuse(format!("index {i} is outside axis {ax} of {size}")))
        })
        .collect::<Result<_, _>>()?;
    let mut dims = x.dims[..ax].to_vec();
    dims.extend_from_slice(&idx.dims);
    dims.extend_from_slice(&x.dims[ax + 1..]);
    count(n, &dims)?;
    let outer: usize = x.dims[..ax].iter().product();
    let inner: usize = x.dims[ax + 1..].iter().product();
    let mut at = Vec::with_capacity(outer * picks.len() * inner);
    for o in 0..outer {
        for &p in &picks {
            let base = (o * size + p) * inner;
            at.extend(base..base + inner);
        }
    }
    Ok(Constant {
        dims,
        values: x.values.take(&at),
    })
}

fn transpose(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let perm = n.attrs.ints("perm");
    let x = n.input(0, "data")?;
    let rank = x.dims.len();
    let perm: Vec<usize> = match perm {
        Some(p) => axes_of(n, &p, rank)?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = perm.clone();
    seen.sort_unstable();
    if seen != (0..rank).collect::<Vec<_>>() {
        return Err(n.refuse(format!("perm {perm:?} is not a permutation of {rank} axes")));
    }
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
    let (from, to) = (strides(&x.dims), strides(&dims));
    let at: Vec<usize> = (0..x.len())
        .map(|flat| {
            perm.iter()
                .enumerate()
                .map(|(i, &p)| (flat / to[i]) % dims[i] * from[p])
                .sum()
        })
        .collect();
    Ok(Constant {
        dims,
        values: x.values.take(&at),
    })
}

fn constant_of_shape(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let value = n.attrs.tensor("value").map(constant).transpose()?;
    let target = n.ints(0, "a shape")?;
    let dims: Vec<usize> = target
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| n.refuse(format!("shape {target:?} is negative"))))
        .collect::<Result<_, _>>()?;
    let len = count(n, &dims)?;
    let values = match value.map(|v| v.values) {
        None => Values::F32(vec![0.0; len]),
        Some(Values::F32(v)) if v.len() == 1 => Values::F32(vec![v[0]; len]),
        Some(Values::I64(v)) if v.len() == 1 => Values::I64(vec![v[0]; len]),
        Some(_) => return Err(n.refuse("value holds more than one element")),
    };
    Ok(Constant { dims, values })
}

/// The broadcast shape of `a` and `b` (numpy's rule).
fn broadcast(n: &FoldNode<'_>, a: &[usize], b: &[usize]) -> Result<Vec<usize>, Unsupported> {
    let rank = a.len().max(b.len());
    let at = |d: &[usize], i: usize| (i + d.len()).checked_sub(rank).map_or(1, |j| d[j]);
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(n.refuse(format!("shapes {a:?} and {b:?} do not broadcast"))),
        })
        .collect()
}

/// For each value of the broadcast shape `out`, the index of the value of `dims` it reads.
fn broadcast_indices(out: &[usize], dims: &[usize]) -> Vec<usize> {
    let pad = out.len() - dims.len();
    let from = strides(dims);
    let to = strides(out);
    let total: usize = out.iter().product();
    (0..total)
        .map(|flat| {
            (pad..out.len())
                .filter(|&i| dims[i - pad] != 1)
                .map(|i| (flat / to[i]) % out[i] * from[i - pad])
                .sum()
        })
        .collect()
}

fn binary(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let op = n.op;
    let (a, b) = (n.input(0, "two inputs")?, n.input(1, "two inputs")?);
    let dims = broadcast(n, &a.dims, &b.dims)?;
    count(n, &dims)?;
    let (ia, ib) = (
        broadcast_indices(&dims, &a.dims),
        broadcast_indices(&dims, &b.dims),
    );
    let values = match (a.values.take(&ia), b.values.take(&ib)) {
        (Values::F32(x), Values::F32(y)) => {
            let f: fn(f32, f32) -> f32 = match op {
                "Add" => |x, y| x + y,
                "Sub" => |x, y| x - y,
                "Mul" => |x, y| x * y,
                _ => |x, y| x / y,
            };
            Values::F32(x.iter().zip(&y).map(|(&x, &y)| f(x, y)).collect())
        }
        (Values::I64(x), Values::I64(y)) => {
            if op == "Div" && y.contains(&0) {
                return Err(n.refuse("integer division by zero"));
            }
            let f: fn(i64, i64) -> i64 = match op {
                "Add" => i64::wrapping_add,
                "Sub" => i64::wrapping_sub,
                "Mul" => i64::wrapping_mul,
                _ => i64::wrapping_div,
            };
            Values::I64(x.iter().zip(&y).map(|(&x, &y)| f(x, y)).collect())
        }
        (x, y) => {
            return Err(n.refuse(format!(
                "inputs of types {} and {} differ",
                x.type_name(),
                y.type_name()
            )))
        }
    };
    Ok(Constant { dims, values })
}

fn unary(n: &mut FoldNode<'_>) -> Result<Constant, Unsupported> {
    let x = n.input(0, "an input")?;
    let values = match (&x.values, n.op) {
        (Values::F32(v), "Neg") => Values::F32(v.iter().map(|&x| -x).collect()),
        (Values::F32(v), "Sqrt") => Values::F32(v.iter().map(|&x| x.sqrt()).collect()),
        (Values::F32(v), _) => Values::F32(v.iter().map(|&x| 1.0 / x).collect()),
        (Values::I64(v), "Neg") => Values::I64(v.iter().map(|&x| x.wrapping_neg()).collect()),
        (Values::I64(_), op) => {
            return Err(n.refuse(format!("{op} of an integer tensor is not implemented")))
        }
    };
    Ok(Constant {
        dims: x.dims.clone(),
        values,
    })
}

#[cfg(test)]
mod tests;
