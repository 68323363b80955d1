//! PNG plots of a run (accuracy and per-layer alignment against epochs), drawn with plotters'
//! bitmap backend and a bundled font (DejaVu Sans, see `assets/DejaVuSans-LICENSE.txt`), so no
//! system font or fontconfig is involved.

use crate::metrics::EpochMetrics;
use plotters::prelude::*;
use std::path::Path;
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

/// A plotting failure (the message of the backend).
#[derive(Debug, thiserror::Error)]
#[error("plotting {path}: {message}")]
pub struct PlotError {
    path: String,
    message: String,
}

/// One named curve: (x, y) points.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

/// Draws line series into a PNG at `path` (written to a temporary file, then renamed).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    y_range: Option<(f64, f64)>,
    series: &[Series],
) -> Result<(), PlotError> {
    register_font();
    let err = |m: String| PlotError {
        path: path.display().to_string(),
        message: m,
    };
    // The backend picks the encoder from the extension, which the temporary name keeps; it is
    // removed if drawing fails (or the process is interrupted).
    let file = crate::atomic::AtomicFile::new(path).map_err(|e| err(e.to_string()))?;
    let tmp = file.path().to_path_buf();
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
    {
        let root = BitMapBackend::new(&tmp, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(xmin..xmax, ymin..ymax)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|p| finite(p.0) && finite(p.1))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    file.commit().map_err(|e| err(e.to_string()))
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
