//! Line charts of run quantities against the generator step (`losses.png`, `eval.png`):
//! panels stacked vertically, each with its own y range, written atomically as PNG.

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

/// One line of a panel.
pub struct Series {
    pub label: String,
    /// `(step, value)` points; non-finite values are left out.
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    /// Drawn dashed (a reference level rather than a measurement).
    pub dashed: bool,
}

/// One chart of the figure.
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
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

/// Draws `panels` one above the other (`width` × `panel_height` pixels each) into the PNG at
/// `path`, against the generator step. Does nothing when no panel has a point.
pub fn draw(path: &Path, panels: &[Panel], width: u32, panel_height: u32) -> Result<()> {
    let points = || {
        panels
            .iter()
            .flat_map(|p| &p.series)
            .flat_map(|s| &s.points)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    if points().next().is_none() || panels.is_empty() {
        return Ok(());
    }
    register_font();
    let (x0, x1) = points().fold((f64::MAX, f64::MIN), |(a, b), &(x, _)| (a.min(x), b.max(x)));
    let x1 = x1.max(x0 + 1.0);
    let height = panel_height * panels.len() as u32;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((panels.len(), 1));
        for (area, panel) in areas.iter().zip(panels) {
            let values: Vec<f64> = panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .filter(|v| v.is_finite())
                .collect();
            if values.is_empty() {
                continue;
            }
            let (lo, hi) = values
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let margin = ((hi - lo) * 0.05).max(1e-6);
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 22))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(x0..x1, (lo - margin)..(hi + margin))?;
            chart
                .configure_mesh()
                .x_desc("generator step")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for s in &panel.series {
                let color = s.color;
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect();
                let style = ShapeStyle::from(&color).stroke_width(2);
                let drawn = if s.dashed {
                    chart.draw_series(DashedLineSeries::new(pts, 8, 6, style))?
                } else if pts.len() == 1 {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, style.filled())))?
                } else {
                    chart.draw_series(LineSeries::new(pts, style))?
                };
                drawn
                    .label(s.label.clone())
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
    let img = image::RgbImage::from_raw(width, height, rgb).context("plot buffer size")?;
    wgan_models::images::save_png(&image::DynamicImage::ImageRgb8(img), path)
}
