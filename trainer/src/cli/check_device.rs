//! `trainer check-device`: one training step on a device against the CPU engine, every
//! number's relative error printed; the pass/fail rule is [`crate::parity::judge`].

use super::CheckDeviceArgs;
use crate::train::parse_device;
use anyhow::{bail, Result};
use candle_core::DType;
use wgan_models::outln;

pub(super) fn check_device(args: &CheckDeviceArgs) -> Result<()> {
    use crate::parity::{autograd_step, engine_step, errors, judge, worst, Setup, F64_PARITY};
    if args.tolerance.is_nan() || args.tolerance <= 0.0 {
        bail!("--tolerance must be positive");
    }
    let preset = wgan_models::preset(&args.preset, args.channels)?;
    let device = parse_device(&args.device)?;
    crate::train::check_batch_memory(args.batch_size, &preset, &candle_core::Device::Cpu)?;
    let setup = Setup::new(&preset, args.batch_size, args.seed)?;
    let reference = engine_step::<f64>(&setup)?;
    wgan_models::use_generic_ops_on_cpu(args.generic_ops);
    let cpu32 = errors(&engine_step::<f32>(&setup)?, &reference);
    let dev32 = errors(&autograd_step(&setup, DType::F32, &device)?, &reference);
    let dev64 = errors(&autograd_step(&setup, DType::F64, &device)?, &reference);
    let path = if args.generic_ops || !device.is_cpu() {
        "generic tensor ops"
    } else {
        "CPU custom ops"
    };
    outln!(
        "{}, batch {}, seed {}, autograd through {path}: relative errors against the CPU engine in f64\n",
        preset.name, args.batch_size, args.seed
    )?;
    let d = &args.device;
    outln!("| quantity | max abs | CPU engine f32 | {d} autograd f32 | {d} autograd f64 |")?;
    outln!("|---|---|---|---|---|")?;
    for ((a, b), c) in cpu32.iter().zip(&dev32).zip(&dev64) {
        outln!(
            "| {} | {:.3e} | {:.1e} | {:.1e} | {:.1e} |",
            a.name,
            a.scale,
            a.rel_error,
            b.rel_error,
            c.rel_error
        )?;
    }
    let d = &args.device;
    let (w64, w32, wcpu) = (worst(&dev64), worst(&dev32), worst(&cpu32));
    outln!(
        "\nworst: {d} f64 {:.1e} ({}), {d} f32 {:.1e} ({}), CPU engine f32 {:.1e} ({})",
        w64.rel_error,
        w64.name,
        w32.rel_error,
        w32.name,
        wcpu.rel_error,
        wcpu.name
    )?;
    judge(&cpu32, &dev32, &dev64, args.tolerance, d)?;
    outln!(
        "ok: {d} agrees with the CPU engine (f64 within {F64_PARITY:.0e}, f32 within tolerance)"
    )?;
    Ok(())
}
