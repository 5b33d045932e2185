//! How `trainer eval` shows its reports: a table per checkpoint, `eval.csv` and `eval.png` for
//! every checkpoint of a run (`--all`).

use super::EvalReport;
use crate::plot::{Panel, Series};
use anyhow::{Context, Result};
use plotters::style::{RGBColor, BLUE, RED};
use std::path::Path;

/// The report as a table, each measure beside its reference.
pub fn table(r: &EvalReport) -> String {
    let mut s = format!(
        "checkpoint {} · preset {} · step {} · {} generator{}\n\
         generated: {} images, seed {}{}\n\
         held-out:  {} of {}\n\
         training:  {} of {}; all {} searched for nearest neighbours\n\n",
        r.checkpoint,
        r.preset,
        r.step,
        if r.weights == "ema" {
            "moving-average"
        } else {
            "trained (raw)"
        },
        if r.batchnorm == super::BatchNormStats::Batch {
            " · BatchNorm with batch statistics"
        } else {
            ""
        },
        r.n,
        r.seed,
        r.truncation
            .map(|psi| format!(", truncation {psi}"))
            .unwrap_or_default(),
        r.n,
        r.held_out,
        r.n,
        r.training,
        r.training_len
    );
    s += "| measure | generated images | reference | the reference is |\n|---|---|---|---|\n";
    if let Some(d) = &r.digits {
        let (g, t) = (&d.generated, &d.training);
        let training = "training digits (what matching the data scores)";
        s += &format!(
            "| FD to held-out digits, classifier features | {:.3} | {:.3} | {training}; ratio {:.1} |\n",
            g.fd,
            t.fd,
            g.fd / t.fd
        );
        s += &format!(
            "| KL(class histogram ‖ uniform) | {:.4} | {:.4} | {training} |\n",
            g.kl_uniform, t.kl_uniform
        );
        s += &format!(
            "| classes covered (≥ 2 % of images) | {}/10 | {}/10 | {training} |\n",
            g.classes_covered, t.classes_covered
        );
        s += &format!(
            "| mean top-class confidence | {:.3} | {:.3} | {training} |\n",
            g.confidence, t.confidence
        );
    }
    if let Some(w) = &r.swd {
        let per = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let levels = w
            .resolutions
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(" / ");
        s += &format!(
            "| sliced Wasserstein ×10³, mean (levels {levels} px) | {:.2} ({}) | {:.2} ({}) | training images |\n",
            w.generated_mean,
            per(&w.generated),
            w.training_mean,
            per(&w.training)
        );
    }
    s += &format!(
        "| critic's Wasserstein estimate against held-out images | {:.4} | {:.4} | the same against training images; above held-out: the critic overfits (gap {:+.4}) |\n",
        r.critic_held_out,
        r.critic_training,
        r.critic_training - r.critic_held_out
    );
    s += &format!(
        "| pixel MMD² to held-out images (σ² = {:.1}) | {:.5} | {:.5} | training images (what matching the data scores) |\n",
        r.kernel_sigma2, r.mmd2_generated, r.mmd2_training
    );
    s += &format!(
        "| median distance to the nearest training image | {:.3} | {:.3} | held-out images (ratio {:.2}: well below 1 is copying) |\n",
        r.nearest_generated,
        r.nearest_held_out,
        r.nearest_generated / r.nearest_held_out
    );
    if let Some(d) = &r.digits {
        let h = |v: &[f64]| {
            v.iter()
                .map(|p| format!("{:.0}", 100.0 * p))
                .collect::<Vec<_>>()
                .join(" ")
        };
        s += &format!(
            "\nclass histogram, % of images for digits 0–9:\n  generated: {}\n  training:  {}\n",
            h(&d.generated.histogram),
            h(&d.training.histogram)
        );
    }
    if r.held_out_in_training > 0 {
        s += &format!(
            "\nwarning: {} of {} held-out images are also in the training set: the references are not independent of training\n",
            r.held_out_in_training, r.n
        );
    }
    s
}

/// Columns of `eval.csv`; `_real` columns hold the reference of the column before them, and
/// measures a run does not have are empty.
pub const CSV_HEADER: &str = "step,weights,fd,fd_real,kl_uniform,kl_uniform_real,classes_covered,classes_covered_real,confidence,confidence_real,swd,swd_real,mmd2,mmd2_real,nearest,nearest_real,critic_held_out,critic_training";

