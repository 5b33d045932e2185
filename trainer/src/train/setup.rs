//! Starting a new run ([`Trainer::new`] and its variants), and what a run checks and claims
//! before it trains: memory for its batch and weights, its thread pool, its folder (claimed,
//! and removed again if the start fails), the ranks' agreement on the configuration, and its
//! data.

use super::*;

impl Trainer {
    /// Starts a new run in `run_dir`: a new or empty directory (created with its parents).
    /// Nothing is created until the configuration, device and data have been checked.
    pub fn new(config: TrainConfig, run_dir: &Path) -> Result<Self> {
        Self::new_on(config, Some(run_dir), Arc::new(Single))
    }

    /// Starts a new run in a fresh directory `runs/<UTC timestamp>` (with a `-N` suffix when
    /// that name is taken, so runs started in the same second never share a directory).
    pub fn new_in_default_dir(config: TrainConfig) -> Result<Self> {
        Self::new_on(config, None, Arc::new(Single))
    }

    /// Starts a new run as one rank of `ranks` (see ARCHITECTURE.md, "Data-parallel
    /// training"): every rank calls this with the same configuration; rank 0 claims the run
    /// folder (`run_dir`, or `runs/<UTC timestamp>`) and alone writes to it.
    pub fn new_on(
        config: TrainConfig,
        run_dir: Option<&Path>,
        ranks: Arc<dyn Collective>,
    ) -> Result<Self> {
        let claim = move || match run_dir {
            Some(dir) => claim_run_dir(dir).map(|()| dir.to_path_buf()),
            None => claim_default_run_dir(),
        };
        Self::start(config, claim, ranks)
    }

    fn start(
        mut config: TrainConfig,
        claim: impl FnOnce() -> Result<PathBuf>,
        ranks: Arc<dyn Collective>,
    ) -> Result<Self> {
        let c = ranks.as_ref();
        let lead = c.rank() == 0;
        // Checked on every rank before anything is created; one rank's error is everyone's.
        let checked = agree(
            c,
            (|| {
                config.validate()?;
                let preset = config.preset()?;
                config.set_architecture(&preset);
                config.threads = Some(config.threads.unwrap_or_else(crate::data::default_threads));
                let device = parse_rank_device(&config.device, c.local_rank())?;
                check_ranks(&config, &device, c)?;
                check_weights_memory(&preset)?;
                check_batch_memory(config.batch_size / c.size(), &preset, &device)?;
                let plan = DataPlan::new(&config)?;
                // Absolute, so that `trainer resume` finds the data from any working directory.
                if let Some(data) = &config.data {
                    config.data =
                        Some(std::fs::canonicalize(data).unwrap_or_else(|_| data.clone()));
                }
                let pool = thread_pool(&config)?;
                Ok((preset, device, plan, pool))
            })(),
        )?;
        let (preset, device, plan, pool) = checked;
        check_same_configuration(c, &config)?;
        // Rank 0 claims the run folder and tells the others where it is.
        let claimed = agree(
            c,
            match lead {
                true => claim().and_then(|dir| {
                    let claimed = ClaimedRunDir::new(&dir);
                    let lock = RunLock::acquire(&dir)?;
                    Ok(Some((dir, claimed, lock)))
                }),
                false => Ok(None),
            },
        )?;
        let run_dir = PathBuf::from(
            String::from_utf8_lossy(&broadcast(
                c,
                claimed
                    .as_ref()
                    .map_or(&[][..], |(d, _, _)| d.as_os_str().as_encoded_bytes()),
            ))
            .into_owned(),
        );
        let data = open_run_data(plan, &config, &preset, &run_dir, c)?;
        let rank_sum = crate::collective::rank_sum(&ranks, &device)?;
        let mut rng = Rng::new(config.seed);
        let mut generator = Generator::new(&preset, &mut rng, DType::F32, &device)?;
        generator.synchronise_batchnorm(rank_sum.clone());
        let critic = Critic::new(&preset, &mut rng, DType::F32, &device)?;
        let opt_g = Adam::new(config.adam, &generator.params)?;
        let opt_c = Adam::new(config.adam, &critic.params)?;
        let ema = config
            .ema
            .map(|decay| Ema::new(decay, &generator))
            .transpose()?;
        let data_seed = rng.next_u64();
        let sample_seed = rng.next_u64();
        let loader = Loader::sliced(
            data.training.clone(),
            config.batch_size,
            data_seed,
            0,
            config.mirror,
            (c.rank(), c.size()),
        );
        let engines = Engines::for_device(&preset, &device, &ranks)?;
        let lock = match claimed {
            Some((dir, claimed, lock)) => {
                wgan_models::output::write_atomic(
                    &dir.join(ckpt::CONFIG_JSON),
                    serde_json::to_string_pretty(&config)?.as_bytes(),
                )?;
                wgan_models::output::write_atomic(
                    &dir.join(crate::config_file::CONFIG_TOML),
                    crate::config_file::to_toml(&config)?.as_bytes(),
                )?;
                claimed.keep();
                Some(lock)
            }
            None => None,
        };
        Ok(Self {
            dataset_description: data.training.description.clone(),
            data_record: data.record,
            pool,
            config,
            preset,
            device,
            run_dir,
            generator,
            critic,
            opt_g,
            opt_c,
            step: 0,
            ema,
            rng,
            data_seed,
            loader,
            sample_seed,
            elapsed_secs: 0.0,
            metrics: Vec::new(),
            engines,
            rank_sum,
            warnings: Vec::new(),
            ranks,
            _lock: lock,
            tensorboard: None,
        })
    }
}

