//! `report.md` and its figures: accuracy and per-layer alignment against each swept parameter,
//! mean ± standard deviation over the points that differ only in seeds (or in other keys that
//! do not vary at a fixed value of the parameter).
//!
//! ```
//! use speckle_runs::sweep::report::study_param;
//! use speckle_runs::sweep::{Manifest, ManifestPoint, PointResult, SweepConfig};
//!
//! // Two widths × two seeds: the study averages the seeds at each width.
//! let text = "[grid]\n\"model.hidden\" = [[8], [16]]\n\"training.seed\" = [0, 1]\n";
//! let sweep = SweepConfig::parse(text, std::path::Path::new("."), "demo")?;
//! let points = sweep.expand(false)?;
//! let manifest = Manifest {
//!     format: 1,
//!     name: sweep.name.clone(),
//!     description: String::new(),
//!     quick: false,
//!     base_hash: sweep.base_hash(),
//!     grouped: false,
//!     labels: Vec::new(),
//!     columns: sweep.swept_keys(&points),
//!     report_params: None,
//!     points: Vec::new(),
//! };
//! // Accuracies 0.5 and 0.6 at [8], 0.7 and 0.8 at [16] (the last key varies fastest).
//! let rows: Vec<(ManifestPoint, PointResult)> = points
//!     .into_iter()
//!     .enumerate()
//!     .map(|(i, point)| {
//!         let result = PointResult {
//!             status: "ok".into(),
//!             error: None,
//!             test_accuracy: Some(0.5 + 0.1 * i as f64),
//!             alignment: vec![(0.3, 0.1)],
//!             snr_db: None,
//!             device_frames: None,
//!             device_time_s: None,
//!             wall_s: None,
//!         };
//!         (ManifestPoint { point, values: Default::default() }, result)
//!     })
//!     .collect();
//! let study = study_param(&manifest, &rows, "model.hidden").expect("two values");
//! assert_eq!(study.values, ["[8]", "[16]"]);
//! let (series, cells) = &study.series[0];
//! assert_eq!(series, "all");
//! let (mean, std) = cells[1].as_ref().unwrap().accuracy.unwrap();
//! assert!((mean - 0.75).abs() < 1e-12 && (std - 0.005f64.sqrt()).abs() < 1e-12);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use speckle_dfa::stats::{mean_std, Spread};
use toml::Value;

use super::config::{canonical, cell};
use super::error::SweepError;
use super::folder::{layer_count, mkdir, write_file, Manifest, ManifestPoint, PointResult};
use crate::plot::{draw_png, DrawError, PngArea};

/// Whether a column is a seed (averaged over, never plotted against).
pub fn is_seed_key(key: &str) -> bool {
    key.rsplit('.')
        .next()
        .is_some_and(|last| last.ends_with("seed"))
}

/// Mean and sample standard deviation (0 for a single value) of the finite values.
fn finite_mean_std(values: &[f64]) -> Option<(f64, f64)> {
    let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    mean_std(finite, Spread::Sample)
}

/// Statistics of one (series, parameter value) cell.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Runs aggregated.
    pub runs: usize,
    /// Test accuracy (fraction): mean, std.
    pub accuracy: Option<(f64, f64)>,
    /// Per hidden layer: alignment cosine mean over runs and its std over runs.
    pub cosine: Vec<Option<(f64, f64)>>,
    /// Projection SNR in dB (mean).
    pub snr_db: Option<f64>,
    /// Device frames of a run (mean; 0 for the digital projector).
    pub device_frames: Option<f64>,
    /// Device time of a run in seconds at the device's frame rate (mean).
    pub device_time_s: Option<f64>,
}

/// The data of one figure: a parameter, its values in plotting order, and the series.
#[derive(Debug, Clone)]
pub struct ParamStudy {
    /// Column name.
    pub param: String,
    /// Values in x order (as table cells).
    pub values: Vec<String>,
    /// Series label → cell per value (None where the series has no run at that value).
    pub series: Vec<(String, Vec<Option<Cell>>)>,
}

