//! PNG plots of a run (accuracy and per-layer alignment against epochs), drawn with plotters'
//! bitmap backend and a bundled font (DejaVu Sans, see `assets/DejaVuSans-LICENSE.txt`), so no
//! system font or fontconfig is involved.
//!
//! ```
//! use speckle_runs::plot::{line_chart, Series};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("curve.png");
//! let series = [Series { label: "test".into(), points: vec![(1.0, 80.0), (2.0, 90.0)] }];
//! line_chart(&path, "accuracy", "epoch", "accuracy (%)", None, &series)?;
//! assert_eq!(&std::fs::read(&path)?[..8], b"\x89PNG\r\n\x1a\n");
//! // Drawn through a temporary file, renamed when complete: nothing else is left.
//! assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::atomic::AtomicFile;
use crate::metrics::EpochMetrics;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Registers the bundled font under the family name `sans-serif` (once per process).
pub fn register_font() {
    REGISTER.call_once(|| {
        // The bundled file is a valid TTF, checked by the tests.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A plotting failure: the file and the backend's (or the file system's) error.
#[derive(Debug, thiserror::Error)]
#[error("plotting {}: {cause}", path.display())]
pub struct PlotError {
    path: PathBuf,
    /// Part of the message; not returned by `source()`, so each clause prints once.
    cause: DrawError,
}

/// An error while drawing: the backend's, whatever its type.
pub type DrawError = Box<dyn std::error::Error + Send + Sync>;

/// One named curve: (x, y) points.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

/// The drawing area of a PNG being drawn by [`draw_png`].
pub type PngArea<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws a PNG of `size` pixels at `path`: `draw` gets the white drawing area of a bitmap on a
/// temporary file next to `path`, which replaces `path` once drawn ([`AtomicFile`]). Errors of
/// `draw` are the backend's.
pub fn draw_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&PngArea<'_>) -> Result<(), DrawError>,
) -> Result<(), PlotError> {
    register_font();
    let drawn = || -> Result<(), DrawError> {
        let file = AtomicFile::new(path)?;
        {
            let root = BitMapBackend::new(file.path(), size).into_drawing_area();
            root.fill(&WHITE)?;
            draw(&root)?;
            root.present()?;
        }
        Ok(file.commit()?)
    };
    drawn().map_err(|cause| PlotError {
        path: path.to_path_buf(),
        cause,
    })
}

/// Draws line series into a PNG at `path` (atomically, see [`draw_png`]).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    y_range: Option<(f64, f64)>,
    series: &[Series],
) -> Result<(), PlotError> {
    let ranges = chart_ranges(series, y_range);
    draw_png(path, (800, 500), |root| {
        let style = (SeriesLabelPosition::LowerRight, true);
        draw_lines(root, (title, x_label, y_label), ranges, series, style)
    })
}

/// One chart of [`panel_charts`].
pub struct Panel {
    /// Caption above the chart.
    pub title: String,
    /// Axis descriptions.
    pub x_label: String,
    /// Axis descriptions.
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
}

/// Draws `panels` side by side (each `width` × `height` pixels, axes fitted to its own points,
/// legend in the upper left) into one PNG at `path` (atomically, see [`draw_png`]).
pub fn panel_charts(
    path: &Path,
    panels: &[Panel],
    (width, height): (u32, u32),
) -> Result<(), PlotError> {
    let count = panels.len().max(1);
    draw_png(path, (width * count as u32, height), |root| {
        for (area, panel) in root.split_evenly((1, count)).iter().zip(panels) {
            let ranges = tight_ranges(&panel.series);
            let text = (&*panel.title, &*panel.x_label, &*panel.y_label);
            // No fine grid: a third of the file size.
            let style = (SeriesLabelPosition::UpperLeft, false);
            draw_lines(area, text, ranges, &panel.series, style)?;
        }
        Ok(())
    })
}

/// One chart of lines with markers and a legend on `area`: `(title, x label, y label)`, with
/// or without the fine grid between the labelled lines.
fn draw_lines(
    area: &PngArea<'_>,
    (title, x_label, y_label): (&str, &str, &str),
    (x_range, y_range): (std::ops::Range<f64>, std::ops::Range<f64>),
    series: &[Series],
    (legend, fine_grid): (SeriesLabelPosition, bool),
) -> Result<(), DrawError> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range, y_range)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14));
    if !fine_grid {
        mesh.light_line_style(TRANSPARENT);
    }
    mesh.draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend)
        .draw()?;
    Ok(())
}

