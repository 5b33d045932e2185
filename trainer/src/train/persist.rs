//! Saving a run (checkpoints, sample grids) and reopening it at its latest checkpoint.

use super::*;

/// A checkpoint opened for a resume (see [`Trainer::resume_on`]).
struct Reopened {
    root: PathBuf,
    dir: PathBuf,
    lock: Option<RunLock>,
    warnings: Vec<String>,
    header: CheckpointHeader,
    state: TrainState,
    config: TrainConfig,
    preset: Preset,
    device: Device,
}

/// The run's metrics up to `step`, rewritten without damaged lines (a record, not state:
/// damage costs rows, with a warning, never the run).
fn reopen_metrics(root: &Path, step: u64, warnings: &mut Vec<String>) -> Result<Vec<MetricsRow>> {
    let metrics_path = root.join(ckpt::METRICS_CSV);
    let metrics = match metrics::read_csv_lenient(&metrics_path, step) {
        Ok((rows, 0)) => rows,
        Ok((rows, bad)) => {
            warnings.push(format!(
                "{}: left out {bad} damaged line(s); the file is rewritten with the {} good row(s)",
                metrics_path.display(),
                rows.len()
            ));
            rows
        }
        Err(e) => {
            warnings.push(format!(
                "{:#}; {} is started afresh from step {}",
                e,
                metrics_path.display(),
                step
            ));
            Vec::new()
        }
    };
    metrics::write_csv(&metrics_path, &metrics)?;
    Ok(metrics)
}

/// What `resume` may change about a run.
#[derive(Clone, Debug, Default)]
pub struct ResumeOptions {
    /// New total number of generator steps.
    pub steps: Option<u64>,
    /// Another device.
    pub device: Option<String>,
    /// Other training threads (runs are bit-identical only at the same count).
    pub threads: Option<usize>,
    /// Train on the data as it is now even where it changed since the checkpoint.
    pub allow_data_change: bool,
}

impl Trainer {
    /// Reopens the run in `run_dir` at its latest checkpoint, as `options` say.
    pub fn resume(run_dir: &Path, options: &ResumeOptions) -> Result<Self> {
        Self::resume_on(run_dir, options, Arc::new(Single))
    }

    /// [`Trainer::resume`] as one rank of `ranks`: every rank reads the checkpoint (the run
    /// folder must be visible to all of them, as on a shared file system); rank 0 holds the
    /// lock, repairs what an interrupted run left, and alone writes. A checkpoint does not
    /// depend on the number of ranks that wrote it.
    pub fn resume_on(
        run_dir: &Path,
        options: &ResumeOptions,
        ranks: Arc<dyn Collective>,
    ) -> Result<Self> {
        let c = ranks.as_ref();
        let lead = c.rank() == 0;
        let opened = agree(c, Self::reopen_checkpoint(run_dir, options, c));
        let opened = opened?;
        let Reopened {
            root,
            dir,
            lock,
            mut warnings,
            header,
            state,
            config,
            preset,
            device,
        } = opened;
        agree(c, super::check_ranks(&config, &device, c))?;
        super::check_same_configuration(c, &config)?;
        let damaged = |e: anyhow::Error| {
            match older_checkpoints(&dir) {
            Some(older) => e.context(format!(
                "checkpoint {} is damaged; these can be resumed instead (pass one as --checkpoint): {older}",
                dir.display()
            )),
            None => e,
        }
        };
        let load = || -> Result<_> {
            let generator = Generator::load(
                &preset,
                &dir.join(ckpt::GENERATOR_FILE),
                DType::F32,
                &device,
            )?;
            let critic = Critic::load(&preset, &dir.join(ckpt::CRITIC_FILE), DType::F32, &device)?;
            let opt_state = wgan_models::params::read_safetensors(&dir.join(OPTIMIZER_FILE))?;
            let mut opt_g = Adam::new(config.adam, &generator.params)?;
            let mut opt_c = Adam::new(config.adam, &critic.params)?;
            opt_g
                .load_state("generator", &opt_state, &generator.params)
                .context("restoring the generator's optimiser")?;
            opt_c
                .load_state("critic", &opt_state, &critic.params)
                .context("restoring the critic's optimiser")?;
            let rng = Rng::from_state(state.rng_state)
                .context("the checkpoint's RNG state is invalid (all zero)")?;
            let ema = match config.ema {
                Some(decay) => Some(Ema::load(
                    decay,
                    &preset,
                    &dir.join(ckpt::GENERATOR_EMA_FILE),
                    &device,
                )?),
                None => None,
            };
            Ok((generator, critic, opt_g, opt_c, rng, ema))
        };
        let (mut generator, critic, opt_g, opt_c, rng, ema) = agree(c, load().map_err(damaged))?;
        let rank_sum = crate::collective::rank_sum(&ranks, &device)?;
        generator.synchronise_batchnorm(rank_sum.clone());
        // The data: rank 0 first (it may decode the source again into the run folder), then
        // the others read what rank 0 opened; every rank checks the checkpoint's fingerprint.
        let reopen = |on_change| {
            crate::run_data::reopen(
                &config,
                preset.image_size,
                &root,
                state.data.as_ref(),
                header.step,
                on_change,
                crate::progress::decoding("decoding the data set into the run"),
            )
            .context("cannot open the run's training data")
        };
        let first = lead.then(|| {
            reopen(crate::run_data::OnChange::Refuse {
                allow: options.allow_data_change,
            })
        });
        let first = agree(c, first.transpose())?;
        let (data, data_warnings) = match first {
            Some(d) => {
                if c.size() > 1 {
                    agree(c, Ok(()))?;
                }
                d
            }
            None => agree(c, reopen(crate::run_data::OnChange::UseRunCopy))?,
        };
        warnings.extend(data_warnings);
        let fingerprints = c.gather_all(&data.record.fingerprint.0.to_le_bytes());
        if let Some(r) = fingerprints.iter().position(|f| *f != fingerprints[0]) {
            bail!("rank {r} sees other data than rank 0 (another content fingerprint): give every rank the same data");
        }
        let loader = Loader::sliced(
            data.training.clone(),
            config.batch_size,
            state.data_seed,
            state.data_cursor,
            config.mirror,
            (c.rank(), c.size()),
        );
        let pool = super::thread_pool(&config)?;
        let engines = Engines::for_device(&preset, &device, &ranks)?;
        let metrics = match lead {
            true => reopen_metrics(&root, header.step, &mut warnings)?,
            false => Vec::new(),
        };
        Ok(Self {
            dataset_description: data.training.description.clone(),
            data_record: data.record,
            pool,
            run_dir: root,
            config,
            preset,
            device,
            generator,
            critic,
            opt_g,
            opt_c,
            step: header.step,
            ema,
            rng,
            data_seed: state.data_seed,
            loader,
            sample_seed: state.sample_seed,
            elapsed_secs: state.elapsed_secs,
            metrics,
            engines,
            rank_sum,
            warnings,
            ranks,
            _lock: lock,
            tensorboard: None,
        })
    }

