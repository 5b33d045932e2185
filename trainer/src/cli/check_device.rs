//! `trainer check-device`: one training step on a device against the CPU engine, every
//! number's relative error printed; the pass/fail rule is [`crate::parity::judge`]. With
//! `--nccl`, also the NCCL sums of data-parallel GPU training, one rank alone.

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
    if args.nccl && !cfg!(feature = "nccl") {
        bail!("--nccl needs a trainer built with `--features nccl` (scripts/gpu/build-cuda.sh builds one as trainer-nccl)");
    }
    let device = parse_device(&args.device)?;
    if args.nccl && device.is_cpu() {
        bail!("--nccl checks NCCL's sums of GPU tensors: use --device cuda");
    }
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
    #[cfg(feature = "nccl")]
    if args.nccl {
        check_nccl(&preset, args.batch_size, args.seed, &device, &args.device)?;
    }
    Ok(())
}

/// One rank alone in an NCCL communicator on `device`: a sum over the ranks returns its input
/// exactly, and the generator's training forward and backward with synchronised BatchNorm
/// (statistics and gradients through NCCL) equal those without it.
#[cfg(feature = "nccl")]
fn check_nccl(
    preset: &wgan_models::Preset,
    batch: usize,
    seed: u64,
    device: &candle_core::Device,
    name: &str,
) -> Result<()> {
    use crate::collective::{nccl::Nccl, BatchNormSync, Single};
    use candle_core::Tensor;
    use std::sync::Arc;
    use wgan_models::rank_sum::RankSum;
    use wgan_models::{Generator, Gradients, Mode};

    let sum = RankSum::on_host(Arc::new(BatchNormSync(Arc::new(Single))))
        .with_device(Arc::new(Nccl::alone(device)?));
    let x = Tensor::from_vec(wgan_models::latent::latents(seed, 4, 1000), 4000, device)?;
    let exact = (sum.sum(&x)? - &x)?.abs()?.max(0)?.to_scalar::<f32>()?;
    if exact != 0.0 {
        bail!("NCCL's sum over one rank changed its input by up to {exact:e}");
    }
    let mut rng = wgan_models::latent::Rng::new(seed);
    let mut g = Generator::new(preset, &mut rng, DType::F32, device)?;
    let z = wgan_models::latent::latents(seed, batch, preset.z_dim);
    let z = Tensor::from_vec(z, (batch, preset.z_dim, 1, 1), device)?;
    let pass = |g: &mut Generator| -> Result<Vec<f32>> {
        let out = g.forward(&z, Mode::Train)?;
        let grads = Gradients::from_grad_store(&g.params, &out.sqr()?.sum_all()?.backward()?)?;
        let mut all = out.flatten_all()?.to_vec1::<f32>()?;
        for t in grads.0 {
            all.extend(t.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(all)
    };
    let alone = pass(&mut g)?;
    g.synchronise_batchnorm(Some(sum));
    let synced = pass(&mut g)?;
    let worst = alone
        .iter()
        .zip(&synced)
        .map(|(a, b)| ((a - b).abs() / a.abs().max(1e-3)) as f64)
        .fold(0.0, f64::max);
    outln!(
        "NCCL, 1 rank on {name}: a sum over the ranks is exact; synchronised BatchNorm's forward and backward against the unsynchronised: {worst:.1e} (relative)"
    )?;
    if worst > 1e-6 {
        bail!("synchronised BatchNorm through NCCL differs from BatchNorm without it by {worst:e}");
    }
    outln!("ok: NCCL")?;
    Ok(())
}
