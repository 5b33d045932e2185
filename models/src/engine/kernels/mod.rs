//! Fused single-pass kernels on channels-last buffers: patch gathering ([`im2col`]),
//! activations and biases ([`act`]), normalisation forward, backward and second-order
//! backward ([`norm`]).

mod act;
mod im2col;
mod norm;

pub use act::{activation_backward, bias_activation, is_piecewise_linear};
pub use im2col::{col2im, im2col, Geometry};
pub use norm::*;
