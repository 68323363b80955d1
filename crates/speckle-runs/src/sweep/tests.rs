//! Tests of sweep expansion, validation, running, resume, shards, merge and reports, with a fake
//! trainer (each "run" writes a `summary.json` computed from its config).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use toml::Table;

use super::*;

/// A fake trainer: accuracy and alignment are simple functions of `x.bits`, `x.width` and
/// `training.seed`; a config with `x.fail = true` fails; the allowed keys are checked like a
/// run config parser would.
#[derive(Default)]
struct Fake {
    runs: AtomicUsize,
    resumed: Mutex<Vec<PathBuf>>,
}

const ALLOWED: [&str; 6] = [
    "x.bits",
    "x.width",
    "x.fail",
    "x.name",
    "training.seed",
    "training.epochs",
];

fn num(config: &Table, key: &str) -> f64 {
    match get_dotted(config, key) {
        Some(toml::Value::Integer(i)) => *i as f64,
        Some(toml::Value::Float(f)) => *f,
        _ => 0.0,
    }
}

impl PointRunner for Fake {
    fn validate(&self, config: &Table) -> Result<(), PointError> {
        fn walk(prefix: &str, t: &Table) -> Result<(), PointError> {
            for (k, v) in t {
                let key = config::dotted(prefix, k);
                match v {
                    toml::Value::Table(sub) => walk(&key, sub)?,
                    _ if ALLOWED.contains(&key.as_str()) => {}
                    _ => return Err(PointError::Other(format!("unknown key {key}").into())),
                }
            }
            Ok(())
        }
        walk("", config)
    }

    fn run(&self, config: &Table, run_dir: &Path, resume: bool) -> Result<(), PointError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if resume {
            self.resumed.lock().unwrap().push(run_dir.to_path_buf());
        }
        if get_dotted(config, "x.fail") == Some(&toml::Value::Boolean(true)) {
            return Err(PointError::Other("training diverged in epoch 1".into()));
        }
        let bits = num(config, "x.bits");
        let width = num(config, "x.width").max(1.0);
        let seed = num(config, "training.seed");
        let acc = 0.5 + bits / 40.0 + seed / 1000.0;
        let cos = (width / 800.0).sqrt();
        let io = |e: std::io::Error| PointError::Other(e.into());
        std::fs::create_dir_all(run_dir).map_err(io)?;
        let summary = serde_json::json!({
            "test_accuracy": acc,
            "alignment": [
                {"layer": 1, "cosine_mean": 0.3, "cosine_std": 0.1},
                {"layer": 2, "cosine_mean": cos, "cosine_std": 0.05 + seed / 100.0},
            ],
            "device_frames": (bits as u64) * 1000,
            "device_time_s": bits * 0.5,
            "wall_s": 0.01,
        });
        std::fs::write(run_dir.join(SUMMARY_FILE), summary.to_string()).map_err(io)
    }

    fn snr_db(&self, config: &Table) -> Result<Option<f64>, PointError> {
        Ok(Some(6.02 * num(config, "x.bits")))
    }
}

fn parse(text: &str) -> Result<SweepConfig, SweepError> {
    SweepConfig::parse(text, Path::new("."), "test")
}

const GRID: &str = r#"
name = "grid"
[base.training]
epochs = 1
[grid]
"x.bits" = [4, 8, 12]
"training.seed" = [0, 1]
[quick.set]
"training.epochs" = 0
[quick.keep]
"x.bits" = [4, 12]
"#;

fn quiet(_: &str) {}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn grid_expands_in_a_stable_order_with_stable_ids() {
    let s = parse(GRID).unwrap();
    let p = s.expand(false).unwrap();
    assert_eq!(p.len(), 6);
    // Keys in sorted order ("training.seed" < "x.bits"), the last one fastest.
    let got: Vec<String> = p.iter().map(|p| p.describe()).collect();
    assert_eq!(got[0], "training.seed=0, x.bits=4");
    assert_eq!(got[1], "training.seed=0, x.bits=8");
    assert_eq!(got[3], "training.seed=1, x.bits=4");
    let ids: std::collections::BTreeSet<&str> = p.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 6, "ids are distinct");
    assert!(p.iter().enumerate().all(|(i, p)| p.index == i));
    // The id depends on the settings only: nested tables and dotted keys are the same grid.
    let nested = parse(
        "[base.training]\nepochs = 1\n[grid.x]\nbits = [4, 8, 12]\n[grid.training]\nseed = [0, 1]\n",
    )
    .unwrap();
    assert_eq!(nested.expand(false).unwrap(), p);
    // Quick mode: filtered, with the quick settings (so other ids).
    let q = s.expand(true).unwrap();
    assert_eq!(q.len(), 4);
    assert!(q
        .iter()
        .all(|p| p.get("training.epochs") == Some(&toml::Value::Integer(0))));
    assert!(q.iter().all(|qp| p.iter().all(|pp| pp.id != qp.id)));
    // Resolution applies settings to the base.
    let c = p[5].resolve(&s.base).unwrap();
    assert_eq!(get_dotted(&c, "x.bits"), Some(&toml::Value::Integer(12)));
    assert_eq!(
        get_dotted(&c, "training.epochs"),
        Some(&toml::Value::Integer(1))
    );
    assert_eq!(s.swept_keys(&p), vec!["training.seed", "x.bits"]);
}