/// The finite points' ranges, each padded by 5 % (at least 1 wide).
fn tight_ranges(series: &[Series]) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let points = series.iter().flat_map(|s| s.points.iter().copied());
    let finite: Vec<(f64, f64)> = points
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let range = |values: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if !lo.is_finite() {
            return 0.0..1.0;
        }
        let pad = (0.05 * (hi - lo)).max(0.5);
        lo - pad..hi + pad
    };
    (
        range(&mut finite.iter().map(|p| p.0)),
        range(&mut finite.iter().map(|p| p.1)),
    )
}

/// The axes' ranges of a line chart: x from the smaller of 1 and the least x to the largest x
/// (at least 1 wide), y as given or the finite values' range padded by 5 %.
fn chart_ranges(
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let finite = |v: f64| v.is_finite();
    let xmax = all
        .iter()
        .map(|p| p.0)
        .filter(|&v| finite(v))
        .fold(1.0f64, f64::max);
    let xmin = all
        .iter()
        .map(|p| p.0)
        .filter(|&v| finite(v))
        .fold(xmax, f64::min)
        .min(1.0);
    let (ymin, ymax) = y_range.unwrap_or_else(|| {
        let lo = all
            .iter()
            .map(|p| p.1)
            .filter(|&v| finite(v))
            .fold(f64::INFINITY, f64::min);
        let hi = all
            .iter()
            .map(|p| p.1)
            .filter(|&v| finite(v))
            .fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() && hi.is_finite() && hi > lo {
            let pad = 0.05 * (hi - lo);
            (lo - pad, hi + pad)
        } else if lo.is_finite() {
            (lo - 0.5, lo + 0.5)
        } else {
            (0.0, 1.0)
        }
    });
    let xmax = if xmax > xmin { xmax } else { xmin + 1.0 };
    (xmin..xmax, ymin..ymax)
}

/// Writes `accuracy.png` (train and test accuracy) and `alignment.png` (per-layer mean cosine)
/// into `dir`. `alignment.png` is skipped when the network has no hidden layer.
pub fn plot_run(dir: &Path, rows: &[EpochMetrics], label: &str) -> Result<(), PlotError> {
    let pts = |f: &dyn Fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    line_chart(
        &dir.join("accuracy.png"),
        &format!("{label}: accuracy"),
        "epoch",
        "accuracy (%)",
        None,
        &[
            Series {
                label: "train".into(),
                points: pts(&|r| 100.0 * r.train_accuracy),
            },
            Series {
                label: "test".into(),
                points: pts(&|r| 100.0 * r.test_accuracy),
            },
        ],
    )?;
    let hidden = rows.first().map_or(0, |r| r.alignment.len());
    if hidden > 0 {
        let series: Vec<Series> = (0..hidden)
            .map(|l| Series {
                label: format!("layer {}", l + 1),
                points: pts(&|r| r.alignment[l].cosine_mean),
            })
            .collect();
        line_chart(
            &dir.join("alignment.png"),
            &format!("{label}: alignment (cosine with the backprop gradient)"),
            "epoch",
            "mean cosine",
            Some((-0.1, 1.0)),
            &series,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plot_never_replaces_what_is_not_a_regular_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let series = [Series {
            label: "a".into(),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
        }];
        // A FIFO, which a rename would replace (a folder where mkfifo is missing).
        let taken = dir.path().join("taken.png");
        let fifo = std::process::Command::new("mkfifo")
            .arg(&taken)
            .status()
            .is_ok_and(|s| s.success());
        if !fifo {
            std::fs::create_dir(&taken).unwrap();
        }
        let e = line_chart(&taken, "t", "x", "y", None, &series).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(!std::fs::metadata(&taken).unwrap().is_file());
        let png = dir.path().join("ok.png");
        line_chart(&png, "t", "x", "y", None, &series).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["ok.png", "taken.png"]);
    }
}