/// Checks, before anything is allocated, that a training batch fits in the memory available:
/// on the CPU a lower bound of the engines' buffers, on a GPU the host's share (the loader's
/// batches). The CPU bound: the critic's activations of the real, generated and interpolated
/// rows, each kept in several forms for the second-order pass, and the generator's. Measured
/// peak memory grows by 8.7 MB per sample for `dcgan64` (1 channel) and 1.9 MB for `small`;
/// these coefficients give about 80 % of that, so only batches that cannot fit are refused.
pub fn check_batch_memory(batch_size: usize, preset: &Preset, device: &Device) -> Result<()> {
    use wgan_models::limits;
    let image = preset.channels * preset.image_size * preset.image_size;
    let per_sample = match device.is_cpu() {
        true => {
            3 * image
                + 12 * preset.critic.activation_values(preset.image_size)
                + preset.generator.activation_values(1)
        }
        false => 2 * image,
    };
    let what = format!("training with --batch-size {batch_size}");
    let values = limits::count(&what, &[batch_size, per_sample])?;
    limits::check_memory(
        &what,
        limits::bytes(&what, values, 4)?,
        "use a smaller --batch-size",
    )
}

/// Copies of every weight a run holds: the weights, their gradients, Adam's two moments, the
/// engines' layout copies and a moving average.
const WEIGHT_COPIES: usize = 6;

/// Checks, before the networks are built, that their weights and what training keeps beside
/// them fit in the memory available, saying how much they need.
pub fn check_weights_memory(preset: &Preset) -> Result<()> {
    use wgan_models::limits;
    let what = format!(
        "the networks of {} ({} weights)",
        preset.architecture(),
        preset.parameter_count()
    );
    let values = limits::count(&what, &[preset.parameter_count(), WEIGHT_COPIES])?;
    limits::check_memory(
        &what,
        limits::bytes(&what, values, 4)?,
        "use a smaller --width (or --g-width / --c-width)",
    )
}

/// The pool of `config.threads` threads the engine's kernels run on.
pub(super) fn thread_pool(config: &TrainConfig) -> Result<Arc<rayon::ThreadPool>> {
    let threads = config.threads.unwrap_or_else(crate::data::default_threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("train-{i}"))
        .build()
        .with_context(|| format!("cannot start {threads} training threads (--threads)"))?;
    Ok(Arc::new(pool))
}