    /// The checkpoint a resume starts from, its configuration with `options` applied, and (on
    /// the `lead` rank) the run's lock, with what an interrupted run left removed.
    fn reopen_checkpoint(
        run_dir: &Path,
        options: &ResumeOptions,
        c: &dyn Collective,
    ) -> Result<Reopened> {
        let lead = c.rank() == 0;
        let (steps, device) = (options.steps, options.device.as_deref());
        let resolve = || {
            ckpt::resolve(run_dir)
                .with_context(|| format!("cannot resume from {}", run_dir.display()))
        };
        // The lock first: a run that another process trains in is busy, whatever its state.
        // A checkpoint folder names its run through the checkpoint itself.
        let (root, resolved) = match run_dir.join(ckpt::CHECKPOINTS_DIR).is_dir() {
            true => (run_dir.to_path_buf(), None),
            false => {
                let dir = resolve()?;
                (run_dir_of(&dir), Some(dir))
            }
        };
        let lock = match lead {
            true => Some(RunLock::acquire(&root)?),
            false => None,
        };
        let dir = resolved.map_or_else(resolve, Ok).map_err(|e| match usable_checkpoints(&root, None) {
            Some(others) => e.context(format!(
                "the latest checkpoint is damaged; these can be resumed instead (pass one as --checkpoint): {others}"
            )),
            None => e,
        })?;
        let mut warnings = Vec::new();
        if lead {
            let stale = crate::run_dir::remove_stale_temps(&root)?;
            if stale > 0 {
                warnings.push(format!(
                    "removed {stale} unfinished file(s) or checkpoint folder(s) left by an interrupted run"
                ));
            }
        }
        let damaged = |e: anyhow::Error| {
            match older_checkpoints(&dir) {
            Some(older) => e.context(format!(
                "checkpoint {} is damaged; these can be resumed instead (pass one as --checkpoint): {older}",
                dir.display()
            )),
            None => e,
        }
        };
        let header = ckpt::read_header(&dir).map_err(damaged)?;
        let state_path = dir.join(ckpt::STATE_FILE);
        let state = TrainState::read(&dir).map_err(damaged)?;
        let mut config = state.config.clone();
        config
            .validate()
            .with_context(|| format!("{} holds an invalid configuration", state_path.display()))
            .map_err(damaged)?;
        if let Some(s) = steps {
            config.steps = s;
        }
        if let Some(d) = device {
            config.device = d.to_string();
        }
        if options.threads.is_some() {
            config.threads = options.threads;
        }
        config.threads = Some(config.threads.unwrap_or_else(crate::data::default_threads));
        config.validate()?;
        if config.steps <= header.step {
            bail!(
                "the checkpoint is at step {}: pass --steps greater than that to train further",
                header.step
            );
        }
        let preset = header.preset()?;
        let device = parse_rank_device(&config.device, c.local_rank())?;
        super::check_weights_memory(&preset)?;
        super::check_batch_memory(config.batch_size, &preset, &device)?;
        Ok(Reopened {
            root,
            dir,
            lock,
            warnings,
            header,
            state,
            config,
            preset,
            device,
        })
    }