/// The main numbers of a report on one line.
pub fn headline(r: &EvalReport) -> String {
    let mut parts = Vec::new();
    if let Some(d) = &r.digits {
        parts.push(format!(
            "FD {:.2} (real {:.2}) · {}/10 classes · KL {:.3}",
            d.generated.fd, d.training.fd, d.generated.classes_covered, d.generated.kl_uniform
        ));
    }
    if let Some(w) = &r.swd {
        parts.push(format!(
            "SWD {:.2} (real {:.2})",
            w.generated_mean, w.training_mean
        ));
    }
    parts.push(format!(
        "MMD² {:.5} (real {:.5})",
        r.mmd2_generated, r.mmd2_training
    ));
    parts.join(" · ")
}

/// The measures of a report, named by their `eval.csv` columns (those after `step` and
/// `weights`); `None` for those the run does not have.
pub fn columns(r: &EvalReport) -> Vec<(&'static str, Option<f64>)> {
    let d = r.digits.as_ref();
    let (g, t) = (d.map(|d| &d.generated), d.map(|d| &d.training));
    vec![
        ("fd", g.map(|m| m.fd)),
        ("fd_real", t.map(|m| m.fd)),
        ("kl_uniform", g.map(|m| m.kl_uniform)),
        ("kl_uniform_real", t.map(|m| m.kl_uniform)),
        ("classes_covered", g.map(|m| m.classes_covered as f64)),
        ("classes_covered_real", t.map(|m| m.classes_covered as f64)),
        ("confidence", g.map(|m| m.confidence)),
        ("confidence_real", t.map(|m| m.confidence)),
        ("swd", r.swd.as_ref().map(|w| w.generated_mean)),
        ("swd_real", r.swd.as_ref().map(|w| w.training_mean)),
        ("mmd2", Some(r.mmd2_generated)),
        ("mmd2_real", Some(r.mmd2_training)),
        ("nearest", Some(r.nearest_generated)),
        ("nearest_real", Some(r.nearest_held_out)),
        ("critic_held_out", Some(r.critic_held_out)),
        ("critic_training", Some(r.critic_training)),
    ]
}

/// `eval.csv` for reports of one run (one row each).
pub fn csv(reports: &[EvalReport]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in reports {
        let mut row: Vec<String> = vec![r.step.to_string(), r.weights.clone()];
        row.extend(
            columns(r)
                .into_iter()
                .map(|(_, v)| v.map(|v| v.to_string()).unwrap_or_default()),
        );
        out += &row.join(",");
        out.push('\n');
    }
    out
}

/// Draws `eval.png`: FD (runs on digits), SWD and pixel MMD² against the step, each with its
/// reference dashed.
pub fn plot(path: &Path, reports: &[EvalReport]) -> Result<()> {
    let steps = |f: &dyn Fn(&EvalReport) -> Option<f64>| -> Vec<(f64, f64)> {
        reports
            .iter()
            .filter_map(|r| f(r).map(|v| (r.step as f64, v)))
            .collect()
    };
    let pair = |title: &str, label: &str, gen: Vec<(f64, f64)>, real: Vec<(f64, f64)>| Panel {
        title: title.into(),
        series: vec![
            Series {
                label: format!("{label}, generated"),
                points: gen,
                color: BLUE,
                dashed: false,
            },
            Series {
                label: format!("{label}, training images (reference)"),
                points: real,
                color: RED,
                dashed: true,
            },
        ],
    };
    let mut panels = Vec::new();
    if reports.iter().any(|r| r.digits.is_some()) {
        panels.push(pair(
            "Fréchet distance to held-out digits (classifier features)",
            "FD",
            steps(&|r| r.digits.as_ref().map(|d| d.generated.fd)),
            steps(&|r| r.digits.as_ref().map(|d| d.training.fd)),
        ));
    }
    if reports.iter().any(|r| r.swd.is_some()) {
        panels.push(pair(
            "sliced Wasserstein distance ×10³ (mean over pyramid levels)",
            "SWD",
            steps(&|r| r.swd.as_ref().map(|w| w.generated_mean)),
            steps(&|r| r.swd.as_ref().map(|w| w.training_mean)),
        ));
    }
    let mut mmd = pair(
        "pixel MMD² to held-out images",
        "MMD²",
        steps(&|r| Some(r.mmd2_generated)),
        steps(&|r| Some(r.mmd2_training)),
    );
    mmd.series[0].color = RGBColor(0, 150, 0);
    panels.push(mmd);
    crate::plot::draw(path, &panels, 1000, 320)
        .with_context(|| format!("drawing {}", path.display()))
}