#[test]
fn groups_zip_points_and_labels() {
    let s = parse(
        r#"
labels = ["variant", "bottleneck"]
[grid]
"training.seed" = [0, 1]
[[groups]]
name = "narrow"
set = { variant = "narrow" }
[groups.zip]
bottleneck = [1, 800]
"x.width" = [1, 800]
[[groups]]
name = "other"
points = [{ "x.bits" = 4, variant = "a" }, { "x.bits" = 8, variant = "b" }]
"#,
    )
    .unwrap();
    let p = s.expand(false).unwrap();
    assert_eq!(p.len(), 2 * 2 + 2 * 2);
    assert_eq!(p[0].group.as_deref(), Some("narrow"));
    assert_eq!(p[0].labels.len(), 2);
    assert_eq!(p[0].get("bottleneck"), Some(&toml::Value::Integer(1)));
    assert_eq!(p[0].get("x.width"), Some(&toml::Value::Integer(1)));
    assert_eq!(p[2].get("x.width"), Some(&toml::Value::Integer(800)));
    // Labels are columns, not settings.
    assert!(p[0].settings.iter().all(|(k, _)| k != "variant"));
    assert_eq!(p[6].get("variant"), Some(&toml::Value::String("b".into())));
    let keys = s.swept_keys(&p);
    assert_eq!(&keys[..2], &["variant", "bottleneck"]);
    assert!(keys.contains(&"x.width".to_string()) && keys.contains(&"x.bits".to_string()));
}

#[test]
fn bad_sweep_files_give_one_line_errors() {
    let cases: [(&str, &str); 9] = [
        ("[grid]\n\"x.bits\" = []\n", "empty list"),
        ("[grid]\n", "grid is empty"),
        ("name = \"x\"\n", "the sweep is empty"),
        ("grdi = 1\n[grid]\n\"x.bits\" = [1]\n", "line 1"),
        ("[grid]\n\"x.bits\" = 4\n", "must be a list"),
        ("[zip]\na = [1, 2]\nb = [1]\n", "equal lengths"),
        (
            "[set]\n\"x.bits\" = 4\n[grid]\n\"x.bits\" = [4, 8]\n",
            "both",
        ),
        ("[grid]\n\"x.bits\" = [4, 4]\n", "twice"),
        (
            "[grid]\n\"x.bits\" = [4]\n[[groups]]\nname = \"g\"\ngrid = { \"x.bits\" = [8] }\n",
            "both at the top level and in group",
        ),
    ];
    for (text, want) in cases {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    // Unknown config keys are caught before anything runs, naming the point and the key.
    let dir = tempfile::tempdir().unwrap();
    let s = parse("[grid]\n\"x.bits\" = [4]\n\"x.bitz\" = [1, 2]\n").unwrap();
    let fake = Fake::default();
    let e = run_sweep(&s, &SweepOptions::new(dir.path().join("o")), &fake, &quiet)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("point 0") && e.contains("unknown key x.bitz"),
        "{e}"
    );
    assert_eq!(fake.runs.load(Ordering::SeqCst), 0);
    assert!(!dir.path().join("o").exists(), "nothing written");
    // Bad shards.
    assert!("3/3".parse::<Shard>().is_err());
    assert!("1".parse::<Shard>().is_err());
    assert_eq!(
        "1/3".parse::<Shard>().unwrap(),
        Shard { index: 1, count: 3 }
    );
}

