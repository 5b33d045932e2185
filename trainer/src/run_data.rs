//! The data of a run, decoded once and tied to its checkpoints (see ARCHITECTURE.md,
//! "Prepared data sets").
//!
//! - No `--data`: the digits embedded in the binary, decoded into memory.
//! - `--data FILE` of a prepared file (`trainer prepare`): read from that file.
//! - `--data` of anything else (a folder, a zip archive, MNIST, CIFAR-10): decoded once, when
//!   the run starts, into the run's own prepared file `RUN/data.u8` (with its sidecar);
//!   `resume` and `eval` read that file.
//!
//! `--holdout N` keeps N images out of training ([`crate::data::split`]); eval measures on
//! them by default. Every checkpoint records the data's fingerprint and counts
//! ([`DataRecord`]); `resume` refuses data whose fingerprint changed, and a run's own copy
//! whose source folder or archive changed, naming what changed, unless told
//! `--allow-data-change`. Starting a run on a prepared file whose source has changed since it
//! was prepared is refused too (prepare it again).

use crate::config::TrainConfig;
use crate::data::prepared::{sidecar_path, SourceRecord};
use crate::data::source::Source;
use crate::data::{self, Dataset, Fingerprint, Format};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The run's prepared copy of its data, in the run folder.
pub const RUN_DATA_FILE: &str = "data.u8";

/// What a checkpoint records of the data it was trained on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRecord {
    /// Fingerprint of every image and label of the data set (before the split).
    pub fingerprint: Fingerprint,
    /// Images in the data set.
    pub images: usize,
    /// Images trained on (the rest are held out).
    pub training_images: usize,
}

/// The data of a run: the training images and the held-out ones.
pub struct RunData {
    pub training: Dataset,
    /// The held-out split (`--holdout`), when the run has one.
    pub held_out: Option<Dataset>,
    pub record: DataRecord,
}

/// Where a run's images come from, listed but not decoded (so that a bad source is an error
/// before the run folder is created).
pub enum DataPlan {
    Embedded,
    /// A file prepared by `trainer prepare`.
    Prepared(PathBuf),
    /// A source decoded into the run folder when the run starts.
    Source(Box<dyn Source>),
}

/// Threads that decode for `config`.
fn threads(config: &TrainConfig) -> usize {
    config.threads.unwrap_or_else(data::default_threads)
}

impl DataPlan {
    /// Lists the data `config` names (the data set's files, or a prepared file's header and
    /// sidecar), checking it before anything is decoded or created.
    pub fn new(config: &TrainConfig) -> Result<Self> {
        let Some(path) = &config.data else {
            return Ok(DataPlan::Embedded);
        };
        Ok(match data::resolve_format(path, config.format)? {
            Format::Prepared => DataPlan::Prepared(path.clone()),
            f => DataPlan::Source(data::open_source(path, f)?),
        })
    }

    /// Whether starting the run decodes images into the run folder.
    pub fn prepares_into_run(&self) -> bool {
        matches!(self, DataPlan::Source(_))
    }

    /// The data of a new run in `run_dir` (which must be claimed): decodes a source into the
    /// run's prepared file, or opens the prepared file or the embedded digits; then splits.
    pub fn open(
        self,
        config: &TrainConfig,
        size: usize,
        run_dir: &Path,
        progress: impl FnMut(usize, usize),
    ) -> Result<RunData> {
        let shape = (config.channels, size);
        let (all, names) = match self {
            DataPlan::Embedded => data::embedded_mnist_named(config.channels, size)?,
            DataPlan::Prepared(path) => open_user_prepared(&path, shape)?,
            DataPlan::Source(source) => {
                let out = run_dir.join(RUN_DATA_FILE);
                let report = data::prepare_file(
                    source.as_ref(),
                    config.channels,
                    size,
                    threads(config),
                    &out,
                    progress,
                )?;
                if let Some(w) = report.skipped_warning() {
                    eprintln!("warning: {w}");
                }
                let opened = data::open_prepared(&out, Some(shape))?;
                (opened.data, opened.sidecar.names)
            }
        };
        split(all, &names, config)
    }
}

