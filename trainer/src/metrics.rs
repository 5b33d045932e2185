//! Training curves: `metrics.csv` (one row per generator step) and the `losses.png` plot.

use crate::plot::{Panel, Series};
use anyhow::{Context, Result};
use plotters::style::{RGBColor, BLUE, MAGENTA, RED};
use std::io::Write;
use std::path::Path;

/// Columns of `metrics.csv`.
pub const CSV_HEADER: &str =
    "step,critic_loss,wasserstein,penalty,grad_norm,generator_loss,sec_per_iter";

/// One iteration's numbers (critic values are means over the iteration's critic steps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricsRow {
    pub step: u64,
    pub critic_loss: f64,
    pub wasserstein: f64,
    pub penalty: f64,
    pub grad_norm: f64,
    pub generator_loss: f64,
    pub sec_per_iter: f64,
}

impl MetricsRow {
    fn to_csv(self) -> String {
        format!(
            "{},{},{},{},{},{},{:.4}", // sec_per_iter: as in `columns`
            self.step,
            self.critic_loss,
            self.wasserstein,
            self.penalty,
            self.grad_norm,
            self.generator_loss,
            self.sec_per_iter
        )
    }

    /// The values of the columns after `step`, named as in [`CSV_HEADER`], as the file holds
    /// them (`sec_per_iter` to 0.1 ms).
    pub fn columns(&self) -> [(&'static str, f64); 6] {
        let seconds: f64 = format!("{:.4}", self.sec_per_iter)
            .parse()
            .expect("a formatted number parses");
        [
            ("critic_loss", self.critic_loss),
            ("wasserstein", self.wasserstein),
            ("penalty", self.penalty),
            ("grad_norm", self.grad_norm),
            ("generator_loss", self.generator_loss),
            ("sec_per_iter", seconds),
        ]
    }

    fn parse(line: &str) -> Option<Self> {
        let v: Vec<&str> = line.split(',').collect();
        if v.len() != 7 {
            return None;
        }
        let f = |i: usize| v[i].trim().parse::<f64>().ok();
        Some(Self {
            step: v[0].trim().parse().ok()?,
            critic_loss: f(1)?,
            wasserstein: f(2)?,
            penalty: f(3)?,
            grad_norm: f(4)?,
            generator_loss: f(5)?,
            sec_per_iter: f(6)?,
        })
    }
}

/// Reads `metrics.csv`, keeping rows up to `max_step` (rows written after the last checkpoint
/// of a crashed run are dropped, since the resumed run recomputes them).
pub fn read_csv(path: &Path, max_step: u64) -> Result<Vec<MetricsRow>> {
    Ok(read_csv_lenient(path, max_step)?.0)
}

/// The rows of `metrics.csv` up to `max_step`, one per step (the last row of a step wins),
/// in step order, tolerating damage: bytes that are not UTF-8 and lines that do not parse
/// are left out and counted (the second value). A missing file has no rows; other I/O errors
/// are errors.
pub fn read_csv_lenient(path: &Path, max_step: u64) -> Result<(Vec<MetricsRow>, usize)> {
    if !path.exists() {
        return Ok((Vec::new(), 0));
    }
    let bytes = wgan_models::limits::read_bounded(
        path,
        wgan_models::limits::MAX_TEXT_FILE,
        "metrics file",
    )?;
    let text = String::from_utf8_lossy(&bytes);
    let mut bad = 0;
    let mut by_step = std::collections::BTreeMap::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        match MetricsRow::parse(line) {
            Some(r) if r.step <= max_step => {
                by_step.insert(r.step, r);
            }
            Some(_) => {}
            None => bad += 1,
        }
    }
    Ok((by_step.into_values().collect(), bad))
}

/// Rewrites `metrics.csv` with `rows` (atomically).
pub fn write_csv(path: &Path, rows: &[MetricsRow]) -> Result<()> {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for r in rows {
        text.push_str(&r.to_csv());
        text.push('\n');
    }
    wgan_models::output::write_atomic(path, text.as_bytes())
}

/// Appends one row to `metrics.csv`, creating it with its header if needed.
pub fn append_csv(path: &Path, row: MetricsRow) -> Result<()> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if new {
        writeln!(f, "{CSV_HEADER}")?;
    }
    writeln!(f, "{}", row.to_csv()).with_context(|| format!("writing {}", path.display()))
}

/// Draws `losses.png`: critic loss, Wasserstein estimate and penalty on top, generator loss
/// below, against the generator step.
pub fn plot(path: &Path, rows: &[MetricsRow]) -> Result<()> {
    let series = |label: &str, f: fn(&MetricsRow) -> f64, color| Series {
        label: label.into(),
        points: rows.iter().map(|r| (r.step as f64, f(r))).collect(),
        color,
        dashed: false,
    };
    let panels = [
        Panel {
            title: "critic".into(),
            series: vec![
                series("critic loss", |r| r.critic_loss, RED),
                series("Wasserstein estimate", |r| r.wasserstein, BLUE),
                series("gradient penalty", |r| r.penalty, RGBColor(0, 150, 0)),
            ],
        },
        Panel {
            title: "generator".into(),
            series: vec![series("generator loss", |r| r.generator_loss, MAGENTA)],
        },
    ];
    crate::plot::draw(path, &panels, 1000, 350)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip_truncates_after_checkpoint_and_plot_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("metrics.csv");
        let row = |step| MetricsRow {
            step,
            critic_loss: -(step as f64),
            wasserstein: 0.5,
            penalty: 0.25,
            grad_norm: 1.0,
            generator_loss: 0.125,
            sec_per_iter: 0.1,
        };
        for s in 1..=5 {
            append_csv(&csv, row(s)).unwrap();
        }
        let back = read_csv(&csv, 3).unwrap();
        assert_eq!(back, vec![row(1), row(2), row(3)]);
        write_csv(&csv, &back).unwrap();
        assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 4);
        let png = dir.path().join("losses.png");
        plot(&png, &back).unwrap();
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (1000, 700));
    }
}