/// Aggregates the finished rows against one parameter. `None` when fewer than two values of the
/// parameter have finished runs.
pub fn study_param(
    manifest: &Manifest,
    rows: &[(ManifestPoint, PointResult)],
    param: &str,
) -> Option<ParamStudy> {
    let layers = layer_count(rows);
    let with: Vec<&(ManifestPoint, PointResult)> = rows
        .iter()
        .filter(|(mp, r)| r.is_ok() && mp.point.get(param).is_some())
        .collect();
    let vals = param_values(&with, param)?;
    let keys: Vec<String> = vals.iter().map(canonical).collect();
    let splitting = splitting_keys(manifest, &with, param);
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<(String, usize), Vec<&PointResult>> = BTreeMap::new();
    for (mp, r) in &with {
        let s = series_label(manifest, &splitting, mp);
        if !order.contains(&s) {
            order.push(s.clone());
        }
        let x = canonical(param_value(mp, param));
        let xi = keys.iter().position(|k| *k == x).unwrap_or(0);
        groups.entry((s, xi)).or_default().push(r);
    }
    let series = order
        .into_iter()
        .map(|s| {
            let cells = (0..vals.len())
                .map(|xi| Some(Cell::of(groups.get(&(s.clone(), xi))?, layers)))
                .collect();
            (s, cells)
        })
        .collect();
    Some(ParamStudy {
        param: param.to_string(),
        values: vals.iter().map(cell).collect(),
        series,
    })
}

/// A point's value of the parameter (`false` where it has none, which the callers exclude).
fn param_value<'a>(mp: &'a ManifestPoint, param: &str) -> &'a Value {
    const NONE: &Value = &Value::Boolean(false);
    mp.point.get(param).unwrap_or(NONE)
}

/// The distinct values of the parameter, numeric ones sorted, others in point order; `None`
/// when there are fewer than two.
fn param_values(with: &[&(ManifestPoint, PointResult)], param: &str) -> Option<Vec<Value>> {
    let mut vals: Vec<Value> = Vec::new();
    for (mp, _) in with {
        let v = param_value(mp, param);
        if !vals.iter().any(|x| canonical(x) == canonical(v)) {
            vals.push(v.clone());
        }
    }
    if vals.len() < 2 {
        return None;
    }
    let as_num = |v: &Value| match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    if vals.iter().all(|v| as_num(v).is_some()) {
        vals.sort_by(|a, b| {
            as_num(a)
                .unwrap_or(0.0)
                .partial_cmp(&as_num(b).unwrap_or(0.0))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    Some(vals)
}

/// Keys that split series: the other non-seed columns taking several values at one (group,
/// parameter value).
fn splitting_keys(
    manifest: &Manifest,
    with: &[&(ManifestPoint, PointResult)],
    param: &str,
) -> BTreeSet<String> {
    let mut spread: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    for (mp, _) in with {
        let g = mp.point.group.clone().unwrap_or_default();
        let x = canonical(param_value(mp, param));
        for c in &manifest.columns {
            if c == param || is_seed_key(c) {
                continue;
            }
            let v = mp.point.get(c).map_or("-".to_string(), canonical);
            spread
                .entry((c.clone(), g.clone(), x.clone()))
                .or_default()
                .insert(v);
        }
    }
    spread
        .iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|((c, _, _), _)| c.clone())
        .collect()
}

/// The series of a point: its group and its values of the splitting keys (`all` when none).
fn series_label(manifest: &Manifest, splitting: &BTreeSet<String>, mp: &ManifestPoint) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(g) = &mp.point.group {
        parts.push(g.clone());
    }
    for c in manifest.columns.iter().filter(|c| splitting.contains(*c)) {
        if let Some(v) = mp.point.get(c) {
            parts.push(format!("{c}={}", cell(v)));
        }
    }
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(", ")
    }
}