/// The run's prepared copy in `run_dir`, split as `config` says: what the other ranks of a new
/// run read after rank 0 decoded the source into it.
pub fn open_run_copy(config: &TrainConfig, size: usize, run_dir: &Path) -> Result<RunData> {
    let opened = data::open_prepared(&run_dir.join(RUN_DATA_FILE), Some((config.channels, size)))?;
    split(opened.data, &opened.sidecar.names, config)
}

/// Opens a prepared file the user names, refusing it when the source it was prepared from is
/// still there and has changed since.
fn open_user_prepared(path: &Path, shape: (usize, usize)) -> Result<(Dataset, Vec<String>)> {
    let opened = data::open_prepared(path, Some(shape))?;
    if let SourceState::Changed(what) = source_state(&opened.sidecar.source)? {
        bail!(
            "{} changed since {} was prepared from it ({what}): prepare it again with `trainer prepare --data {}`",
            opened.sidecar.source.path.display(),
            path.display(),
            opened.sidecar.source.path.display()
        );
    }
    Ok((opened.data, opened.sidecar.names))
}

/// The training and held-out views of `all` for `config`'s `--holdout`.
fn split(all: Dataset, names: &[String], config: &TrainConfig) -> Result<RunData> {
    let (held, train) = data::split::split(names, config.holdout, config.holdout_seed)?;
    let record = DataRecord {
        fingerprint: all.fingerprint,
        images: all.len,
        training_images: train.len(),
    };
    if held.is_empty() {
        return Ok(RunData {
            training: all,
            held_out: None,
            record,
        });
    }
    let describe = |n: usize, what: &str| format!("{n} {what} of {}", all.description);
    Ok(RunData {
        training: all.select(&train, describe(train.len(), "training images")),
        held_out: Some(all.select(&held, describe(held.len(), "held-out images"))),
        record,
    })
}

/// Whether a prepared data set's source is as it was when it was prepared.
#[derive(Debug, PartialEq, Eq)]
pub enum SourceState {
    Unchanged,
    /// What changed, in one line.
    Changed(String),
    /// The source is no longer there (moved, deleted, or the embedded digits).
    Gone,
}

/// Compares the source recorded in a sidecar with the files there now: a folder is walked
/// again (added files count); other sources are their recorded files, stat'ed.
pub fn source_state(recorded: &SourceRecord) -> Result<SourceState> {
    let path = &recorded.path;
    if recorded.kind == "embedded" || !path.exists() {
        return Ok(SourceState::Gone);
    }
    let now = if recorded.kind == "folder" {
        data::open_source(path, Format::Folder)
            .map(|s| s.record().files)
            .unwrap_or_default()
    } else {
        let dir = if path.is_dir() {
            path.clone()
        } else {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        recorded
            .files
            .iter()
            .filter_map(|f| data::prepared::SourceFile::of(&dir.join(&f.name), f.name.clone()).ok())
            .collect()
    };
    Ok(match data::source::changes(&recorded.files, &now) {
        None => SourceState::Unchanged,
        Some(what) => SourceState::Changed(what),
    })
}

/// How [`reopen`] treats data that changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnChange {
    /// `resume`: refuse, unless allowed (then decode the source again and go on with it).
    Refuse { allow: bool },
    /// `eval`: read the run's prepared copy as it is (its source may have moved on); refuse
    /// only a copy that is not the checkpoint's.
    UseRunCopy,
}

