//! `speckle bench --suite [--json] [--out DIR] [--seconds T]`: every backend over a ladder of
//! sizes, from 10 → 800 (DFA feedback on MNIST) up to 2^20 → 2^21 (a full-size OPU), in short
//! timed loops.
//!
//! Each case opens its backend (untimed: drawing the medium, calibrating), makes one untimed
//! warm-up call, then repeats the call until `T / 6` seconds have passed (0.5 s with the default
//! `--seconds 3`). The table gives vectors/s and frames/s on this host, the equivalent dense
//! operations per second (4·N·M flop per raw vector, |x·R|² with complex R; 2·N·M per linear
//! vector), and the device time the same frames would take on hardware at the configured frame
//! rate. `--out DIR` writes `suite.csv` and `suite.png` (vectors/s against N·M per backend).
use super::measure::{measure, random_binary, random_signed, Measured};
use anyhow::{bail, Context};
use speckle::hal::{pack_bits, OpticalDevice, PackedFrames};
use speckle_devices::{open_device, open_projector, DeviceSpec, SimSource};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// `--seconds`: six cases take about this long together.
    pub seconds: f64,
    /// Print one JSON array instead of the table.
    pub json: bool,
    /// Where to write `suite.csv` and `suite.png`.
    pub out_dir: Option<PathBuf>,
    /// Seed of every backend and input.
    pub seed: u64,
}

/// What one case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// The ideal digital Gaussian projector (linear only).
    Digital,
    /// The simulated OPU, raw frames, with a preset (`ideal`, `lighton`, `structured`).
    SimRaw(&'static str),
    /// The simulated OPU behind the interferometric linear projector (ternary encoding).
    SimLinear(&'static str),
    /// The serial backend talking to the emulator (8-bit dense simulator) over an in-memory
    /// link: the protocol's cost without a port's baud rate.
    SerialEmulator,
}

impl Backend {
    fn label(&self) -> String {
        match self {
            Backend::Digital => "digital".into(),
            Backend::SimRaw("ideal") => "dense ideal raw".into(),
            Backend::SimRaw("lighton") => "dense 8-bit raw".into(),
            Backend::SimRaw("structured") => "structured 8-bit raw".into(),
            Backend::SimRaw(p) => format!("sim:{p} raw"),
            Backend::SimLinear("ideal") => "dense ideal linear".into(),
            Backend::SimLinear("structured") => "structured linear".into(),
            Backend::SimLinear(p) => format!("sim:{p} linear"),
            Backend::SerialEmulator => "serial+emulator 8-bit".into(),
        }
    }

    fn mode(&self) -> &'static str {
        match self {
            Backend::Digital | Backend::SimLinear(_) => "linear",
            Backend::SimRaw(_) | Backend::SerialEmulator => "raw",
        }
    }
}

/// One case of the suite.
#[derive(Debug, Clone, Copy)]
struct Case {
    backend: Backend,
    input_dim: usize,
    output_dim: usize,
    batch: usize,
}

const fn case(backend: Backend, input_dim: usize, output_dim: usize, batch: usize) -> Case {
    Case {
        backend,
        input_dim,
        output_dim,
        batch,
    }
}

/// The default suite (about a minute and a half on two cores). Dense backends stop where their
/// matrix stops fitting memory comfortably (4096 × 4096 complex entries = 128 MiB); the
/// structured medium goes on to the full-size device.
const SUITE: &[Case] = &[
    case(Backend::Digital, 10, 800, 256),
    case(Backend::Digital, 1024, 8192, 256),
    case(Backend::Digital, 4096, 4096, 256),
    case(Backend::Digital, 10, 1 << 20, 16),
    case(Backend::SimRaw("ideal"), 10, 800, 256),
    case(Backend::SimRaw("ideal"), 1024, 8192, 256),
    case(Backend::SimRaw("ideal"), 4096, 4096, 256),
    case(Backend::SimRaw("lighton"), 10, 800, 256),
    case(Backend::SimRaw("lighton"), 1024, 8192, 256),
    case(Backend::SimRaw("lighton"), 4096, 4096, 256),
    case(Backend::SimLinear("ideal"), 10, 800, 256),
    case(Backend::SimLinear("ideal"), 1024, 8192, 64),
    case(Backend::SimRaw("structured"), 10, 800, 256),
    case(Backend::SimRaw("structured"), 1024, 8192, 256),
    case(Backend::SimRaw("structured"), 4096, 4096, 256),
    case(Backend::SimRaw("structured"), 1 << 16, 1 << 17, 8),
    case(Backend::SimRaw("structured"), 1 << 20, 1 << 21, 2),
    case(Backend::SimLinear("structured"), 10, 800, 256),
    case(Backend::SimLinear("structured"), 10, 1 << 20, 4),
    case(Backend::SerialEmulator, 10, 800, 256),
    case(Backend::SerialEmulator, 1024, 8192, 64),
];

