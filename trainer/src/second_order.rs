//! Second-order gradients in candle.
//!
//! candle detaches every intermediate gradient during `backward()` unless the environment
//! variable `CANDLE_GRAD_DO_NOT_DETACH` is set, and then the gradient penalty's gradient is
//! silently wrong. The variable is read once per thread (at the thread's first backward) and
//! cached. It also keeps every intermediate gradient alive, which costs memory where no second
//! order is needed. The trainer therefore:
//! 1. pins first-order mode on the main thread ([`pin_first_order_on_this_thread`]) and then
//!    sets the variable ([`enable_for_new_threads`]) before any other thread exists;
//! 2. runs the critic steps on a fresh thread and checks there, every time, that second-order
//!    gradients really work ([`check_current_thread`]), failing loudly otherwise;
//! 3. runs the generator step on the main thread, where first order is enough.

use anyhow::{bail, Result};
use candle_core::{Device, Var};

/// Name of candle's switch.
pub const ENV_VAR: &str = "CANDLE_GRAD_DO_NOT_DETACH";

/// Whether backward passes on the current thread keep gradient graphs (probes once).
pub fn current_thread_keeps_graphs() -> Result<bool> {
    // y = x³ at x = 2: dy/dx = 3x² = 12 and d²y/dx² = 6x = 12.
    let x = Var::new(2f64, &Device::Cpu)?;
    let y = x.as_tensor().mul(x.as_tensor())?.mul(x.as_tensor())?;
    let g = y.backward()?.get(x.as_tensor()).cloned();
    let Some(g) = g else {
        bail!("first-order gradient missing in the probe")
    };
    if (g.to_scalar::<f64>()? - 12.0).abs() > 1e-12 {
        bail!("first-order gradient of the probe is wrong");
    }
    let second = g
        .backward()?
        .get(x.as_tensor())
        .map(|t| t.to_scalar::<f64>())
        .transpose()?;
    Ok(matches!(second, Some(v) if (v - 12.0).abs() < 1e-12))
}

/// Fails with an actionable message unless the current thread computes second-order gradients.
pub fn check_current_thread() -> Result<()> {
    if current_thread_keeps_graphs()? {
        return Ok(());
    }
    bail!(
        "second-order gradients are disabled on this thread, so the gradient penalty would be wrong: \
         set {ENV_VAR}=1 in the environment before the process starts threads \
         (the `trainer` binary does this itself)"
    )
}

/// Makes the current thread use first-order (detaching, memory-lean) backward passes for its
/// whole life, whatever the environment says later. Call before [`enable_for_new_threads`].
pub fn pin_first_order_on_this_thread() {
    // The first backward on a thread caches the variable's value for that thread.
    let _ = current_thread_keeps_graphs();
}

/// Sets the variable for threads started from now on.
///
/// Call it at the start of `main`, before any other thread exists: changing the environment
/// while another thread reads it is undefined behaviour on some platforms.
pub fn enable_for_new_threads() {
    if std::env::var_os(ENV_VAR).is_none() {
        std::env::set_var(ENV_VAR, "1");
    }
}
