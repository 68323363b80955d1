//! Running a sweep: the manifest, the per-point run folders, parallel execution, resume, shards
//! and merge.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use toml::Table;

use super::config::{cell, SweepConfig, SweepPoint};
use super::error::{FileOp, ManifestMismatch, SweepError};
use super::folder::{
    create_once, layer_count, mkdir, read_result, write_file, write_json, Manifest, ManifestPoint,
    PointResult, MANIFEST_FILE, POINT_FILE, RESULT_FILE, SUMMARY_FILE,
};
use super::point::{PointError, PointRunner};
use super::report;

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

/// Checks the folder's manifest against this sweep's (or writes it in a fresh folder).
fn claim_dir(out: &Path, manifest: &Manifest) -> Result<(), SweepError> {
    mkdir(out)?;
    let path = out.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(manifest).map_err(|source| SweepError::Encode {
        path: path.clone(),
        source,
    })?;
    if path.exists() || !create_once(&path, text.as_bytes())? {
        let old = Manifest::read(out)?;
        if &old != manifest {
            let why = if old.quick != manifest.quick {
                ManifestMismatch::Quick
            } else if old.base_hash != manifest.base_hash {
                ManifestMismatch::BaseConfig
            } else {
                ManifestMismatch::Points
            };
            return Err(SweepError::OtherSweep {
                dir: out.to_path_buf(),
                why,
            });
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
        return Err(SweepError::NoJobs);
    }
    let (manifest, configs) = Manifest::build(sweep, opts.quick, runner)?;
    claim_dir(&opts.out_dir, &manifest)?;
    let runs = opts.out_dir.join("runs");
    mkdir(&runs)?;
    let (mut outcome, todo) = pending(&manifest, &configs, &runs, opts.shard, runner)?;
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
    let queue = Queue {
        manifest: &manifest,
        configs: &configs,
        runs: &runs,
        todo,
        runner,
        progress,
        next: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
    };
    let (finished, failed) = queue.run(opts.jobs, opts.threads_per_run)?;
    outcome.failed = failed;
    outcome.ran = finished - outcome.failed.len();
    // A shard leaves results.csv and the report to `merge`: shards may share the folder, and no
    // two of them write the same file.
    if opts.shard.count == 1 {
        write_outputs(&opts.out_dir, &manifest)?;
    }
    Ok(outcome)
}

/// Counts the points of the sweep and of this shard, and lists the shard's points still to
/// run; a point whose training finished but whose result the sweep did not record yet is
/// recorded now.
fn pending(
    manifest: &Manifest,
    configs: &[Table],
    runs: &Path,
    shard: Shard,
    runner: &dyn PointRunner,
) -> Result<(SweepOutcome, Vec<usize>), SweepError> {
    let mut outcome = SweepOutcome {
        total: manifest.points.len(),
        ..Default::default()
    };
    let mut todo: Vec<usize> = Vec::new();
    for (i, mp) in manifest.points.iter().enumerate() {
        if !shard.takes(i) {
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
    Ok((outcome, todo))
}

/// The points left to run (`todo`, indices into the manifest) and what the workers share
/// while they take them in turn.
struct Queue<'a> {
    manifest: &'a Manifest,
    configs: &'a [Table],
    runs: &'a Path,
    todo: Vec<usize>,
    runner: &'a dyn PointRunner,
    progress: &'a (dyn Fn(&str) + Sync),
    next: AtomicUsize,
    finished: AtomicUsize,
    failures: Mutex<Vec<(String, String)>>,
    /// The first error that stops the sweep (not a failed point: a file that cannot be
    /// written, a thread pool that cannot start).
    fatal: Mutex<Option<SweepError>>,
}

impl Queue<'_> {
    /// Runs the queue on up to `jobs` worker threads, each with its own rayon pool of
    /// `threads_per_run` threads; returns the points finished (failed ones included) and the
    /// failures as (point id, error).
    fn run(
        self,
        jobs: usize,
        threads_per_run: usize,
    ) -> Result<(usize, Vec<(String, String)>), SweepError> {
        let workers = jobs.min(self.todo.len()).max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| self.work(threads_per_run));
            }
        });
        if let Some(e) = self.fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let failures = self
            .failures
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        Ok((self.finished.load(Ordering::SeqCst), failures))
    }

    /// One worker: takes points until none is left or the sweep has to stop.
    fn work(&self, threads_per_run: usize) {
        let stop = |e: SweepError| *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        let pool = match rayon::ThreadPoolBuilder::new()
            .num_threads(threads_per_run)
            .build()
        {
            Ok(p) => p,
            Err(e) => return stop(e.into()),
        };
        while let Some(i) = self.take() {
            if let Err(e) = self.run_point(&pool, i) {
                return stop(e);
            }
        }
    }

    /// The next point to run, unless none is left or the sweep has to stop.
    fn take(&self) -> Option<usize> {
        if self.fatal.lock().map(|f| f.is_some()).unwrap_or(true) {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::SeqCst);
        self.todo.get(k).copied()
    }

    /// Trains point `i` in `pool` (a panic is the point's failure), records its result and
    /// reports it.
    fn run_point(&self, pool: &rayon::ThreadPool, i: usize) -> Result<(), SweepError> {
        let mp = &self.manifest.points[i];
        let dir = self.runs.join(&mp.point.id);
        let resume = dir.exists();
        let started = Instant::now();
        let result = pool.install(|| {
            catch_unwind(AssertUnwindSafe(|| {
                self.runner.run(&self.configs[i], &dir, resume)
            }))
            .unwrap_or_else(|panic| Err(PointError::Panicked(panic_message(&panic))))
        });
        let failure = result.as_ref().err().map(ToString::to_string);
        let res = finish_point(self.runner, &mp.point, &self.configs[i], &dir, result)?;
        let n = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let what = match failure {
            None => format!(
                "test accuracy {}",
                res.test_accuracy
                    .map_or("?".into(), |a| format!("{:.2} %", 100.0 * a))
            ),
            Some(m) => {
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((mp.point.id.clone(), m.clone()));
                format!("FAILED: {m}")
            }
        };
        (self.progress)(&format!(
            "[{n}/{}] point {} {} ({}): {what}, {:.1} s",
            self.todo.len(),
            mp.point.index,
            mp.point.id,
            mp.point.describe(),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}

/// The message of a panic's payload.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Records a point's result (with its device SNR) after its run.
fn finish_point(
    runner: &dyn PointRunner,
    point: &SweepPoint,
    config: &Table,
    dir: &Path,
    run: Result<(), PointError>,
) -> Result<PointResult, SweepError> {
    mkdir(dir)?;
    write_json(&dir.join(POINT_FILE), point)?;
    let result = match run {
        Ok(()) => {
            let snr = runner.snr_db(config).map_err(|source| SweepError::Snr {
                dir: dir.to_path_buf(),
                source,
            })?;
            PointResult::from_summary(dir, snr)?
        }
        Err(e) => PointResult::failed(e.to_string()),
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
    write_file(
        &dir.join("results.csv"),
        results_csv(manifest, &rows).as_bytes(),
    )?;
    report::write_report(dir, manifest, &rows)
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
            cells.push(mp.values.get(c).map_or(String::new(), cell));
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
    let first = dirs.first().ok_or(SweepError::NothingToMerge)?;
    let manifest = Manifest::read(first)?;
    for d in &dirs[1..] {
        if Manifest::read(d)? != manifest {
            return Err(SweepError::DifferentShards {
                first: first.clone(),
                other: d.clone(),
            });
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
    let entries = fs::read_dir(src).map_err(SweepError::io(FileOp::List, src))?;
    let mut names: Vec<String> = Vec::new();
    for e in entries {
        let e = e.map_err(SweepError::io(FileOp::List, src))?;
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
        let from = src.join(&n);
        let bytes = fs::read(&from).map_err(SweepError::io(FileOp::Read, &from))?;
        write_file(&dst.join(&n), &bytes)?;
    }
    Ok(())
}
