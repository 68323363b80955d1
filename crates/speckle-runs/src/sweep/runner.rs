//! Running a sweep: the manifest, the per-point run folders, parallel execution, resume, shards
//! and merge.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use super::config::{SweepConfig, SweepPoint};
use super::{report, SweepError};
use speckle_devices::overrides::get_dotted;

/// File that marks a finished training run (written by the run layer).
pub const SUMMARY_FILE: &str = "summary.json";
/// The sweep's own record of a finished (or failed) point, next to the run's files.
pub const RESULT_FILE: &str = "result.json";
/// The point's settings, written when its run ends.
pub const POINT_FILE: &str = "point.json";
/// The sweep manifest at the top of an output folder.
pub const MANIFEST_FILE: &str = "sweep.json";

/// What the sweep needs from a trainer: validation of a resolved run config, one training run,
/// and the projection SNR of the run's feedback device. The root crate implements it on the run
/// layer; tests implement it with a fake.
pub trait PointRunner: Sync {
    /// Checks a resolved run config with the run config parser (one-line message on error).
    fn validate(&self, config: &Table) -> Result<(), String>;

    /// Trains one point into `run_dir`, leaving `summary.json` there when done. `run_dir` does
    /// not exist unless `resume` is true: then an earlier attempt of this point left files
    /// there; continue from its checkpoint if there is one, else start again.
    fn run(&self, config: &Table, run_dir: &Path, resume: bool) -> Result<(), String>;

    /// Projection SNR (dB) of the point's feedback device against the ideal projection of the
    /// same matrix, or `None` when the projector is digital.
    fn snr_db(&self, config: &Table) -> Result<Option<f64>, String>;
}

/// `I/N`: run the points whose index `% N == I`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0 ≤ index < count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?} must be I/N, e.g. 0/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: {i:?} is not a whole number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: {n:?} is not a whole number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {s:?} needs 0 ≤ I < N"));
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Whether this shard runs the point with this index.
    pub fn takes(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

/// How to run a sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Output folder.
    pub out_dir: PathBuf,
    /// Runs in parallel (worker threads).
    pub jobs: usize,
    /// Rayon threads inside each run (1, so that `jobs` runs use `jobs` cores).
    pub threads_per_run: usize,
    /// The slice of points to run.
    pub shard: Shard,
    /// Apply the sweep's `[quick]` section.
    pub quick: bool,
}

impl SweepOptions {
    /// Defaults: one job, one thread per run, the whole sweep, not quick.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            jobs: 1,
            threads_per_run: 1,
            shard: Shard::default(),
            quick: false,
        }
    }
}

/// A point of the manifest: the point and its value in every swept column (from the point's
/// settings, else from the resolved config; absent when neither has it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestPoint {
    /// The point.
    pub point: SweepPoint,
    /// Column → value.
    pub values: BTreeMap<String, Value>,
}

/// `sweep.json`: what the folder's sweep is. Shards of one sweep have equal manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// Sweep name.
    pub name: String,
    /// Sweep description.
    pub description: String,
    /// Whether `[quick]` was applied.
    pub quick: bool,
    /// Fingerprint of the base run config.
    pub base_hash: String,
    /// Whether the sweep has groups (then results have a `group` column).
    pub grouped: bool,
    /// Label columns.
    pub labels: Vec<String>,
    /// Swept columns (labels first), in results order.
    pub columns: Vec<String>,
    /// Parameters the report plots against (`None`: all swept columns).
    pub report_params: Option<Vec<String>>,
    /// Every point of the full sweep (not only this shard's).
    pub points: Vec<ManifestPoint>,
}

