//! `speckle bench --scaling [--seconds T] [--out DIR] [--json]`: the simulated medium's time per
//! frame against the features n and the camera pixels m, from 2^6 to 2^21, for the dense and
//! the structured medium, with the fitted exponents and the size from which the structured
//! medium is the faster.
//!
//! Three sweeps: n with m = 2^12, m with n = 2^12, and n = m. Each point opens a simulated
//! device with the ideal camera (so that the medium alone is timed) and a DMD of 2^21 mirrors
//! (so that every n fits), makes one untimed call, then repeats the call for `T / 6` seconds
//! (at least once) on a batch of `min(64, 2^22 / m)` random half-lit frames. The dense medium
//! stops at 2^25 matrix entries, the most its default 256 MiB budget caches: beyond, it
//! regenerates the matrix for every batch (another cost, also O(n·m), with a larger constant),
//! and the largest points would take minutes; its fit extrapolates it. Exponents are fitted
//! over the sizes from 2^10 up. `--out DIR` writes `scaling.csv` and `scaling.png` (the three
//! sweeps, log-log, with the fitted exponents).
use super::bench_suite::raw_frames_loop;
use anyhow::{bail, Context};
use speckle_devices::{open_device, overrides, DeviceSpec, SimSource};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to run the sweeps.
#[derive(Debug, Clone)]
pub struct ScalingOptions {
    /// `--seconds`: each point is timed for a sixth of it.
    pub seconds: f64,
    /// Print one JSON object instead of the table.
    pub json: bool,
    /// Where to write `scaling.csv` and `scaling.png`.
    pub out_dir: Option<PathBuf>,
    /// Seed of every device and input.
    pub seed: u64,
}

/// The sizes of every sweep: 2^6 ..= 2^21.
const SIZES: std::ops::RangeInclusive<u32> = 6..=21;
/// Exponents are fitted from this size up, where fixed per-call costs no longer dominate.
const FIT_FROM: usize = 1 << 10;
/// The fixed dimension of the n and m sweeps.
const FIXED: usize = 1 << 12;
/// Largest dense matrix measured, in complex entries: what the default 256 MiB budget caches
/// (8 bytes an entry).
const DENSE_MAX_ENTRIES: usize = 1 << 25;
/// The two media.
const MEDIA: [&str; 2] = ["dense", "structured"];

/// Which dimension a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Sweep {
    /// Features n, with m = 2^12.
    N,
    /// Pixels m, with n = 2^12.
    M,
    /// n = m.
    Square,
}

impl Sweep {
    const ALL: [Sweep; 3] = [Sweep::N, Sweep::M, Sweep::Square];

    /// `(n, m)` at size `2^k`.
    fn dims(self, k: u32) -> (usize, usize) {
        let s = 1usize << k;
        match self {
            Sweep::N => (s, FIXED),
            Sweep::M => (FIXED, s),
            Sweep::Square => (s, s),
        }
    }

    /// The swept size of a point.
    fn size(self, n: usize, m: usize) -> usize {
        match self {
            Sweep::N | Sweep::Square => n,
            Sweep::M => m,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sweep::N => "n (m = 2^12)",
            Sweep::M => "m (n = 2^12)",
            Sweep::Square => "n = m",
        }
    }

    fn variable(self) -> &'static str {
        match self {
            Sweep::N | Sweep::Square => "n",
            Sweep::M => "m",
        }
    }
}

/// One measured point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScalingRow {
    sweep: Sweep,
    medium: &'static str,
    input_dim: usize,
    output_dim: usize,
    batch: usize,
    frames: u64,
    /// Wall time per frame of the timed calls.
    seconds_per_frame: f64,
    /// Opening the device (drawing the medium) and the warm-up call.
    setup_s: f64,
}

/// A least-squares line through `(log2 size, log2 time)` of the points from [`FIT_FROM`] up:
/// `time ≈ 2^intercept · size^slope`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Fit {
    slope: f64,
    intercept: f64,
}