/// A run folder just claimed for a new run: removed again (with what setting up the run put in
/// it) unless [`ClaimedRunDir::keep`] is called, also when a signal ends the process while the
/// data set is decoded into it.
pub(super) struct ClaimedRunDir {
    dir: PathBuf,
    registration: Option<wgan_models::output::TempRegistration>,
}

impl ClaimedRunDir {
    pub(super) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            registration: Some(wgan_models::output::TempRegistration::new(dir)),
        }
    }

    /// The run is set up: the folder stays.
    pub(super) fn keep(mut self) {
        self.registration = None;
    }
}

impl Drop for ClaimedRunDir {
    fn drop(&mut self) {
        if self.registration.take().is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Checks that `config` can run on the ranks of `c`: the global batch splits evenly, and
/// GPU ranks have NCCL (see ARCHITECTURE.md, "Data-parallel training").
pub(super) fn check_ranks(config: &TrainConfig, device: &Device, c: &dyn Collective) -> Result<()> {
    let k = c.size();
    if k == 1 {
        return Ok(());
    }
    if !config.batch_size.is_multiple_of(k) {
        bail!(
            "--batch-size {} is the global batch, and it does not split evenly over {k} ranks: use a multiple of {k}",
            config.batch_size
        );
    }
    if !device.is_cpu() && !cfg!(feature = "nccl") {
        bail!(
            "data-parallel training over {} on a GPU needs NCCL, which this binary is built without: build it with `--features nccl` (scripts/gpu/build-cuda.sh does), or train on --device cpu",
            c.describe()
        );
    }
    Ok(())
}

/// Fails on every rank unless every rank runs the same binary with the same configuration:
/// a hash of both, compared with rank 0's.
pub(super) fn check_same_configuration(c: &dyn Collective, config: &TrainConfig) -> Result<()> {
    if c.size() == 1 {
        return Ok(());
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(serde_json::to_string(config)?.as_bytes());
    if let Ok(exe) = std::env::current_exe().and_then(std::fs::read) {
        h.update(&exe);
    }
    let all = c.gather_all(&h.digest128().to_le_bytes());
    if let Some(r) = all.iter().position(|m| *m != all[0]) {
        bail!(
            "rank {r} runs another binary or configuration than rank 0: start every rank with the same trainer and the same flags"
        );
    }
    Ok(())
}

/// The data of a new run on every rank: rank 0 opens it first (decoding a source into the run
/// folder); then the others open what rank 0 opened (decoding their own copy where the run
/// folder is not shared), and all check rank 0's fingerprint.
pub(super) fn open_run_data(
    plan: DataPlan,
    config: &TrainConfig,
    preset: &Preset,
    run_dir: &Path,
    c: &dyn Collective,
) -> Result<RunData> {
    let progress = || crate::progress::decoding("decoding the data set into the run");
    let size = preset.image_size;
    let mut plan = Some(plan);
    let mut open = |c: &dyn Collective| -> Result<RunData> {
        let plan = plan.take().expect("opened once");
        if c.rank() > 0 && plan.prepares_into_run() {
            // Rank 0 decoded it into the run folder; decode a copy where that is not seen.
            if let Ok(d) = crate::run_data::open_run_copy(config, size, run_dir) {
                return Ok(d);
            }
            std::fs::create_dir_all(run_dir)?;
        }
        let data = plan.open(config, size, run_dir, progress())?;
        if config.holdout > 0 && data.training.len == 0 {
            bail!("--holdout {} leaves no training images", config.holdout);
        }
        Ok(data)
    };
    let lead = match c.rank() {
        0 => Some(open(c)),
        _ => None,
    };
    let lead = agree(c, lead.transpose())?;
    let data = match lead {
        Some(d) => d,
        None => agree(c, open(c))?,
    };
    if c.rank() == 0 {
        agree(c, Ok(()))?;
    }
    let fingerprints = c.gather_all(&data.record.fingerprint.0.to_le_bytes());
    if let Some(r) = fingerprints.iter().position(|f| *f != fingerprints[0]) {
        bail!(
            "rank {r} sees other data than rank 0 (another content fingerprint): give every rank the same data"
        );
    }
    Ok(data)
}