/// The data of an existing run in `run_dir`, checked against the checkpoint's `record` (at
/// `step`). Returns the data and warnings for the user.
pub fn reopen(
    config: &TrainConfig,
    size: usize,
    run_dir: &Path,
    record: Option<&DataRecord>,
    step: u64,
    on_change: OnChange,
    progress: impl FnMut(usize, usize),
) -> Result<(RunData, Vec<String>)> {
    let mut warnings = Vec::new();
    let shape = (config.channels, size);
    let refuse = |what: String| -> anyhow::Error {
        let advice = match on_change {
            OnChange::Refuse { .. } => "resume with --allow-data-change to train on the data as it is now (the sample order then changes)",
            OnChange::UseRunCopy => "eval's references need the images the run trained on: restore them",
        };
        anyhow::anyhow!(
            "the run's data changed since it was trained (step {step}): {what}; {advice}"
        )
    };
    let (all, names) = match &config.data {
        None => data::embedded_mnist_named(config.channels, size)?,
        // A prepared file the user named is the run's data as it is: its fingerprint is
        // compared below, whatever became of the source it was prepared from.
        Some(path) if data::resolve_format(path, config.format)? == Format::Prepared => {
            let opened = data::open_prepared(path, Some(shape))?;
            (opened.data, opened.sidecar.names)
        }
        Some(path) => {
            let copy = run_dir.join(RUN_DATA_FILE);
            let have_copy = copy.exists() && sidecar_path(&copy).exists();
            let state = match have_copy {
                true => {
                    let sidecar = data::PreparedFile::open(&copy)?.check_sidecar()?;
                    source_state(&sidecar.source)?
                }
                false => SourceState::Gone,
            };
            match (have_copy, state, on_change) {
                (true, SourceState::Changed(what), OnChange::Refuse { allow: false }) => {
                    return Err(refuse(format!("{} has {what}", path.display())))
                }
                (true, SourceState::Changed(what), OnChange::Refuse { allow: true }) => {
                    warnings.push(format!(
                        "{} has {what}; decoding it again as asked (--allow-data-change)",
                        path.display()
                    ));
                    prepare_again(config, size, path, &copy, progress)?
                }
                (true, state, _) => {
                    if state == SourceState::Gone {
                        warnings.push(format!(
                            "{} is no longer there; the run goes on with its prepared copy {}",
                            path.display(),
                            copy.display()
                        ));
                    }
                    let opened = data::open_prepared(&copy, Some(shape))?;
                    (opened.data, opened.sidecar.names)
                }
                (false, _, OnChange::UseRunCopy) => {
                    let source = data::open_source(path, config.format).with_context(|| {
                        format!("the run's prepared copy {} is missing", copy.display())
                    })?;
                    data::prepare_memory(source.as_ref(), config.channels, size, threads(config))?
                }
                (false, _, OnChange::Refuse { .. }) => {
                    warnings.push(format!(
                        "the run's prepared copy {} is missing; decoding {} again",
                        copy.display(),
                        path.display()
                    ));
                    prepare_again(config, size, path, &copy, progress)?
                }
            }
        }
    };
    let data = split(all, &names, config)?;
    match record {
        None => warnings.push(
            "the checkpoint was written before data fingerprints were recorded: its data is not checked"
                .into(),
        ),
        Some(r) if *r != data.record => {
            let what = format!(
                "it had {} images ({} trained on) with fingerprint {}, and has {} ({}) with fingerprint {}",
                r.images,
                r.training_images,
                r.fingerprint,
                data.record.images,
                data.record.training_images,
                data.record.fingerprint
            );
            match on_change {
                OnChange::Refuse { allow: true } => {
                    warnings.push(format!("the run's data changed: {what}; going on with it, as asked"))
                }
                _ => return Err(refuse(what)),
            }
        }
        Some(_) => {}
    }
    Ok((data, warnings))
}

/// Decodes the run's source again into its prepared copy `copy`.
fn prepare_again(
    config: &TrainConfig,
    size: usize,
    path: &Path,
    copy: &Path,
    progress: impl FnMut(usize, usize),
) -> Result<(Dataset, Vec<String>)> {
    let source = data::open_source(path, config.format)?;
    let report = data::prepare_file(
        source.as_ref(),
        config.channels,
        size,
        threads(config),
        copy,
        progress,
    )?;
    if let Some(w) = report.skipped_warning() {
        eprintln!("warning: {w}");
    }
    let opened = data::open_prepared(copy, Some((config.channels, size)))?;
    Ok((opened.data, opened.sidecar.names))
}
