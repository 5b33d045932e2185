//! `config.toml`: a run's every training option as a TOML file, written into each run folder
//! and read by `trainer train --config FILE` (flags on the command line override its keys).
//!
//! The keys are [`TrainConfig`]'s fields (Adam's under `[adam]`). A file may leave keys out:
//! those take their defaults. A key that is not one of them is an error naming it and the
//! nearest known key; a value of the wrong type is TOML's error with its line.

use crate::config::TrainConfig;
use anyhow::{bail, Context, Result};
use std::path::Path;
use toml::{Table, Value};

/// The file name in a run folder.
pub use wgan_models::checkpoint::CONFIG_TOML;

/// `config` as the TOML text of `config.toml`.
pub fn to_toml(config: &TrainConfig) -> Result<String> {
    Ok(format!(
        "# Every training option of this run: `trainer train --config {CONFIG_TOML} --out NEW`\n# trains it again (flags on the command line override these keys).\n{}",
        toml::to_string(config).context("cannot write the configuration as TOML")?
    ))
}

/// The table of a configuration with every optional key set, for the list of known keys.
fn every_key() -> Table {
    use wgan_models::spec::ArchitectureNumbers;
    let full = TrainConfig {
        data: Some(".".into()),
        ema: Some(0.5),
        threads: Some(1),
        numbers: ArchitectureNumbers {
            image_size: Some(1),
            z_dim: Some(1),
            g_width: Some(1),
            c_width: Some(1),
        },
        ..TrainConfig::default()
    };
    toml::Table::try_from(&full).expect("the configuration serialises")
}

/// Reads a configuration file: its keys over the defaults.
pub fn read(path: &Path) -> Result<TrainConfig> {
    let text = wgan_models::limits::read_text_bounded(
        path,
        wgan_models::limits::MAX_TEXT_FILE,
        "configuration file",
    )?;
    parse(&text).with_context(|| format!("configuration file {}", path.display()))
}

/// [`read`] on the text of a file.
pub fn parse(text: &str) -> Result<TrainConfig> {
    let given: Table = text.parse().context("it is not valid TOML")?;
    check_keys(&given, &every_key(), "")?;
    let mut merged = toml::Table::try_from(TrainConfig::default())?;
    merge(&mut merged, given);
    Ok(Value::Table(merged).try_into::<TrainConfig>()?)
}

/// Fails on the first key of `given` that `known` does not have, naming the nearest known one.
fn check_keys(given: &Table, known: &Table, prefix: &str) -> Result<()> {
    for (key, value) in given {
        match known.get(key) {
            Some(Value::Table(k)) => {
                if let Value::Table(g) = value {
                    check_keys(g, k, &format!("{prefix}{key}."))?;
                }
            }
            Some(_) => {}
            None => {
                let nearest = known
                    .keys()
                    .min_by_key(|k| edit_distance(k, key))
                    .map(|k| format!("; did you mean '{prefix}{k}'?"))
                    .unwrap_or_default();
                bail!("unknown key '{prefix}{key}'{nearest}");
            }
        }
    }
    Ok(())
}

/// `given`'s keys over `base`'s, tables merged key by key.
fn merge(base: &mut Table, given: Table) {
    for (key, value) in given {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(g)) => merge(b, g),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Levenshtein distance, for the nearest known key.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + (ca != cb) as usize).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_round_trips_and_missing_keys_take_defaults() {
        let mut c = TrainConfig {
            steps: 7,
            ema: Some(0.99),
            data: Some("/data/x".into()),
            holdout: 5,
            threads: Some(2),
            ..TrainConfig::default()
        };
        c.adam.lr = 2e-4;
        c.numbers.image_size = Some(128);
        let text = to_toml(&c).unwrap();
        assert!(
            text.contains("[adam]") && text.contains("image_size = 128"),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap(), c);
        let partial = parse("steps = 3\n[adam]\nlr = 0.001\n").unwrap();
        assert_eq!(partial.steps, 3);
        assert_eq!(partial.adam.lr, 1e-3);
        assert_eq!(partial.adam.beta2, 0.9);
        assert_eq!(partial.batch_size, TrainConfig::default().batch_size);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let e = format!("{:#}", parse("batchsize = 3\n").unwrap_err());
        assert!(
            e.contains("unknown key 'batchsize'; did you mean 'batch_size'?"),
            "{e}"
        );
        let e = format!("{:#}", parse("[adam]\nbeta = 0.5\n").unwrap_err());
        assert!(
            e.contains("unknown key 'adam.beta'") && e.contains("adam.beta"),
            "{e}"
        );
        let e = format!("{:#}", parse("steps = \"many\"\n").unwrap_err());
        assert!(e.contains("steps") || e.contains("invalid type"), "{e}");
        let e = format!("{:#}", parse("steps = [").unwrap_err());
        assert!(e.contains("not valid TOML"), "{e}");
    }
}