impl Manifest {
    /// Builds the manifest of a sweep, resolving and validating every point's config.
    /// Returns it with the resolved configs, in point order.
    pub fn build(
        sweep: &SweepConfig,
        quick: bool,
        runner: &dyn PointRunner,
    ) -> Result<(Self, Vec<Table>), SweepError> {
        let points = sweep.expand(quick)?;
        let columns = sweep.swept_keys(&points);
        let mut configs = Vec::with_capacity(points.len());
        let mut mpoints = Vec::with_capacity(points.len());
        for p in points {
            let config = p.resolve(&sweep.base)?;
            runner.validate(&config).map_err(|m| {
                SweepError::Config(format!("point {} ({}): {m}", p.index, p.describe()))
            })?;
            let values = columns
                .iter()
                .filter_map(|c| {
                    p.get(c)
                        .or_else(|| get_dotted(&config, c))
                        .map(|v| (c.clone(), v.clone()))
                })
                .collect();
            configs.push(config);
            mpoints.push(ManifestPoint { point: p, values });
        }
        Ok((
            Self {
                format: 1,
                name: sweep.name.clone(),
                description: sweep.description.clone(),
                quick,
                base_hash: sweep.base_hash(),
                grouped: mpoints.iter().any(|p| p.point.group.is_some()),
                labels: sweep.labels.clone(),
                columns,
                report_params: sweep.report_params.clone(),
                points: mpoints,
            },
            configs,
        ))
    }

