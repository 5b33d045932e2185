//! Training curves: `metrics.csv` (one row per generator step) and the `losses.png` plot.

use anyhow::{Context, Result};
use plotters::prelude::*;
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
            "{},{},{},{},{},{},{:.4}",
            self.step,
            self.critic_loss,
            self.wasserstein,
            self.penalty,
            self.grad_norm,
            self.generator_loss,
            self.sec_per_iter
        )
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
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(MetricsRow::parse)
        .filter(|r| r.step <= max_step)
        .collect())
}

/// Rewrites `metrics.csv` with `rows` (atomically).
pub fn write_csv(path: &Path, rows: &[MetricsRow]) -> Result<()> {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for r in rows {
        text.push_str(&r.to_csv());
        text.push('\n');
    }
    wgan_runtime::images::write_atomic(path, text.as_bytes())
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

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bundled DejaVu Sans is a valid TrueType font; a failure would only lose labels.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Draws `losses.png`: critic loss, Wasserstein estimate and penalty on top, generator loss
/// below, against the generator step.
pub fn plot(path: &Path, rows: &[MetricsRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    register_font();
    let tmp = path.with_extension("png.tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (1000, 700)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(380);
        let steps = (
            rows[0].step as f64,
            rows.last().unwrap().step.max(rows[0].step + 1) as f64,
        );
        type Series<'a> = (&'a str, fn(&MetricsRow) -> f64, RGBColor);
        let panels: [(DrawingArea<_, _>, &str, Vec<Series>); 2] = [
            (
                top,
                "critic",
                vec![
                    ("critic loss", |r| r.critic_loss, RED),
                    ("Wasserstein estimate", |r| r.wasserstein, BLUE),
                    ("gradient penalty", |r| r.penalty, RGBColor(0, 150, 0)),
                ],
            ),
            (
                bottom,
                "generator",
                vec![("generator loss", |r| r.generator_loss, MAGENTA)],
            ),
        ];
        for (area, title, series) in panels {
            let values: Vec<f64> = series
                .iter()
                .flat_map(|(_, f, _)| rows.iter().map(f))
                .filter(|v| v.is_finite())
                .collect();
            let (lo, hi) = values
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let margin = ((hi - lo) * 0.05).max(1e-6);
            let mut chart = ChartBuilder::on(&area)
                .caption(title, ("sans-serif", 22))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(steps.0..steps.1, (lo - margin)..(hi + margin))?;
            chart
                .configure_mesh()
                .x_desc("generator step")
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for (label, f, color) in series {
                chart
                    .draw_series(LineSeries::new(
                        rows.iter().map(|r| (r.step as f64, f(r))),
                        &color,
                    ))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
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
