//! ONNX constants and node attributes as the lowering reads them: initializers and Constant
//! nodes decoded to f32 or i64 values, attributes read once each (the rest are refused).

use super::plan::Shape;
use crate::onnx_proto as proto;
use std::collections::HashMap;

/// A constant tensor: shape and values (f32, or i64 for shapes).
#[derive(Clone, Debug)]
pub(super) struct Constant {
    pub dims: Vec<usize>,
    pub f32: Option<Vec<f32>>,
    pub i64: Option<Vec<i64>>,
}

impl Constant {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;

pub(super) fn constant(t: &proto::TensorProto) -> std::result::Result<Constant, String> {
    if t.data_location == 1 {
        return Err(format!(
            "tensor '{}' keeps its data in an external file",
            t.name
        ));
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("tensor '{}' has dimension {d}", t.name)))
        .collect::<std::result::Result<_, _>>()?;
    let len: usize = dims.iter().product();
    let raw = |size: usize| -> std::result::Result<Option<&[u8]>, String> {
        if t.raw_data.is_empty() {
            return Ok(None);
        }
        if t.raw_data.len() != len * size {
            return Err(format!(
                "tensor '{}' has {} bytes of data for {len} values",
                t.name,
                t.raw_data.len()
            ));
        }
        Ok(Some(&t.raw_data))
    };
    let (f, i) = match t.data_type {
        FLOAT => {
            let v = match raw(4)? {
                Some(b) => little_endian(b, f32::from_le_bytes),
                None => t.float_data.clone(),
            };
            (Some(v), None)
        }
        DOUBLE => {
            let v = match raw(8)? {
                Some(b) => little_endian(b, |c| f64::from_le_bytes(c) as f32),
                None => t.double_data.iter().map(|&v| v as f32).collect(),
            };
            (Some(v), None)
        }
        INT64 => {
            let v = match raw(8)? {
                Some(b) => little_endian(b, i64::from_le_bytes),
                None => t.int64_data.clone(),
            };
            (None, Some(v))
        }
        other => {
            return Err(format!(
                "tensor '{}' has element type {} (the native backend reads f32, f64 and i64)",
                t.name,
                crate::onnx::elem_type_name(other)
            ))
        }
    };
    let n = f
        .as_ref()
        .map_or_else(|| i.as_ref().map_or(0, Vec::len), Vec::len);
    if n != len {
        return Err(format!(
            "tensor '{}' has {n} values for shape {dims:?}",
            t.name
        ));
    }
    Ok(Constant {
        dims,
        f32: f,
        i64: i,
    })
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
    pub map: HashMap<&'a str, &'a proto::AttributeProto>,
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
    pub fn float(&mut self, name: &str, default: f32) -> f32 {
        self.map.remove(name).map_or(default, |a| a.f)
    }
    pub fn string(&mut self, name: &str) -> Option<String> {
        self.map
            .remove(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    /// Rejects attributes nobody read.
    pub fn finish(self) -> std::result::Result<(), String> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("{}: attribute '{k}' is not implemented", self.node)),
        }
    }
}

/// `f32` values of a constant.
pub(super) fn floats<'c>(
    label: &str,
    what: &str,
    t: &'c Constant,
) -> std::result::Result<&'c [f32], String> {
    t.f32
        .as_deref()
        .ok_or_else(|| format!("{label}: {what} is not a float tensor"))
}

/// Per-channel values of `t` for `c` channels on the last axis: a scalar, `[c]`, `[1, c]` for
/// flat rows, or `[c, 1, 1]` / `[1, c, 1, 1]` for images.
pub(super) fn per_channel(
    label: &str,
    t: &Constant,
    shape: Shape,
) -> std::result::Result<Vec<f32>, String> {
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
        return Err(format!(
            "{label}: a constant of shape {:?} is not per-channel for {shape:?}",
            t.dims
        ));
    }
    Ok(v.to_vec())
}