impl Fit {
    /// The fit of at least two points with distinct sizes; `None` otherwise.
    fn of(points: &[(f64, f64)]) -> Option<Fit> {
        let k = points.len() as f64;
        let (sx, sy) = points
            .iter()
            .fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
        let (mx, my) = (sx / k, sy / k);
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        (points.len() >= 2 && sxx > 0.0).then(|| {
            let slope = sxy / sxx;
            Fit {
                slope,
                intercept: my - slope * mx,
            }
        })
    }

    /// The fitted time at `size`.
    fn at(&self, size: f64) -> f64 {
        (self.intercept + self.slope * size.log2()).exp2()
    }
}

/// What the sweeps found for one sweep: each medium's fit and where the structured medium
/// becomes the faster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepSummary {
    sweep: Sweep,
    dense: Option<Fit>,
    structured: Option<Fit>,
    /// The smallest swept size at which the structured medium is faster than the dense one
    /// (measured, or against the dense fit where the dense medium was not measured).
    structured_faster_from: Option<usize>,
    /// Whether that comparison used the dense fit.
    dense_extrapolated: bool,
}

pub fn run(args: &ScalingOptions) -> anyhow::Result<()> {
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds {} is not a duration in (0, 3600]", args.seconds);
    }
    if let Some(dir) = args.out_dir.as_deref() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let per_point = args.seconds / 6.0;
    if !args.json {
        println!(
            "{:<14} {:<11} {:>8} {:>8} {:>6} {:>14} {:>8}",
            "sweep", "medium", "n", "m", "batch", "µs per frame", "setup s"
        );
    }
    let mut rows = Vec::new();
    for sweep in Sweep::ALL {
        for k in SIZES {
            let (n, m) = sweep.dims(k);
            for medium in MEDIA {
                if medium == "dense" && n.saturating_mul(m) > DENSE_MAX_ENTRIES {
                    continue;
                }
                let row = run_point(sweep, medium, n, m, per_point, args.seed)
                    .with_context(|| format!("{medium} medium, {n} → {m}"))?;
                if !args.json {
                    print_row(&row);
                }
                rows.push(row);
            }
        }
    }
    let summaries: Vec<SweepSummary> = Sweep::ALL.iter().map(|&s| summarize(s, &rows)).collect();
    if args.json {
        let value = serde_json::json!({ "points": rows, "sweeps": summaries });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for s in &summaries {
            println!("{}", summary_line(s));
        }
    }
    if let Some(dir) = args.out_dir.as_deref() {
        write_csv(&dir.join("scaling.csv"), &rows)?;
        plot(&dir.join("scaling.png"), &rows, &summaries)?;
        if !args.json {
            println!(
                "wrote {} and {}",
                dir.join("scaling.csv").display(),
                dir.join("scaling.png").display()
            );
        }
    }
    Ok(())
}

/// Frames per call: up to 64, and at most 2^22 camera values in all.
fn batch_for(m: usize) -> usize {
    ((1usize << 22) / m).clamp(1, 64)
}

fn run_point(
    sweep: Sweep,
    medium: &'static str,
    n: usize,
    m: usize,
    seconds: f64,
    seed: u64,
) -> anyhow::Result<ScalingRow> {
    let settings = [
        format!("medium.kind=\"{medium}\""),
        "camera.ideal=true".to_owned(),
        "dmd.rows=2048".to_owned(),
        "dmd.cols=1024".to_owned(),
    ];
    let table = overrides::parse(&settings)?;
    let spec = DeviceSpec::Sim(SimSource::Preset("structured".into()));
    let batch = batch_for(m);
    let setup = Instant::now();
    let mut device = open_device(&spec, n, m, seed, &table)?;
    let measured = raw_frames_loop(&mut *device, (n, m, batch), seconds, seed, setup)?;
    let frames = measured.frames().max(1);
    Ok(ScalingRow {
        sweep,
        medium,
        input_dim: n,
        output_dim: m,
        batch,
        frames,
        seconds_per_frame: measured.wall_s / frames as f64,
        setup_s: measured.setup_s,
    })
}

