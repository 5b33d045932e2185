//! ONNX constants and node attributes as the lowering reads them: initializers and folded
//! nodes as f32 or i64 values, attributes read once each (the rest are refused).

use super::error::Unsupported;
use super::plan::Shape;
pub(super) use crate::onnx::elem;
use crate::onnx_proto as proto;
use std::collections::HashMap;

/// A constant tensor's values: f32 (f64 tensors are narrowed, as the native backend computes in
/// f32) or i64 (shapes, indices; i32 tensors are widened).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    /// The values at `indices`, in that order.
    pub fn take(&self, indices: &[usize]) -> Values {
        match self {
            Values::F32(v) => Values::F32(indices.iter().map(|&i| v[i]).collect()),
            Values::I64(v) => Values::I64(indices.iter().map(|&i| v[i]).collect()),
        }
    }

    /// The element type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Values::F32(_) => "float",
            Values::I64(_) => "int64",
        }
    }
}

/// A constant tensor: shape and values.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Constant {
    pub dims: Vec<usize>,
    pub values: Values,
}

impl Constant {
    /// A rank-0 tensor of one value.
    pub fn scalar(values: Values) -> Constant {
        debug_assert_eq!(values.len(), 1);
        Constant {
            dims: vec![],
            values,
        }
    }

    /// A rank-1 tensor of `values`.
    pub fn vector(values: Values) -> Constant {
        Constant {
            dims: vec![values.len()],
            values,
        }
    }

    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn f32(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) => Some(v),
            Values::I64(_) => None,
        }
    }

    pub fn i64(&self) -> Option<&[i64]> {
        match &self.values {
            Values::I64(v) => Some(v),
            Values::F32(_) => None,
        }
    }
}

/// The number of values of a tensor of `dims`, `None` when it overflows.
pub(super) fn checked_len(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Decodes an initializer or a Constant node's tensor.
pub(super) fn constant(t: &proto::TensorProto) -> Result<Constant, Unsupported> {
    let fail = |why: String| Unsupported::graph(format!("tensor '{}' {why}", t.name));
    if t.data_location == 1 {
        return Err(fail("keeps its data in an external file".into()));
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| fail(format!("has dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let len =
        checked_len(&dims).ok_or_else(|| fail(format!("has shape {dims:?}, too many values")))?;
    let raw = |size: usize| -> Result<Option<&[u8]>, Unsupported> {
        if t.raw_data.is_empty() {
            return Ok(None);
        }
        if Some(t.raw_data.len()) != len.checked_mul(size) {
            return Err(fail(format!(
                "has {} bytes of data for {len} values",
                t.raw_data.len()
            )));
        }
        Ok(Some(&t.raw_data))
    };
    let values = match t.data_type {
        elem::FLOAT => Values::F32(match raw(4)? {
            Some(b) => little_endian(b, f32::from_le_bytes),
            None => t.float_data.clone(),
        }),
        elem::DOUBLE => Values::F32(match raw(8)? {
            Some(b) => little_endian(b, |c| f64::from_le_bytes(c) as f32),
            None => t.double_data.iter().map(|&v| v as f32).collect(),
        }),
        elem::INT64 => Values::I64(match raw(8)? {
            Some(b) => little_endian(b, i64::from_le_bytes),
            None => t.int64_data.clone(),
        }),
        elem::INT32 => Values::I64(match raw(4)? {
            Some(b) => little_endian(b, |c| i32::from_le_bytes(c) as i64),
            None => t.int32_data.iter().map(|&v| v as i64).collect(),
        }),
        other => {
            return Err(fail(format!(
                "has element type {} (the native backend reads float, double, int32 and int64)",
                crate::onnx::elem_type_name(other)
            )))
        }
    };
    if values.len() != len {
        return Err(fail(format!(
            "has {} values for shape {dims:?}",
            values.len()
        )));
    }
    Ok(Constant { dims, values })
}

/// `raw_data` as values of `N` little-endian bytes each (its length was checked).
fn little_endian<const N: usize, T>(bytes: &[u8], value: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| value(c.try_into().expect("chunks of N bytes")))
        .collect()
}

/// A node's attributes by name, each read at most once; [`Attrs::finish`] rejects the rest.
pub(super) struct Attrs<'a> {
    node: &'a str,
    map: HashMap<&'a str, &'a proto::AttributeProto>,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a str, n: &'a proto::NodeProto) -> Self {
        Attrs {
            node,
            map: n.attribute.iter().map(|a| (a.name.as_str(), a)).collect(),
        }
    }
    pub fn ints(&mut self, name: &str) -> Option<Vec<i64>> {
        self.map.remove(name).map(|a| a.ints.clone())
    }
    pub fn int(&mut self, name: &str, default: i64) -> i64 {
        self.map.remove(name).map_or(default, |a| a.i)
    }
    pub fn int_opt(&mut self, name: &str) -> Option<i64> {
        self.map.remove(name).map(|a| a.i)
    }
    pub fn float_opt(&mut self, name: &str) -> Option<f32> {
        self.map.remove(name).map(|a| a.f)
    }
    pub fn float(&mut self, name: &str, default: f32) -> f32 {
        self.map.remove(name).map_or(default, |a| a.f)
    }
    pub fn floats(&mut self, name: &str) -> Option<Vec<f32>> {
        self.map.remove(name).map(|a| a.floats.clone())
    }
    pub fn string(&mut self, name: &str) -> Option<String> {
        self.map
            .remove(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    pub fn tensor(&mut self, name: &str) -> Option<&'a proto::TensorProto> {
        self.map.remove(name).and_then(|a| a.t.as_ref())
    }
    /// Rejects attributes nobody read.
    pub fn finish(self) -> Result<(), Unsupported> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(Unsupported::at(
                self.node,
                format!("attribute '{k}' is not implemented"),
            )),
        }
    }
}

/// `f32` values of a constant.
pub(super) fn floats<'c>(
    label: &str,
    what: &str,
    t: &'c Constant,
) -> Result<&'c [f32], Unsupported> {
    t.f32()
        .ok_or_else(|| Unsupported::at(label, format!("{what} is not a float tensor")))
}

/// Per-channel values of `t` for `c` channels on the last axis: a scalar, `[c]`, `[1, c]` for
/// flat rows, or `[c, 1, 1]` / `[1, c, 1, 1]` for images.
pub(super) fn per_channel(
    label: &str,
    t: &Constant,
    shape: Shape,
) -> Result<Vec<f32>, Unsupported> {
    let v = floats(label, "the constant", t)?;
    let c = shape.channels();
    if t.len() == 1 {
        return Ok(vec![v[0]; c]);
    }
    let dims: Vec<usize> = t.dims.iter().copied().skip_while(|&d| d == 1).collect();
    let ok = match shape {
        Shape::Flat(_) => dims == [c],
        // [C] alone would broadcast over the last axis of [N, C, H, W], the width.
        Shape::Image { .. } => dims == [c, 1, 1],
    };
    if !ok {
        return Err(Unsupported::at(
            label,
            format!(
                "a constant of shape {:?} is not per-channel for {shape:?}",
                t.dims
            ),
        ));
    }
    Ok(v.to_vec())
}