#[test]
fn resume_skips_finished_points_and_resumes_half_finished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let s = parse(GRID).unwrap();
    let opts = SweepOptions::new(&out);
    let fake = Fake::default();
    let o = run_sweep(&s, &opts, &fake, &quiet).unwrap();
    assert_eq!((o.total, o.ran, o.skipped), (6, 6, 0));
    let csv = read(&out.join("results.csv"));
    // Run again: nothing to do, same results.
    let fake2 = Fake::default();
    let o = run_sweep(&s, &opts, &fake2, &quiet).unwrap();
    assert_eq!((o.ran, o.skipped), (0, 6));
    assert_eq!(fake2.runs.load(Ordering::SeqCst), 0);
    assert_eq!(read(&out.join("results.csv")), csv);
    // An interrupted point: its run folder exists without summary or result.
    let points = s.expand(false).unwrap();
    let half = out.join("runs").join(&points[2].id);
    std::fs::remove_file(half.join(SUMMARY_FILE)).unwrap();
    std::fs::remove_file(half.join(RESULT_FILE)).unwrap();
    // A point whose training finished but whose result was not recorded.
    let unrecorded = out.join("runs").join(&points[4].id);
    std::fs::remove_file(unrecorded.join(RESULT_FILE)).unwrap();
    let fake3 = Fake::default();
    let o = run_sweep(&s, &opts, &fake3, &quiet).unwrap();
    assert_eq!((o.ran, o.skipped), (1, 5));
    assert_eq!(*fake3.resumed.lock().unwrap(), vec![half]);
    assert_eq!(read(&out.join("results.csv")), csv);
    // Another sweep into the same folder is refused.
    let other = parse(&GRID.replace("[4, 8, 12]", "[4, 8]")).unwrap();
    let e = run_sweep(&other, &opts, &Fake::default(), &quiet).unwrap_err();
    assert!(e.to_string().contains("different sweep"), "{e}");
    let mut quick = opts.clone();
    quick.quick = true;
    let e = run_sweep(&s, &quick, &Fake::default(), &quiet).unwrap_err();
    assert!(e.to_string().contains("--quick"), "{e}");
}

#[test]
fn shards_merge_to_the_full_sweep_and_jobs_do_not_change_results() {
    let dir = tempfile::tempdir().unwrap();
    let s = parse(GRID).unwrap();
    let mut full = SweepOptions::new(dir.path().join("full"));
    full.jobs = 1;
    run_sweep(&s, &full, &Fake::default(), &quiet).unwrap();
    let mut parallel = SweepOptions::new(dir.path().join("par"));
    parallel.jobs = 3;
    run_sweep(&s, &parallel, &Fake::default(), &quiet).unwrap();
    let want = read(&dir.path().join("full/results.csv"));
    assert_eq!(read(&dir.path().join("par/results.csv")), want);

    let mut shard_dirs = Vec::new();
    let mut ran = 0;
    for i in 0..4 {
        let mut o = SweepOptions::new(dir.path().join(format!("shard{i}")));
        o.shard = Shard { index: i, count: 4 };
        o.jobs = 2;
        let out = run_sweep(&s, &o, &Fake::default(), &quiet).unwrap();
        ran += out.ran;
        // A shard writes only its own points' folders (results.csv and the report are merge's).
        let runs = std::fs::read_dir(o.out_dir.join("runs")).unwrap().count();
        assert_eq!(runs, out.selected);
        assert!(!o.out_dir.join("results.csv").exists());
        assert!(!o.out_dir.join("report.md").exists());
        shard_dirs.push(o.out_dir);
    }
    assert_eq!(ran, 6, "the shards partition the points");
    let merged = dir.path().join("merged");
    assert_eq!(merge(&shard_dirs, &merged).unwrap(), (6, 6));
    assert_eq!(read(&merged.join("results.csv")), want);
    assert!(merged.join("report.md").exists());
    // Merging a partial set says so.
    let partial = dir.path().join("partial");
    assert_eq!(
        merge(&shard_dirs[..2], &partial).unwrap().0,
        4,
        "indices 0, 1, 4, 5"
    );
    // Shards of different sweeps do not merge.
    let other = parse(&GRID.replace("[0, 1]", "[0, 2]")).unwrap();
    let mut o = SweepOptions::new(dir.path().join("other"));
    o.shard = Shard { index: 0, count: 2 };
    run_sweep(&other, &o, &Fake::default(), &quiet).unwrap();
    let e = merge(&[shard_dirs[0].clone(), o.out_dir], &dir.path().join("x")).unwrap_err();
    assert!(e.to_string().contains("different sweeps"), "{e}");
}

