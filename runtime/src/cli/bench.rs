//! `runtime bench`: a latency table per batch size.

use super::args::BenchArgs;
use super::gen::check_batch_memory;
use anyhow::{ensure, Result};
use wgan_models::outln;

/// Most timed runs `bench --iters` takes.
const MAX_BENCH_ITERS: usize = 1_000_000;

pub(crate) fn bench(args: BenchArgs) -> Result<()> {
    ensure!(
        !args.batch_sizes.is_empty(),
        "--batch-sizes needs at least one size"
    );
    ensure!(
        args.batch_sizes.iter().all(|&b| b > 0),
        "--batch-sizes must all be at least 1"
    );
    ensure!(args.iters > 0, "--iters must be at least 1");
    ensure!(
        args.iters <= MAX_BENCH_ITERS,
        "--iters must be at most {MAX_BENCH_ITERS} (the timings are kept to take the median)"
    );
    let (mut generator, name) = args.engine.load()?;
    for &b in &args.batch_sizes {
        check_batch_memory("--batch-sizes", b, generator.contract())?;
    }
    outln!("model:   {name} ({})", generator.contract().summary())?;
    outln!("backend: {}", generator.describe())?;
    outln!(
        "{:>6} {:>12} {:>12} {:>12} {:>12}",
        "batch",
        "median ms",
        "p90 ms",
        "min ms",
        "images/s"
    )?;
    for &b in &args.batch_sizes {
        let row = wgan_runtime::bench(&mut generator, &[b], args.iters)?.remove(0);
        outln!(
            "{:>6} {:>12.2} {:>12.2} {:>12.2} {:>12.1}",
            row.batch,
            row.median_ms,
            row.p90_ms,
            row.min_ms,
            row.images_per_s
        )?;
    }
    Ok(())
}