/// The fits of a sweep and the crossover.
fn summarize(sweep: Sweep, rows: &[ScalingRow]) -> SweepSummary {
    let points = |medium: &str| -> Vec<(usize, f64)> {
        rows.iter()
            .filter(|r| r.sweep == sweep && r.medium == medium)
            .map(|r| (sweep.size(r.input_dim, r.output_dim), r.seconds_per_frame))
            .collect()
    };
    let logs = |p: &[(usize, f64)]| -> Vec<(f64, f64)> {
        p.iter()
            .filter(|p| p.0 >= FIT_FROM)
            .map(|&(s, t)| ((s as f64).log2(), t.log2()))
            .collect()
    };
    let (dense, structured) = (points("dense"), points("structured"));
    let dense_fit = Fit::of(&logs(&dense));
    let mut crossover = None;
    for &(size, t) in &structured {
        let (dense_t, extrapolated) = match dense.iter().find(|p| p.0 == size) {
            Some(&(_, d)) => (Some(d), false),
            None => (dense_fit.map(|f| f.at(size as f64)), true),
        };
        if let Some(d) = dense_t {
            if t < d {
                crossover = Some((size, extrapolated));
                break;
            }
        }
    }
    SweepSummary {
        sweep,
        dense: dense_fit,
        structured: Fit::of(&logs(&structured)),
        structured_faster_from: crossover.map(|c| c.0),
        dense_extrapolated: crossover.is_some_and(|c| c.1),
    }
}

/// `1048576` → `2^20`, other numbers as they are.
fn power(v: usize) -> String {
    if v.is_power_of_two() {
        format!("2^{}", v.trailing_zeros())
    } else {
        v.to_string()
    }
}

fn slope_text(fit: Option<Fit>) -> String {
    fit.map_or("-".into(), |f| format!("{:.2}", f.slope))
}

fn crossover_text(s: &SweepSummary) -> String {
    match s.structured_faster_from {
        Some(size) => format!(
            "structured faster from {} = {}{}",
            s.sweep.variable(),
            power(size),
            if s.dense_extrapolated {
                " (dense extrapolated)"
            } else {
                ""
            }
        ),
        None => "structured never faster".into(),
    }
}

fn summary_line(s: &SweepSummary) -> String {
    format!(
        "sweep {}: time ∝ {v}^{} dense, {v}^{} structured; {}",
        s.sweep.name(),
        slope_text(s.dense),
        slope_text(s.structured),
        crossover_text(s),
        v = s.sweep.variable(),
    )
}

fn print_row(r: &ScalingRow) {
    println!(
        "{:<14} {:<11} {:>8} {:>8} {:>6} {:>14.1} {:>8.2}",
        r.sweep.name(),
        r.medium,
        power(r.input_dim),
        power(r.output_dim),
        r.batch,
        r.seconds_per_frame * 1e6,
        r.setup_s
    );
    let _ = std::io::stdout().flush();
}

