//! Helpers shared by the workspace's tests and benches, in one place (see ARCHITECTURE.md,
//! "Where tests go"):
//!
//! - [`binaries`]: the workspace binaries, run, and their exit contract (exit 2 with one
//!   `error:` line);
//! - [`numbers`]: comparisons of outputs (`max_abs_diff`, `relative_l2`, `mean_std`, and with the `candle`
//!   feature tensors as flat `f64`);
//! - [`python`]: the test environment's Python, found, never skipped;
//! - [`fixtures`]: data files written in code (IDX, gzip, PNG decompression bombs) and GIFs
//!   decoded;
//! - [`fs`]: temporary folders, FIFOs and private device nodes.

pub mod binaries;
pub mod fixtures;
pub mod fs;
pub mod numbers;
pub mod python;

pub use binaries::{assert_input_error, assert_one_error_line, binary, stderr, text};
pub use numbers::{max_abs_diff, mean_std, relative_l2};