/// One measured row of the table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SuiteRow {
    pub backend: String,
    pub mode: &'static str,
    pub input_dim: usize,
    pub output_dim: usize,
    pub batch: usize,
    /// Opening the backend plus one warm-up call, seconds.
    pub setup_s: f64,
    pub vectors: u64,
    pub wall_s: f64,
    pub vectors_per_s: f64,
    /// Device frames per second of wall time (0 for the digital projector).
    pub frames_per_s: f64,
    /// Equivalent dense operations per second: 4·N·M flop per raw vector, 2·N·M per linear one.
    pub equiv_ops_per_s: f64,
    /// Device time the measured frames take on hardware at the configured frame rate.
    pub device_time_s: f64,
    /// Wall time over device time (below 1: this host is faster than the hardware).
    pub wall_over_device: Option<f64>,
}

pub fn run(args: &SuiteOptions) -> anyhow::Result<()> {
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds {} is not a duration in (0, 3600]", args.seconds);
    }
    let out_dir = args.out_dir.as_deref();
    if let Some(dir) = out_dir {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        }
    }
    let per_case = args.seconds / 6.0;
    let mut rows = Vec::new();
    if !args.json {
        print_header();
    }
    let mut failures = 0;
    for c in SUITE {
        match run_case(c, per_case, args.seed) {
            Ok(row) => {
                if !args.json {
                    print_row(&row);
                }
                rows.push(row);
            }
            // One failing backend must not hide the others: report it and go on.
            Err(e) => {
                failures += 1;
                eprintln!(
                    "error: {} {} → {}: {e:#}",
                    c.backend.label(),
                    c.input_dim,
                    c.output_dim
                );
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    if let Some(dir) = out_dir {
        write_csv(&dir.join("suite.csv"), &rows)?;
        plot(&dir.join("suite.png"), &rows)?;
        if !args.json {
            println!(
                "wrote {} and {}",
                dir.join("suite.csv").display(),
                dir.join("suite.png").display()
            );
        }
    }
    if failures > 0 {
        bail!("{failures} of {} suite cases failed", SUITE.len());
    }
    Ok(())
}

fn run_case(c: &Case, seconds: f64, seed: u64) -> anyhow::Result<SuiteRow> {
    let setup = Instant::now();
    let measured = match c.backend {
        Backend::Digital => projector_loop(&DeviceSpec::Digital, c, seconds, seed, setup)?,
        Backend::SimLinear(preset) => {
            let dev_spec = DeviceSpec::Sim(SimSource::Preset(preset.into()));
            projector_loop(&dev_spec, c, seconds, seed, setup)?
        }
        Backend::SimRaw(preset) => {
            let dev_spec = DeviceSpec::Sim(SimSource::Preset(preset.into()));
            let mut device = open_device(
                &dev_spec,
                c.input_dim,
                c.output_dim,
                seed,
                &toml::Table::new(),
            )?;
            raw_loop(&mut *device, c, seconds, seed, setup)?
        }
        Backend::SerialEmulator => serial_case(c, seconds, seed, setup)?,
    };
    Ok(row(c, &measured))
}

/// Timed linear projections of one random signed batch.
fn projector_loop(
    dev_spec: &DeviceSpec,
    c: &Case,
    seconds: f64,
    seed: u64,
    setup: Instant,
) -> anyhow::Result<Measured> {
    let (n, m, batch) = (c.input_dim, c.output_dim, c.batch);
    let mut projector = open_projector(
        dev_spec,
        Default::default(),
        &toml::Table::new(),
        n,
        m,
        seed,
    )?;
    let x = random_signed(batch, n, seed ^ 0x5eed);
    let mut y = vec![0f32; batch * m];
    measure(
        &mut *projector,
        setup,
        seconds,
        |p| p.counters(),
        |p| Ok(p.project(&x, batch, &mut y)?),
    )
}

/// Timed raw transforms of one random binary batch.
fn raw_loop(
    device: &mut dyn OpticalDevice,
    c: &Case,
    seconds: f64,
    seed: u64,
    setup: Instant,
) -> anyhow::Result<Measured> {
    raw_frames_loop(
        device,
        (c.input_dim, c.output_dim, c.batch),
        seconds,
        seed,
        setup,
    )
}

/// Timed raw transforms of one batch of random binary frames, `(n, m, batch)`: one untimed
/// call (the end of a setup that began at `setup`), then calls for `seconds`.
pub(super) fn raw_frames_loop(
    device: &mut dyn OpticalDevice,
    (n, m, batch): (usize, usize, usize),
    seconds: f64,
    seed: u64,
    setup: Instant,
) -> anyhow::Result<Measured> {
    let mut packed = Vec::new();
    pack_bits(
        &random_binary(batch, n, seed ^ 0x5eed),
        batch,
        n,
        &mut packed,
    )?;
    let frames = PackedFrames::new(&packed, batch, n)?;
    let mut out = vec![0f32; batch * m];
    measure(
        device,
        setup,
        seconds,
        |d| d.counters(),
        |d| Ok(d.transform(&frames, &mut out)?),
    )
}

/// The serial backend against the emulator serving the 8-bit dense simulator (one byte per
/// pixel on the wire), over an in-memory link (a thread on each end).
fn serial_case(c: &Case, seconds: f64, seed: u64, setup: Instant) -> anyhow::Result<Measured> {
    use speckle_devices::emulator::{sim_emulator_options, sim_factory};
    use speckle_serial::{memory_link, Emulator, SerialDevice, SerialOptions};
    let config = speckle::sim::DeviceConfig::preset("lighton")?;
    let (host, mut dev_end) = memory_link();
    let options = sim_emulator_options(&config);
    let server = std::thread::spawn(move || {
        let mut emulator = Emulator::new(sim_factory(config, seed), options);
        emulator.serve(&mut dev_end, &AtomicBool::new(false))
    });
    let result = (|| {
        let options = SerialOptions {
            dims: Some((c.input_dim, c.output_dim)),
            name: "memory link".into(),
            ..SerialOptions::default()
        };
        let mut device = SerialDevice::new(host, options)?;
        raw_loop(&mut device, c, seconds, seed, setup)
    })();
    // The host end is dropped by now: the emulator sees the end of the stream and returns.
    let _ = server.join();
    result
}

fn row(c: &Case, m: &Measured) -> SuiteRow {
    let vectors = m.calls * c.batch as u64;
    let wall = m.wall_s.max(1e-12);
    let per_vector = match c.backend.mode() {
        "raw" => 4.0,
        _ => 2.0,
    } * c.input_dim as f64
        * c.output_dim as f64;
    SuiteRow {
        backend: c.backend.label(),
        mode: c.backend.mode(),
        input_dim: c.input_dim,
        output_dim: c.output_dim,
        batch: c.batch,
        setup_s: m.setup_s,
        vectors,
        wall_s: m.wall_s,
        vectors_per_s: vectors as f64 / wall,
        frames_per_s: m.frames() as f64 / wall,
        equiv_ops_per_s: per_vector * vectors as f64 / wall,
        device_time_s: m.device_time_s(),
        wall_over_device: (m.device_time_s() > 0.0).then(|| m.wall_s / m.device_time_s()),
    }
}

/// `1048576` → `2^20`, other numbers as they are.
fn dim(v: usize) -> String {
    if v >= 1 << 14 && v.is_power_of_two() {
        format!("2^{}", v.trailing_zeros())
    } else {
        v.to_string()
    }
}

/// A number with an SI prefix, three significant digits.
fn si(v: f64) -> String {
    let (scale, unit) = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(s, _)| v.abs() >= *s)
        .unwrap_or((1.0, ""));
    format!("{:.3}{unit}", v / scale)
}

fn print_header() {
    println!(
        "{:<22} {:>15} {:>6} {:>10} {:>10} {:>10} {:>11} {:>9} {:>8}",
        "backend",
        "size",
        "batch",
        "vectors/s",
        "frames/s",
        "eq. ops/s",
        "device time",
        "wall/dev",
        "setup s"
    );
}

fn print_row(r: &SuiteRow) {
    println!(
        "{:<22} {:>15} {:>6} {:>10} {:>10} {:>10} {:>11} {:>9} {:>8.2}",
        r.backend,
        format!("{} → {}", dim(r.input_dim), dim(r.output_dim)),
        r.batch,
        si(r.vectors_per_s),
        si(r.frames_per_s),
        si(r.equiv_ops_per_s),
        if r.device_time_s > 0.0 {
            format!("{:.3} s", r.device_time_s)
        } else {
            "-".into()
        },
        r.wall_over_device.map_or("-".into(), |v| format!("{v:.3}")),
        r.setup_s,
    );
    let _ = std::io::stdout().flush();
}

/// Writes the CSV atomically, with the ordinary permissions of a new file.
fn write_csv(path: &Path, rows: &[SuiteRow]) -> anyhow::Result<()> {
    let mut text = String::from(
        "backend,mode,input_dim,output_dim,batch,setup_s,vectors,wall_s,vectors_per_s,frames_per_s,equiv_ops_per_s,device_time_s,wall_over_device\n",
    );
    for r in rows {
        text.push_str(&format!(
            "{},{},{},{},{},{:.6},{},{:.6},{:.6},{:.6},{:.6e},{:.6},{}\n",
            r.backend,
            r.mode,
            r.input_dim,
            r.output_dim,
            r.batch,
            r.setup_s,
            r.vectors,
            r.wall_s,
            r.vectors_per_s,
            r.frames_per_s,
            r.equiv_ops_per_s,
            r.device_time_s,
            r.wall_over_device
                .map_or(String::new(), |v| format!("{v:.6}")),
        ));
    }
    // Not tempfile::NamedTempFile, whose 0600 the rename would give the CSV.
    speckle_runs::atomic::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Vectors/s against N·M (both log10), one line per backend.
fn plot(path: &Path, rows: &[SuiteRow]) -> anyhow::Result<()> {
    use speckle_runs::plot::{line_chart, Series};
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        let point = (
            (r.input_dim as f64 * r.output_dim as f64).log10(),
            r.vectors_per_s.max(1e-9).log10(),
        );
        match series.iter_mut().find(|s| s.label == r.backend) {
            Some(s) => s.points.push(point),
            None => series.push(Series {
                label: r.backend.clone(),
                points: vec![point],
            }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    line_chart(
        path,
        "speckle bench --suite: throughput against size",
        "log10(N·M) (matrix entries)",
        "log10(vectors/s)",
        None,
        &series,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_csv_gets_the_ordinary_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("suite.csv");
        write_csv(&csv, &[]).unwrap();
        // What File::create gives under this process's umask (0644 under 022), not 0600.
        let probe = dir.path().join("probe");
        std::fs::File::create(&probe).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&csv), mode(&probe));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn labels_and_formatting() {
        assert_eq!(dim(1 << 20), "2^20");
        assert_eq!(dim(800), "800");
        assert_eq!(si(1.5e12), "1.500T");
        assert_eq!(si(12.0), "12.000");
        let measured = Measured {
            setup_s: 0.1,
            calls: 4,
            wall_s: 2.0,
            ..Measured::default()
        };
        let r = row(&SUITE[1], &measured);
        assert_eq!(r.vectors, 4 * 256);
        assert!((r.equiv_ops_per_s - 2.0 * 1024.0 * 8192.0 * 512.0).abs() < 1.0);
        assert!(r.wall_over_device.is_none());
        // Every suite case is a valid size for its backend family.
        assert!(SUITE
            .iter()
            .all(|c| c.input_dim > 0 && c.output_dim > 0 && c.batch > 0));
    }

    #[test]
    fn csv_and_plot_are_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let measured = Measured {
            setup_s: 0.1,
            calls: 4,
            wall_s: 2.0,
            ..Measured::default()
        };
        let rows = [row(&SUITE[0], &measured), row(&SUITE[1], &measured)];
        write_csv(&dir.path().join("suite.csv"), &rows).unwrap();
        plot(&dir.path().join("suite.png"), &rows).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("suite.csv")).unwrap();
        assert!(csv.starts_with("backend,mode,input_dim,"), "{csv}");
        assert_eq!(csv.lines().count(), 3);
        let png = std::fs::read(dir.path().join("suite.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Nothing but the two files: no temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