impl Cell {
    /// The statistics of the runs `rs` of one cell, with `layers` alignment columns.
    fn of(rs: &[&PointResult], layers: usize) -> Cell {
        let acc: Vec<f64> = rs.iter().filter_map(|r| r.test_accuracy).collect();
        let snr: Vec<f64> = rs.iter().filter_map(|r| r.snr_db).collect();
        let frames: Vec<f64> = rs
            .iter()
            .filter_map(|r| r.device_frames.map(|f| f as f64))
            .collect();
        let time: Vec<f64> = rs.iter().filter_map(|r| r.device_time_s).collect();
        let cosine = (0..layers)
            .map(|l| {
                let c: Vec<f64> = rs
                    .iter()
                    .filter_map(|r| r.alignment.get(l).map(|a| a.0))
                    .collect();
                finite_mean_std(&c)
            })
            .collect();
        Cell {
            runs: rs.len(),
            accuracy: finite_mean_std(&acc),
            cosine,
            snr_db: finite_mean_std(&snr).map(|(m, _)| m),
            device_frames: finite_mean_std(&frames).map(|(m, _)| m),
            device_time_s: finite_mean_std(&time).map(|(m, _)| m),
        }
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn pm(v: Option<(f64, f64)>, scale: f64, digits: usize) -> String {
    match v {
        Some((m, s)) => format!("{:.*} ± {:.*}", digits, m * scale, digits, s * scale),
        None => "–".into(),
    }
}

/// Writes `report.md` and `figures/*.png` into `dir`.
pub fn write_report(
    dir: &Path,
    manifest: &Manifest,
    rows: &[(ManifestPoint, PointResult)],
) -> Result<(), SweepError> {
    let layers = layer_count(rows);
    let ok = rows.iter().filter(|(_, r)| r.is_ok()).count();
    let failed: Vec<&(ManifestPoint, PointResult)> =
        rows.iter().filter(|(_, r)| !r.is_ok()).collect();
    let mut md = String::new();
    let _ = writeln!(md, "# Sweep `{}`\n", manifest.name);
    if !manifest.description.is_empty() {
        let _ = writeln!(md, "{}\n", manifest.description.trim());
    }
    if manifest.quick {
        let _ = writeln!(
            md,
            "**Quick mode** (`--quick`): reduced settings, for tests only.\n"
        );
    }
    let _ = writeln!(
        md,
        "{ok} of {} points finished{}. Every row of `results.csv` is one training run. \
         Figures and tables show the mean ± sample standard deviation over the runs that share a \
         value of the parameter (seeds and any key that does not vary at a fixed value). \
         Accuracy is the final test accuracy in %, alignment the per-sample cosine between the \
         DFA signal and the backprop gradient at each hidden layer's output (layer 1 is the \
         input side), SNR the projection SNR of the feedback device in dB, device frames and \
         device time (at the device's frame rate, calibration included) those a run showed.\n",
        manifest.points.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(", {} failed", failed.len())
        }
    );
    let params: Vec<String> = match &manifest.report_params {
        Some(p) => p.clone(),
        None => manifest
            .columns
            .iter()
            .filter(|c| !is_seed_key(c))
            .cloned()
            .collect(),
    };
    let fig_dir = dir.join("figures");
    for param in &params {
        let Some(study) = study_param(manifest, rows, param) else {
            continue;
        };
        let _ = writeln!(md, "## Against `{param}`\n");
        mkdir(&fig_dir)?;
        let name = format!("{}.png", slug(param));
        plot_study(&fig_dir.join(&name), &study, layers)?;
        let _ = writeln!(md, "![{param}](figures/{name})\n");
        let mut header = format!("| series | `{param}` | runs | test accuracy % |");
        let mut rule = "|---|---|---|---|".to_string();
        for l in 1..=layers {
            let _ = write!(header, " cos layer {l} |");
            rule.push_str("---|");
        }
        header.push_str(" SNR dB | device frames | device time s |");
        rule.push_str("---|---:|---:|");
        let _ = writeln!(md, "{header}\n{rule}");
        for (s, cells) in &study.series {
            for (v, c) in study.values.iter().zip(cells) {
                let Some(c) = c else { continue };
                let mut line = format!("| {s} | {v} | {} | {} |", c.runs, pm(c.accuracy, 100.0, 2));
                for l in 0..layers {
                    let _ = write!(
                        line,
                        " {} |",
                        pm(c.cosine.get(l).copied().flatten(), 1.0, 3)
                    );
                }
                let snr = c.snr_db.map_or("–".to_string(), |x| format!("{x:.1}"));
                let frames = c
                    .device_frames
                    .map_or("–".to_string(), |x| format!("{x:.0}"));
                let time = c
                    .device_time_s
                    .map_or("–".to_string(), |x| format!("{x:.1}"));
                let _ = write!(line, " {snr} | {frames} | {time} |");
                let _ = writeln!(md, "{line}");
            }
        }
        md.push('\n');
    }
    if !failed.is_empty() {
        let _ = writeln!(md, "## Failed points\n");
        for (mp, r) in failed {
            let _ = writeln!(
                md,
                "- `{}` ({}): {}",
                mp.point.id,
                mp.point.describe(),
                r.error.clone().unwrap_or_default()
            );
        }
        md.push('\n');
    }
    write_file(&dir.join("report.md"), md.as_bytes())
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Two panels: accuracy, and alignment per layer, against the parameter's values (evenly
/// spaced categories, so that log-spaced and non-numeric values read alike).
fn plot_study(path: &Path, study: &ParamStudy, layers: usize) -> Result<(), SweepError> {
    let axis = Categories::new(&study.values);
    draw_png(path, (1400, 470 + axis.label_area), |root| {
        let (left, right) = root.split_horizontally(680);
        let tick_style = axis.tick_style(root);
        accuracy_panel(&left, study, &axis, &tick_style)?;
        alignment_panel(&right, study, layers, &axis, &tick_style)
    })?;
    Ok(())
}

/// The x axis of a study's figure: one evenly spaced category per value of the parameter.
struct Categories<'a> {
    labels: &'a [String],
    /// Whether the tick labels are drawn vertically (they are wider than their slots).
    vertical: bool,
    /// Height of the area below the x axis, in pixels.
    label_area: u32,
}

impl<'a> Categories<'a> {
    fn new(labels: &'a [String]) -> Self {
        let n = labels.len() as i32;
        // Labels wider than their slot (about 7 px a character at 14 px) are drawn vertically,
        // with room below the axis (and a taller figure) for the longest one.
        let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let vertical = longest as f64 * 7.5 > 600.0 / f64::from(n.max(1));
        let label_area = if vertical {
            (longest as u32 * 8 + 40).min(240)
        } else {
            50
        };
        Self {
            labels,
            vertical,
            label_area,
        }
    }