#[test]
fn shards_sharing_one_folder_write_disjoint_files_and_merge_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let s = parse(GRID).unwrap();
    run_sweep(
        &s,
        &SweepOptions::new(dir.path().join("full")),
        &Fake::default(),
        &quiet,
    )
    .unwrap();
    // Three shards start at once in one fresh folder (they race to write its manifest).
    let shared = dir.path().join("shared");
    std::thread::scope(|scope| {
        for index in 0..3 {
            let (s, shared) = (&s, &shared);
            scope.spawn(move || {
                let mut o = SweepOptions::new(shared);
                o.shard = Shard { index, count: 3 };
                run_sweep(s, &o, &Fake::default(), &quiet).unwrap();
            });
        }
    });
    // Only the manifest and the points' folders: no shared file, no temporary file left.
    let mut top: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["runs", MANIFEST_FILE]);
    assert_eq!(
        merge(std::slice::from_ref(&shared), &shared).unwrap(),
        (6, 6)
    );
    assert_eq!(
        read(&shared.join("results.csv")),
        read(&dir.path().join("full/results.csv"))
    );
}

#[test]
fn results_csv_has_the_documented_columns_and_failures_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let s = parse(
        r#"
[grid]
"x.bits" = [4, 8]
[[points]]
"x.fail" = false
[[points]]
"x.fail" = true
"#,
    )
    .unwrap();
    let o = run_sweep(&s, &SweepOptions::new(dir.path()), &Fake::default(), &quiet).unwrap();
    assert_eq!((o.ran, o.failed.len()), (2, 2));
    let csv = read(&dir.path().join("results.csv"));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "x.fail,x.bits,test_accuracy,cos_mean_l1,cos_std_l1,cos_mean_l2,cos_std_l2,\
         snr_db,device_frames,device_time_s,status,point_id"
    );
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&first[..3], &["false", "4", "0.6"]);
    assert_eq!(&first[7..11], &["24.08", "4000", "2", "ok"]);
    let failed: Vec<&str> = csv.lines().nth(3).unwrap().split(',').collect();
    assert_eq!(&failed[..3], &["true", "4", ""]);
    assert_eq!(failed[10], "failed");
    let report = read(&dir.path().join("report.md"));
    assert!(
        report.contains("## Failed points") && report.contains("diverged"),
        "{report}"
    );
    // Failed points are not retried by a plain rerun.
    let fake = Fake::default();
    run_sweep(&s, &SweepOptions::new(dir.path()), &fake, &quiet).unwrap();
    assert_eq!(fake.runs.load(Ordering::SeqCst), 0);
}

#[test]
fn report_from_a_fixture_has_figures_and_mean_std_tables() {
    let dir = tempfile::tempdir().unwrap();
    let s = parse(
        r#"
name = "bottleneck-fixture"
description = "Fixture."
labels = ["variant", "bottleneck"]
[grid]
"training.seed" = [0, 1]
[[groups]]
name = "narrow"
set = { variant = "narrow" }
[groups.zip]
bottleneck = [1, 50, 800]
"x.width" = [1, 50, 800]
[[groups]]
name = "masked"
set = { variant = "masked", "x.bits" = 2 }
[groups.zip]
bottleneck = [1, 50, 800]
"x.name" = ["m1", "m50", "m800"]
[report]
params = ["bottleneck"]
"#,
    )
    .unwrap();
    run_sweep(&s, &SweepOptions::new(dir.path()), &Fake::default(), &quiet).unwrap();
    let report = read(&dir.path().join("report.md"));
    assert!(report.contains("# Sweep `bottleneck-fixture`"), "{report}");
    assert!(report.contains("## Against `bottleneck`"), "{report}");
    assert!(
        !report.contains("## Against `x.width`"),
        "only the listed params"
    );
    // narrow, b = 50: accuracy 0.5 + 0/40 + seed/1000 over seeds {0, 1}: 50.05 ± 0.07 %;
    // layer-2 cosine sqrt(50/800) = 0.25 for both seeds.
    assert!(
        report.contains(
            "| narrow | 50 | 2 | 50.05 ± 0.07 | 0.300 ± 0.000 | 0.250 ± 0.000 | 0.0 | 0 | 0.0 |"
        ),
        "{report}"
    );
    // masked: x.bits = 2, so 2,000 device frames and 1 s of device time per run.
    assert!(
        report.contains("| masked | 800 | 2 | 55.05 ± 0.07 | 0.300 ± 0.000 | 0.035 ± 0.000 | 12.0 | 2000 | 1.0 |"),
        "{report}"
    );
    let png = std::fs::read(dir.path().join("figures/bottleneck.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // Figures are written atomically: no temporary file is left beside them.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("figures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["bottleneck.png"]);
    let csv = read(&dir.path().join("results.csv"));
    assert!(
        csv.starts_with("group,variant,bottleneck,training.seed,"),
        "{csv}"
    );
    assert!(csv.contains("\nnarrow,narrow,1,0,"), "{csv}");
}