    /// Reads `DIR/sweep.json`.
    pub fn read(dir: &Path) -> Result<Self, SweepError> {
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(|e| {
            SweepError::Io(format!(
                "cannot read sweep manifest {}: {e}",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            SweepError::Io(format!("sweep manifest {} is corrupt: {e}", path.display()))
        })
    }
}

/// Outcome of one point in a sweep's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// `ok` or `failed`.
    pub status: String,
    /// The error of a failed point.
    #[serde(default)]
    pub error: Option<String>,
    /// Final test accuracy (fraction).
    #[serde(default)]
    pub test_accuracy: Option<f64>,
    /// Final (cosine mean, cosine std) per hidden layer, input side first.
    #[serde(default)]
    pub alignment: Vec<(f64, f64)>,
    /// Projection SNR of the feedback device in dB (`None`: digital projector).
    #[serde(default)]
    pub snr_db: Option<f64>,
    /// Device frames spent by the run's feedback projector.
    #[serde(default)]
    pub device_frames: Option<u64>,
    /// Device time of those frames, seconds.
    #[serde(default)]
    pub device_time_s: Option<f64>,
    /// Wall time of the run, seconds (not in results.csv, which is deterministic).
    #[serde(default)]
    pub wall_s: Option<f64>,
}

impl PointResult {
    /// Reads the metrics of a finished run from its `summary.json`.
    pub fn from_summary(run_dir: &Path, snr_db: Option<f64>) -> Result<Self, SweepError> {
        let path = run_dir.join(SUMMARY_FILE);
        let text = fs::read_to_string(&path)
            .map_err(|e| SweepError::Io(format!("cannot read {}: {e}", path.display())))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| SweepError::Io(format!("{} is not valid JSON: {e}", path.display())))?;
        let f = |key: &str| v.get(key).and_then(|x| x.as_f64());
        let alignment = v
            .get("alignment")
            .and_then(|a| a.as_array())
            .map(|layers| {
                layers
                    .iter()
                    .map(|l| {
                        (
                            l.get("cosine_mean")
                                .and_then(|x| x.as_f64())
                                .unwrap_or(f64::NAN),
                            l.get("cosine_std")
                                .and_then(|x| x.as_f64())
                                .unwrap_or(f64::NAN),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            status: "ok".into(),
            error: None,
            test_accuracy: f("test_accuracy"),
            alignment,
            snr_db: snr_db.filter(|s| s.is_finite()),
            device_frames: v.get("device_frames").and_then(|x| x.as_u64()),
            device_time_s: f("device_time_s"),
            wall_s: f("wall_s"),
        })
    }

    fn failed(error: String) -> Self {
        Self {
            status: "failed".into(),
            error: Some(error),
            test_accuracy: None,
            alignment: Vec::new(),
            snr_db: None,
            device_frames: None,
            device_time_s: None,
            wall_s: None,
        }
    }

    /// Whether the run finished.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Default)]
pub struct SweepOutcome {
    /// Points in the full sweep.
    pub total: usize,
    /// Points of this shard.
    pub selected: usize,
    /// Points of this shard that were already done (skipped).
    pub skipped: usize,
    /// Points run now that finished.
    pub ran: usize,
    /// Points that failed: (point id, error).
    pub failed: Vec<(String, String)>,
}

/// Writes a file atomically ([`crate::atomic::write_atomic`]: a temporary file in the same
/// folder, named uniquely even among machines that share it, then a rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SweepError> {
    crate::atomic::write_atomic(path, bytes)
        .map_err(|e| SweepError::Io(format!("cannot write {}: {e}", path.display())))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SweepError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| SweepError::Io(format!("cannot encode {}: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

fn read_result(run_dir: &Path) -> Result<Option<PointResult>, SweepError> {
    let path = run_dir.join(RESULT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            SweepError::Io(format!(
                "{} is corrupt ({e}); delete it to rerun the point",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SweepError::Io(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn mkdir(dir: &Path) -> Result<(), SweepError> {
    fs::create_dir_all(dir)
        .map_err(|e| SweepError::Io(format!("cannot create {}: {e}", dir.display())))
}

/// Writes `path` unless it exists, atomically even when several processes (shards sharing a
/// folder) try at once: each links its own complete copy into place and only the first
/// succeeds. Returns whether this call wrote it.
fn create_once(path: &Path, bytes: &[u8]) -> Result<bool, SweepError> {
    let cannot =
        |e: std::io::Error| SweepError::Io(format!("cannot write {}: {e}", path.display()));
    let tmp = crate::atomic::AtomicFile::new(path).map_err(cannot)?;
    fs::write(tmp.path(), bytes).map_err(cannot)?;
    let linked = fs::hard_link(tmp.path(), path);
    drop(tmp); // removes the temporary file
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links: the last writer wins (equal manifests, atomically).
        Err(_) => write_atomic(path, bytes).map(|()| true),
    }
}

/// Checks the folder's manifest against this sweep's (or writes it in a fresh folder).
fn claim_dir(out: &Path, manifest: &Manifest) -> Result<(), SweepError> {
    mkdir(out)?;
    let path = out.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(manifest)
        .map_err(|e| SweepError::Io(format!("cannot encode {}: {e}", path.display())))?;
    if path.exists() || !create_once(&path, text.as_bytes())? {
        let old = Manifest::read(out)?;
        if &old != manifest {
            let why = if old.quick != manifest.quick {
                "one with --quick and one without"
            } else if old.base_hash != manifest.base_hash {
                "the base run config changed"
            } else {
                "the points differ"
            };
            return Err(SweepError::Config(format!(
                "{} holds a different sweep ({why}): use another --out folder",
                out.display()
            )));
        }
    }
    Ok(())
}

/// Runs (this shard of) a sweep into `opts.out_dir`, skipping finished points, then writes
/// `results.csv` and `report.md` for every finished point found there. A shard (`count > 1`)
/// writes only its points' folders and the manifest, so that shards can share the folder:
/// [`merge`] writes the results.
///
/// Every point's config is resolved and validated before anything runs. Results do not depend
/// on `jobs`: each run is computed inside its own rayon pool of `threads_per_run` threads.
pub fn run_sweep(
    sweep: &SweepConfig,
    opts: &SweepOptions,
    runner: &dyn PointRunner,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SweepOutcome, SweepError> {
    if opts.jobs == 0 || opts.threads_per_run == 0 {
        return Err(SweepError::Config("--jobs must be at least 1".into()));
    }
    let (manifest, configs) = Manifest::build(sweep, opts.quick, runner)?;
    claim_dir(&opts.out_dir, &manifest)?;
    let runs = opts.out_dir.join("runs");
    mkdir(&runs)?;

    let mut outcome = SweepOutcome {
        total: manifest.points.len(),
        ..Default::default()
    };
    let mut todo: Vec<usize> = Vec::new();
    for (i, mp) in manifest.points.iter().enumerate() {
        if !opts.shard.takes(i) {
            continue;
        }
        outcome.selected += 1;
        let dir = runs.join(&mp.point.id);
        let done = match read_result(&dir)? {
            Some(_) => true,
            None if dir.join(SUMMARY_FILE).exists() => {
                // Finished training but the sweep stopped before recording it.
                finish_point(runner, &mp.point, &configs[i], &dir, Ok(()))?;
                true
            }
            None => false,
        };
        if done {
            outcome.skipped += 1;
        } else {
            todo.push(i);
        }
    }
    progress(&format!(
        "sweep {}: {} points, shard {}/{} has {}, {} already done, {} to run with {} jobs",
        manifest.name,
        outcome.total,
        opts.shard.index,
        opts.shard.count,
        outcome.selected,
        outcome.skipped,
        todo.len(),
        opts.jobs
    ));

    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let failures: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<SweepError>> = Mutex::new(None);
    let workers = opts.jobs.min(todo.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let pool = match rayon::ThreadPoolBuilder::new()
                    .num_threads(opts.threads_per_run)
                    .build()
                {
                    Ok(p) => p,
                    Err(e) => {
                        *fatal.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(SweepError::Io(format!("cannot start a thread pool: {e}")));
                        return;
                    }
                };
                loop {
                    if fatal.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = todo.get(k) else { return };
                    let mp = &manifest.points[i];
                    let dir = runs.join(&mp.point.id);
                    let resume = dir.exists();
                    let started = Instant::now();
                    let result = pool.install(|| {
                        catch_unwind(AssertUnwindSafe(|| runner.run(&configs[i], &dir, resume)))
                            .unwrap_or_else(|panic| Err(panic_message(&panic)))
                    });
                    let ok = result.is_ok();
                    let msg = result.as_ref().err().cloned();
                    match finish_point(runner, &mp.point, &configs[i], &dir, result) {
                        Ok(res) => {
                            let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                            let what = if ok {
                                format!(
                                    "test accuracy {}",
                                    res.test_accuracy
                                        .map_or("?".into(), |a| format!("{:.2} %", 100.0 * a))
                                )
                            } else {
                                let m = msg.unwrap_or_default();
                                failures
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push((mp.point.id.clone(), m.clone()));
                                format!("FAILED: {m}")
                            };
                            progress(&format!(
                                "[{n}/{}] point {} {} ({}): {what}, {:.1} s",
                                todo.len(),
                                mp.point.index,
                                mp.point.id,
                                mp.point.describe(),
                                started.elapsed().as_secs_f64()
                            ));
                        }
                        Err(e) => {
                            *fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    outcome.failed = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    outcome.ran = finished.load(Ordering::SeqCst) - outcome.failed.len();
    // A shard leaves results.csv and the report to `merge`: shards may share the folder, and no
    // two of them write the same file.
    if opts.shard.count == 1 {
        write_outputs(&opts.out_dir, &manifest)?;
    }
    Ok(outcome)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("the run panicked: {what}")
}

/// Records a point's result (with its device SNR) after its run.
fn finish_point(
    runner: &dyn PointRunner,
    point: &SweepPoint,
    config: &Table,
    dir: &Path,
    run: Result<(), String>,
) -> Result<PointResult, SweepError> {
    mkdir(dir)?;
    write_json(&dir.join(POINT_FILE), point)?;
    let result = match run {
        Ok(()) => {
            let snr = runner.snr_db(config).map_err(|m| {
                SweepError::Run(format!("projection SNR for {}: {m}", dir.display()))
            })?;
            PointResult::from_summary(dir, snr)?
        }
        Err(m) => PointResult::failed(m),
    };
    write_json(&dir.join(RESULT_FILE), &result)?;
    Ok(result)
}

/// Reads the results of every point of `manifest` found finished in `dir`, in point order.
pub fn collect_results(
    dir: &Path,
    manifest: &Manifest,
) -> Result<Vec<(ManifestPoint, PointResult)>, SweepError> {
    let mut rows = Vec::new();
    for mp in &manifest.points {
        if let Some(r) = read_result(&dir.join("runs").join(&mp.point.id))? {
            rows.push((mp.clone(), r));
        }
    }
    Ok(rows)
}

/// Writes `results.csv`, `report.md` and the figures for the finished points in `dir`.
pub fn write_outputs(dir: &Path, manifest: &Manifest) -> Result<(), SweepError> {
    let rows = collect_results(dir, manifest)?;
    write_atomic(
        &dir.join("results.csv"),
        results_csv(manifest, &rows).as_bytes(),
    )?;
    report::write_report(dir, manifest, &rows)
}

/// Hidden layers reported: the most any finished point has.
pub fn layer_count(rows: &[(ManifestPoint, PointResult)]) -> usize {
    rows.iter()
        .map(|(_, r)| r.alignment.len())
        .max()
        .unwrap_or(0)
}

/// The text of `results.csv`: a row per finished or failed point.
pub fn results_csv(manifest: &Manifest, rows: &[(ManifestPoint, PointResult)]) -> String {
    let layers = layer_count(rows);
    let mut header: Vec<String> = Vec::new();
    if manifest.grouped {
        header.push("group".into());
    }
    header.extend(manifest.columns.iter().cloned());
    header.push("test_accuracy".into());
    for l in 1..=layers {
        header.push(format!("cos_mean_l{l}"));
        header.push(format!("cos_std_l{l}"));
    }
    for h in [
        "snr_db",
        "device_frames",
        "device_time_s",
        "status",
        "point_id",
    ] {
        header.push(h.into());
    }
    let mut out = csv_line(&header);
    let num = |v: Option<f64>| {
        v.filter(|x| x.is_finite())
            .map_or(String::new(), |x| format!("{x}"))
    };
    for (mp, r) in rows {
        let mut cells: Vec<String> = Vec::new();
        if manifest.grouped {
            cells.push(mp.point.group.clone().unwrap_or_default());
        }
        for c in &manifest.columns {
            cells.push(mp.values.get(c).map_or(String::new(), super::config::cell));
        }
        cells.push(num(r.test_accuracy));
        for l in 0..layers {
            let a = r.alignment.get(l).copied();
            cells.push(num(a.map(|a| a.0)));
            cells.push(num(a.map(|a| a.1)));
        }
        cells.push(num(r.snr_db));
        cells.push(r.device_frames.map_or(String::new(), |f| f.to_string()));
        cells.push(num(r.device_time_s));
        cells.push(r.status.clone());
        cells.push(mp.point.id.clone());
        out.push_str(&csv_line(&cells));
    }
    out
}

fn csv_line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        })
        .collect();
    format!("{}\n", quoted.join(","))
}

/// Combines the output folders of shards of one sweep into `out`: checks that their manifests
/// agree, copies each finished point's small files (`point.json`, `result.json`,
/// `summary.json`, `metrics.csv`, configs and plots; not checkpoints) and writes the results and
/// report of the union. Returns (points found, points in the sweep).
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<(usize, usize), SweepError> {
    let first = dirs
        .first()
        .ok_or_else(|| SweepError::Config("merge needs at least one sweep folder".into()))?;
    let manifest = Manifest::read(first)?;
    for d in &dirs[1..] {
        if Manifest::read(d)? != manifest {
            return Err(SweepError::Config(format!(
                "{} and {} hold different sweeps",
                first.display(),
                d.display()
            )));
        }
    }
    claim_dir(out, &manifest)?;
    let out_runs = out.join("runs");
    mkdir(&out_runs)?;
    let mut found = 0;
    for mp in &manifest.points {
        let target = out_runs.join(&mp.point.id);
        if read_result(&target)?.is_some() {
            found += 1;
            continue;
        }
        for d in dirs {
            let src = d.join("runs").join(&mp.point.id);
            if read_result(&src)?.is_none() {
                continue;
            }
            mkdir(&target)?;
            copy_small_files(&src, &target)?;
            found += 1;
            break;
        }
    }
    write_outputs(out, &manifest)?;
    Ok((found, manifest.points.len()))
}

/// Copies the small files of a run folder (not checkpoints or folders); `result.json` last, so
/// that an interrupted merge never shows a point as finished without its files.
fn copy_small_files(src: &Path, dst: &Path) -> Result<(), SweepError> {
    let entries = fs::read_dir(src)
        .map_err(|e| SweepError::Io(format!("cannot list {}: {e}", src.display())))?;
    let mut names: Vec<String> = Vec::new();
    for e in entries {
        let e = e.map_err(|e| SweepError::Io(format!("cannot list {}: {e}", src.display())))?;
        let name = e.file_name().to_string_lossy().to_string();
        let keep = [".json", ".csv", ".toml", ".png", ".md"]
            .iter()
            .any(|ext| name.ends_with(ext))
            && !name.starts_with(".tmp-");
        if keep && e.file_type().map(|t| t.is_file()).unwrap_or(false) && name != RESULT_FILE {
            names.push(name);
        }
    }
    names.sort();
    names.push(RESULT_FILE.into());
    for n in names {
        let bytes = fs::read(src.join(&n))
            .map_err(|e| SweepError::Io(format!("cannot read {}: {e}", src.join(&n).display())))?;
        write_atomic(&dst.join(&n), &bytes)?;
    }
    Ok(())
}