    fn tick_style(&self, root: &PngArea<'_>) -> TextStyle<'static> {
        if self.vertical {
            ("sans-serif", 14)
                .into_text_style(root)
                .transform(FontTransform::Rotate90)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Center,
                ))
        } else {
            ("sans-serif", 14).into_text_style(root)
        }
    }
}

/// A panel with the categories on x and `y_range` on y: caption, mesh and tick labels drawn.
fn panel<'a, 'b>(
    area: &'a PngArea<'b>,
    caption: &str,
    (param, y_desc): (&str, &str),
    y_range: std::ops::Range<f64>,
    axis: &Categories<'_>,
    tick_style: &TextStyle<'static>,
) -> Result<Chart<'a, 'b>, DrawError> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(axis.label_area)
        .y_label_area_size(60)
        .build_cartesian_2d((0..axis.labels.len() as i32).into_segmented(), y_range)?;
    let fmt = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if !axis.vertical => {
            axis.labels.get(*i as usize).cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .x_desc(param)
        .y_desc(y_desc)
        .x_labels(axis.labels.len() + 1)
        .x_label_formatter(&fmt)
        .label_style(("sans-serif", 14))
        .x_label_style(tick_style.clone())
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    if axis.vertical {
        draw_vertical_labels(&chart, axis.labels, tick_style)?;
    }
    Ok(chart)
}