fn write_csv(path: &Path, rows: &[ScalingRow]) -> anyhow::Result<()> {
    let mut text =
        String::from("sweep,medium,input_dim,output_dim,batch,frames,seconds_per_frame,setup_s\n");
    for r in rows {
        text.push_str(&format!(
            "{},{},{},{},{},{},{:.6e},{:.6}\n",
            serde_json::to_value(r.sweep)?.as_str().unwrap_or_default(),
            r.medium,
            r.input_dim,
            r.output_dim,
            r.batch,
            r.frames,
            r.seconds_per_frame,
            r.setup_s
        ));
    }
    speckle_runs::atomic::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Three panels, one a sweep: log2(µs per frame) against log2(size), one line a medium, the
/// fitted exponent in the legend and the crossover in the title.
fn plot(path: &Path, rows: &[ScalingRow], summaries: &[SweepSummary]) -> anyhow::Result<()> {
    use speckle_runs::plot::{panel_charts, Panel, Series};
    let panels = summaries
        .iter()
        .map(|s| {
            let series = MEDIA
                .iter()
                .map(|&medium| {
                    let fit = match medium {
                        "dense" => s.dense,
                        _ => s.structured,
                    };
                    Series {
                        label: format!(
                            "{medium}: ∝ {}^{} (fit from 2^10)",
                            s.sweep.variable(),
                            slope_text(fit)
                        ),
                        points: rows
                            .iter()
                            .filter(|r| r.sweep == s.sweep && r.medium == medium)
                            .map(|r| {
                                let size = s.sweep.size(r.input_dim, r.output_dim) as f64;
                                (size.log2(), (r.seconds_per_frame * 1e6).log2())
                            })
                            .collect(),
                    }
                })
                .collect();
            Panel {
                title: format!("{}: {}", s.sweep.name(), crossover_text(s)),
                x_label: format!("log2 {}", s.sweep.variable()),
                y_label: "log2(µs per frame)".into(),
                series,
            }
        })
        .collect::<Vec<_>>();
    panel_charts(path, &panels, (640, 480))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sweep: Sweep, medium: &'static str, size: usize, t: f64) -> ScalingRow {
        let (n, m) = match sweep {
            Sweep::N => (size, FIXED),
            Sweep::M => (FIXED, size),
            Sweep::Square => (size, size),
        };
        ScalingRow {
            sweep,
            medium,
            input_dim: n,
            output_dim: m,
            batch: 1,
            frames: 1,
            seconds_per_frame: t,
            setup_s: 0.0,
        }
    }

    #[test]
    fn fits_recover_power_laws_and_the_crossover() {
        // Dense ∝ n (measured to 2^14), structured ∝ n^0.1 with a larger constant.
        let mut rows = Vec::new();
        for k in 10..=20 {
            let n = 1usize << k;
            if k <= 14 {
                rows.push(row(Sweep::N, "dense", n, 1e-9 * n as f64));
            }
            rows.push(row(Sweep::N, "structured", n, 2e-5 * (n as f64).powf(0.1)));
        }
        let s = summarize(Sweep::N, &rows);
        assert!((s.dense.unwrap().slope - 1.0).abs() < 1e-9);
        assert!((s.structured.unwrap().slope - 0.1).abs() < 1e-9);
        // 1e-9·n > 2e-5·n^0.1 from n^0.9 > 2e4, n > 60,000: 2^16, past the dense points.
        assert_eq!(s.structured_faster_from, Some(1 << 16));
        assert!(s.dense_extrapolated);
        assert!(summary_line(&s).contains("structured faster from n = 2^16 (dense extrapolated)"));
        // Measured crossover: a dense point slower than the structured one.
        rows.push(row(Sweep::M, "dense", 1 << 10, 2.0));
        rows.push(row(Sweep::M, "structured", 1 << 10, 1.0));
        let s = summarize(Sweep::M, &rows);
        assert_eq!(
            (s.structured_faster_from, s.dense_extrapolated),
            (Some(1 << 10), false)
        );
        assert!(s.dense.is_none());
    }

    #[test]
    fn sweeps_cover_the_sizes_and_batches_stay_small() {
        assert_eq!(Sweep::N.dims(21), (1 << 21, FIXED));
        assert_eq!(Sweep::M.dims(10), (FIXED, 1 << 10));
        assert_eq!(Sweep::Square.dims(15), (1 << 15, 1 << 15));
        assert_eq!(batch_for(1 << 10), 64);
        assert_eq!(batch_for(1 << 21), 2);
        assert_eq!(power(1 << 21), "2^21");
    }

    #[test]
    fn csv_and_plot_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            row(Sweep::N, "dense", 1 << 10, 1e-5),
            row(Sweep::N, "dense", 1 << 11, 2e-5),
            row(Sweep::N, "structured", 1 << 10, 3e-5),
            row(Sweep::N, "structured", 1 << 11, 3.1e-5),
        ];
        // Below FIT_FROM a point is drawn but not fitted.
        let mut with_small = rows.clone();
        with_small.push(row(Sweep::N, "dense", 1 << 6, 1.0));
        assert_eq!(
            summarize(Sweep::N, &with_small).dense,
            summarize(Sweep::N, &rows).dense
        );
        let summaries: Vec<_> = Sweep::ALL.iter().map(|&s| summarize(s, &rows)).collect();
        write_csv(&dir.path().join("scaling.csv"), &rows).unwrap();
        plot(&dir.path().join("scaling.png"), &rows, &summaries).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("scaling.csv")).unwrap();
        assert!(csv.starts_with("sweep,medium,input_dim,"), "{csv}");
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("n,dense,1024,4096,"),
            "{csv}"
        );
        let png = std::fs::read(dir.path().join("scaling.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