    /// The resumable state at the current step.
    pub fn state(&self) -> TrainState {
        TrainState {
            header: CheckpointHeader::new(
                &self.preset,
                self.step,
                self.dataset_description.clone(),
            ),
            config: self.config.clone(),
            rng_state: self.rng.state(),
            data_seed: self.data_seed,
            data_cursor: self.loader.cursor(),
            sample_seed: self.sample_seed,
            elapsed_secs: self.elapsed_secs,
            data: Some(self.data_record.clone()),
        }
    }

    /// Writes a checkpoint of the current step and returns its directory.
    /// What a failed run leaves to resume from, for error messages.
    pub(super) fn checkpoint_kept(&self) -> String {
        let latest = self
            .run_dir
            .join(ckpt::CHECKPOINTS_DIR)
            .join(ckpt::LATEST_FILE);
        match wgan_models::limits::read_text_bounded(&latest, 4096, "checkpoint pointer") {
            Ok(name) => format!(
                "the last good checkpoint ({}) is kept",
                self.run_dir
                    .join(ckpt::CHECKPOINTS_DIR)
                    .join(name.trim())
                    .display()
            ),
            Err(_) => "no checkpoint had been written yet, so there is nothing to resume".into(),
        }
    }

    /// Writes a checkpoint of the current step (see [`checkpoints::save`]). Refuses weights
    /// that are not finite, so a checkpoint is always one to resume from.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let nets = [
            ("generator", Some(&self.generator.params)),
            ("critic", Some(&self.critic.params)),
            (
                "generator's moving average",
                self.ema.as_ref().map(|e| &e.generator.params),
            ),
        ];
        for (net, params) in nets.into_iter().filter_map(|(n, p)| Some((n, p?))) {
            for (info, var) in params.iter() {
                let sum = var
                    .as_tensor()
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
                if !sum.is_finite() {
                    bail!(
                        "training diverged at step {}: the {net} weight {} is not finite; {}",
                        self.step,
                        info.name,
                        self.checkpoint_kept()
                    );
                }
            }
        }
        let mut optimizer = self.opt_g.state_tensors("generator")?;
        optimizer.extend(self.opt_c.state_tensors("critic")?);
        let state = self.state();
        let contents = CheckpointContents {
            generator: &self.generator.params,
            generator_ema: self.ema.as_ref().map(|e| &e.generator.params),
            critic: &self.critic.params,
            optimizer,
            state: &state,
        };
        checkpoints::save(&self.run_dir, contents, self.config.keep_checkpoints)
    }

    /// Writes `samples/step_NNNNNN.png`: the generator (eval mode; its moving average when the
    /// run keeps one) on the run's fixed latents.
    pub fn save_samples(&mut self) -> Result<PathBuf> {
        let dir = self.run_dir.join(ckpt::SAMPLES_DIR);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("step_{:06}.png", self.step));
        let zd = self.preset.z_dim;
        let z = latents(self.sample_seed, SAMPLE_COUNT, zd);
        // A few images at a time: a batch of 64 through the candle module would hold several
        // hundred MB of temporaries for dcgan64, more than a training step.
        let mut images = Vec::new();
        for chunk in z.chunks(SAMPLE_CHUNK * zd) {
            let n = chunk.len() / zd;
            let z = Tensor::from_vec(chunk.to_vec(), (n, zd, 1, 1), &self.device)?;
            let g = match &mut self.ema {
                Some(ema) => &mut ema.generator,
                None => &mut self.generator,
            };
            let out = g.forward(&z, Mode::Eval)?;
            images.extend(out.flatten_all()?.to_vec1::<f32>()?);
        }
        let s = self.preset.image_size;
        let shape = BatchShape {
            n: SAMPLE_COUNT,
            channels: self.preset.channels,
            height: s,
            width: s,
        };
        let img = grid(&images, shape, Some(8))?;
        let png = png_bytes(&img)?;
        wgan_models::output::write_atomic(&path, &png)?;
        if let Some(tb) = self.tensorboard.as_mut() {
            let dims = [shape.channels, img.height() as usize, img.width() as usize];
            tb.image(self.step, "samples", png, dims)?;
        }
        Ok(path)
    }
}