/// Test accuracy (%) of each series, its axis fitted to mean ± std with a margin.
fn accuracy_panel(
    area: &PngArea<'_>,
    study: &ParamStudy,
    axis: &Categories<'_>,
    tick_style: &TextStyle<'static>,
) -> Result<(), DrawError> {
    let accs: Vec<(f64, f64)> = study
        .series
        .iter()
        .flat_map(|(_, cs)| cs.iter().flatten().filter_map(|c| c.accuracy))
        .collect();
    let lo = accs
        .iter()
        .map(|a| 100.0 * (a.0 - a.1))
        .fold(f64::INFINITY, f64::min);
    let hi = accs
        .iter()
        .map(|a| 100.0 * (a.0 + a.1))
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        let pad = ((hi - lo) * 0.1).max(0.5);
        ((lo - pad).max(0.0), (hi + pad).min(100.0))
    } else {
        (0.0, 100.0)
    };
    let mut chart = panel(
        area,
        "test accuracy",
        (&study.param, "test accuracy (%)"),
        lo..hi,
        axis,
        tick_style,
    )?;
    for (si, (label, cells)) in study.series.iter().enumerate() {
        let color = PALETTE[si % PALETTE.len()];
        let pts = points(cells, |c| c.accuracy.map(|(m, s)| (100.0 * m, 100.0 * s)));
        draw_series(&mut chart, &pts, color, label)?;
    }
    if study.series.len() > 1 {
        draw_legend(&mut chart)?;
    }
    Ok(())
}

/// The alignment cosine of each hidden layer of each series.
fn alignment_panel(
    area: &PngArea<'_>,
    study: &ParamStudy,
    layers: usize,
    axis: &Categories<'_>,
    tick_style: &TextStyle<'static>,
) -> Result<(), DrawError> {
    let mut chart = panel(
        area,
        "alignment (cosine, DFA signal vs backprop)",
        (&study.param, "cosine"),
        -0.1f64..1.0,
        axis,
        tick_style,
    )?;
    let mut k = 0;
    for (label, cells) in &study.series {
        for l in 0..layers {
            let color = PALETTE[k % PALETTE.len()];
            k += 1;
            let pts = points(cells, |c| c.cosine.get(l).copied().flatten());
            let name = if study.series.len() > 1 {
                format!("{label}: layer {}", l + 1)
            } else {
                format!("layer {}", l + 1)
            };
            draw_series(&mut chart, &pts, color, &name)?;
        }
    }
    if k > 0 {
        draw_legend(&mut chart)?;
    }
    Ok(())
}

/// (category, mean, std) of the cells that have a `value`.
fn points(
    cells: &[Option<Cell>],
    value: impl Fn(&Cell) -> Option<(f64, f64)>,
) -> Vec<(SegmentValue<i32>, f64, f64)> {
    cells
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let (m, s) = value(c.as_ref()?)?;
            Some((SegmentValue::CenterOf(i as i32), m, s))
        })
        .collect()
}

/// The series' legend, in the lower right corner.
fn draw_legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> Result<(), DrawError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}

/// Tick labels written downwards from just below the x axis (plotters centres rotated tick
/// labels on the tick, which puts half of a long one inside the plot).
fn draw_vertical_labels(
    chart: &Chart<'_, '_>,
    labels: &[String],
    style: &TextStyle<'_>,
) -> Result<(), DrawError> {
    let y_axis = chart.y_range().start;
    let area = chart.plotting_area();
    let (x0, y0) = area.get_base_pixel();
    for (i, label) in labels.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(SegmentValue::CenterOf(i as i32), y_axis));
        area.strip_coord_spec().draw(&Text::new(
            format!("  {label}"),
            (px - x0, py - y0 + 4),
            style.clone(),
        ))?;
    }
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordi32>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

fn draw_series(
    chart: &mut Chart<'_, '_>,
    pts: &[(SegmentValue<i32>, f64, f64)],
    color: RGBColor,
    label: &str,
) -> Result<(), DrawError> {
    if pts.is_empty() {
        return Ok(());
    }
    let style = ShapeStyle::from(color).stroke_width(2);
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0.clone(), p.1)),
            style,
        ))?
        .label(label.to_string())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    chart.draw_series(pts.iter().filter(|p| p.2 > 0.0).map(|p| {
        // ± one standard deviation as a vertical bar.
        PathElement::new(
            vec![(p.0.clone(), p.1 - p.2), (p.0.clone(), p.1 + p.2)],
            style,
        )
    }))?;
    chart.draw_series(
        pts.iter()
            .map(|p| Circle::new((p.0.clone(), p.1), 4, style.filled())),
    )?;
    Ok(())
}
