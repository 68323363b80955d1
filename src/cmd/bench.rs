//! `speckle bench`: throughput of a device or projector, measured by a short timed loop.
//!
//! Forms (the first one exists today; the others are extension points):
//! * `speckle bench --device SPEC --in N --out M --batch B [--mode raw|linear] [--seconds T] [--json]`
//!   one projection benchmark;
//! * `speckle bench train ...`: DFA training throughput (a [`BenchTarget`] subcommand);
//! * `speckle bench --suite [--json] [--out DIR]`: the benchmark suite, where `--out` names the
//!   directory for its CSV and plot (which is why `--out` is read as text and parsed per form);
//! * `speckle bench --scaling [--json] [--out DIR]`: the simulated media's time per frame
//!   against n and m, 2^6 to 2^21, with fitted exponents (CSV and plot in `--out`).
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use speckle::hal::{memory, pack_bits, DeviceInfo, OpticalDevice, PackedFrames, RandomProjector};
use speckle_devices::{open_device, open_projector, DeviceSpec, Encoding};

use super::args::{DeviceArgs, SetArgs};
use super::bench_scaling::{self, ScalingOptions};
use super::bench_suite::{self, SuiteOptions};
use super::measure::{measure, random_binary, random_signed, timed, Measured};
use std::time::Instant;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// A benchmark other than a single projection.
    #[command(subcommand)]
    pub target: Option<BenchTarget>,
    #[command(flatten)]
    pub projection: ProjectionBenchArgs,
    /// Run the whole benchmark suite (every backend, sizes from 10 → 800 up to 2^20 → 2^21).
    #[arg(long)]
    pub suite: bool,
    /// Measure the scaling law of the simulated media: time per frame of the dense and the
    /// structured medium against n and m from 2^6 to 2^21, with fitted exponents.
    #[arg(long, conflicts_with = "suite")]
    pub scaling: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// Throughput of DFA training epochs (samples/s, GFLOP/s).
    Train(TrainBenchArgs),
}

/// Arguments of `speckle bench train`: the training throughput of a run config's model,
/// algorithm, optimizer and feedback projector, on synthetic data of the dataset's shape.
#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Run configuration (TOML). Default: the embedded default (DFA through the simulated OPU);
    /// use configs/mnist-dfa.toml for the digital projector.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub set: SetArgs,
    /// Samples in the timed loop (one MNIST epoch by default).
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub samples: u64,
    /// Timed epochs (each with a fresh trainer, each followed by as long a window of 1024³
    /// products, whose mean rate the epoch is compared with); medians are reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub repeat: u64,
    /// Also time, after each epoch, an epoch of the same config with the digital projector
    /// (`feedback.projector = "digital"`), and report the median of the per-pair ratios: the
    /// cost of the config's projector relative to digital feedback, measured in one run.
    #[arg(long)]
    pub against_digital: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Binary frames in, camera frames out (the device's native operation).
    Raw,
    /// Float vectors through the linear projector (what DFA consumes).
    Linear,
}

#[derive(Args, Debug)]
pub struct ProjectionBenchArgs {
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Input dimension N (features per vector).
    #[arg(long = "in", value_name = "N", default_value_t = 1024)]
    pub input_dim: usize,
    /// Output dimension M (camera pixels or projection outputs). With --suite or --scaling: the
    /// output directory for the CSV and plot.
    #[arg(long = "out", value_name = "M")]
    pub out: Option<String>,
    /// Vectors per call.
    #[arg(long, value_name = "B", default_value_t = 256)]
    pub batch: usize,
    /// raw: binary frames through the device; linear: float vectors through the projector.
    #[arg(long, value_enum, default_value_t = BenchMode::Raw)]
    pub mode: BenchMode,
    /// Encoding of float inputs in linear mode on an optical device.
    #[arg(long, value_name = "ENC")]
    pub encoding: Option<Encoding>,
    /// Minimum measured time, in seconds, after one untimed warm-up call.
    #[arg(long, value_name = "T", default_value_t = 3.0)]
    pub seconds: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Output dimension when `--out` is not given.
const DEFAULT_OUTPUT_DIM: usize = 8192;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        Some(BenchTarget::Train(t)) => run_train(t),
        None if args.suite => run_suite(&args.projection),
        None if args.scaling => run_scaling(&args.projection),
        None => run_projection(&args.projection),
    }
}

fn run_train(args: TrainBenchArgs) -> anyhow::Result<()> {
    let config = speckle_runs::config::RunConfig::load(args.config.as_deref(), &args.set.items)?;
    let input_dim = config.data.dataset.input_dim();
    let classes = config.data.dataset.classes();
    // Each timed epoch gets a fresh trainer and projector built from the config.
    let make_projector = || speckle_runs::run::open_feedback(&config, classes);
    let samples = usize::try_from(args.samples)?;
    // Each epoch is followed by a window of 1024³ products as long as the epoch: on a shared
    // machine the pair sees about the same load, so their ratio is steadier than either.
    let digital = if args.against_digital {
        let mut overrides = args.set.items.clone();
        overrides.push("feedback.projector=\"digital\"".to_owned());
        Some(speckle_runs::config::RunConfig::load(
            args.config.as_deref(),
            &overrides,
        )?)
    } else {
        None
    };
    let mut pairs = Vec::new();
    // Epoch time with the config's projector over that of the digital projector, per repeat:
    // the two epochs run back to back, so they see about the same load.
    let mut ratios = Vec::new();
    let mut digital_seconds = Vec::new();
    for _ in 0..args.repeat {
        let report = speckle_runs::perf::bench_epoch(&config, samples, make_projector()?)?;
        let gemm = speckle_runs::perf::gemm_mean_gflops(report.seconds);
        pairs.push((report, gemm));
        if let Some(d) = &digital {
            let projector = speckle_runs::run::open_feedback(d, classes)?;
            let r = speckle_runs::perf::bench_epoch(d, samples, projector)?;
            ratios.push(report.seconds / r.seconds);
            digital_seconds.push(r.seconds);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let against_digital = (!ratios.is_empty()).then(|| median(ratios.clone()));
    let fraction = median(pairs.iter().map(|(r, g)| r.gflops / g).collect());
    let mut reports: Vec<_> = pairs.iter().map(|(r, _)| *r).collect();
    reports.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let report = reports[reports.len() / 2];
    let peak = speckle_runs::perf::gemm_peak_gflops(1.0);
    if args.json {
        let value = serde_json::json!({
            "algorithm": format!("{:?}", config.training.algorithm).to_lowercase(),
            "input_dim": input_dim,
            "hidden": config.model.hidden,
            "batch_size": config.training.batch_size,
            "samples": report.samples,
            "seconds": report.seconds,
            "samples_per_s": report.samples_per_s,
            "flops_per_sample": report.flops_per_sample,
            "gflops": report.gflops,
            "repeat": args.repeat,
            "epoch_seconds": pairs.iter().map(|(r, _)| r.seconds).collect::<Vec<_>>(),
            "paired_gemm_gflops": pairs.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
            "fraction_of_paired_gemm": fraction,
            "gemm_peak_gflops": peak,
            "fraction_of_peak": report.gflops / peak,
            "digital_epoch_seconds": digital_seconds,
            "ratios_to_digital": ratios,
            "ratio_to_digital": against_digital,
        });
        println!("{value}");
    } else {
        println!(
            "{:?} {}-{:?}-10, batch {}: {} samples in {:.3} s{}, {:.0} samples/s, {:.1} GFLOP/s \
             ({:.0} % of the {:.1} GFLOP/s GEMM peak measured just after; {:.0} % of the GEMM \
             rate measured alongside each epoch, median)",
            config.training.algorithm,
            input_dim,
            config.model.hidden,
            config.training.batch_size,
            report.samples,
            report.seconds,
            if reports.len() > 1 {
                format!(" (median of {})", reports.len())
            } else {
                String::new()
            },
            report.samples_per_s,
            report.gflops,
            100.0 * report.gflops / peak,
            peak,
            100.0 * fraction,
        );
        if let Some(r) = against_digital {
            println!(
                "against the digital projector: {r:.3}× its epoch time (median of {} back-to-back pairs; digital epochs {})",
                ratios.len(),
                digital_seconds
                    .iter()
                    .map(|s| format!("{s:.3} s"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

fn run_suite(args: &ProjectionBenchArgs) -> anyhow::Result<()> {
    if !args.dev.set.items.is_empty() {
        bail!("--set does not apply to --suite (every case uses its preset)");
    }
    bench_suite::run(&SuiteOptions {
        seconds: args.seconds,
        json: args.json,
        out_dir: args.out.as_deref().map(std::path::PathBuf::from),
        seed: args.dev.seed,
    })
}

fn run_scaling(args: &ProjectionBenchArgs) -> anyhow::Result<()> {
    if !args.dev.set.items.is_empty() {
        bail!("--set does not apply to --scaling (every point sets its own medium)");
    }
    bench_scaling::run(&ScalingOptions {
        seconds: args.seconds,
        json: args.json,
        out_dir: args.out.as_deref().map(std::path::PathBuf::from),
        seed: args.dev.seed,
    })
}

/// The result of one projection benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub spec: String,
    pub mode: &'static str,
    pub kind: String,
    pub input_dim: usize,
    pub output_dim: usize,
    pub batch: usize,
    pub seed: u64,
    /// Untimed warm-up: opening the device (drawing the medium, calibrating) and one call.
    pub setup_s: f64,
    pub calls: u64,
    pub vectors: u64,
    pub wall_s: f64,
    pub vectors_per_s: f64,
    /// Device frames per vector (1 raw; the encoding's frame count in linear mode; 0 digital).
    pub frames_per_vector: f64,
    pub frames_per_s: f64,
    /// Useful work: 4·N·M flop per raw vector (|x·R|² with complex R and binary x),
    /// 2·N·M per linear vector (the real matrix-vector product it stands for).
    pub flop_per_vector: f64,
    pub gflops: f64,
    /// Device time the same frames take on hardware at the configured frame rate.
    pub device_time_s: f64,
    /// Vectors per second the device would sustain at its frame rate (null when it shows no
    /// frames).
    pub device_vectors_per_s: Option<f64>,
    /// Wall time over device time: below 1, the host is faster than the hardware would be.
    pub wall_over_device_time: Option<f64>,
}

fn run_projection(args: &ProjectionBenchArgs) -> anyhow::Result<()> {
    let output_dim = match &args.out {
        None => DEFAULT_OUTPUT_DIM,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|&m| m > 0)
            .with_context(|| format!("--out '{s}' is not a positive output dimension"))?,
    };
    if args.input_dim == 0 {
        bail!("--in must be at least 1");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds >= 0.0 && args.seconds <= 86_400.0) {
        bail!(
            "--seconds {} is not a duration between 0 and 86400",
            args.seconds
        );
    }
    check_batch_size(args, output_dim)?;
    if let (DeviceSpec::Serial { path, baud }, BenchMode::Raw) = (&args.dev.device, args.mode) {
        return bench_serial(args, path, *baud, output_dim);
    }
    let overrides = args.dev.set.table()?;
    let report = match args.mode {
        BenchMode::Raw => {
            if args.encoding.is_some() {
                bail!("--encoding applies to --mode linear only");
            }
            bench_raw(args, output_dim, &overrides)?
        }
        BenchMode::Linear => bench_linear(args, output_dim, &overrides)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// Refuses, before the device is opened, a batch whose inputs or outputs exceed the memory
/// limit (raw: one byte per input value, float32 camera values; linear: float32 both ways).
fn check_batch_size(args: &ProjectionBenchArgs, output_dim: usize) -> anyhow::Result<()> {
    let subject = format!("--batch {}", args.batch);
    let input_bytes = match args.mode {
        BenchMode::Raw => 1,
        BenchMode::Linear => 4,
    };
    memory::Request::new(&subject, "the inputs")
        .times(args.batch)
        .times(args.input_dim)
        .of(input_bytes)
        .check()?;
    memory::Request::new(&subject, "the outputs")
        .times(args.batch)
        .times(output_dim)
        .of(4)
        .check()?;
    Ok(())
}

/// The raw bench of a `serial:` device: the same measurement and keys as [`bench_raw`], plus
/// the protocol's efficiency over the timed loop, which a `Box<dyn OpticalDevice>` cannot
/// report.
#[derive(Debug, Clone, serde::Serialize)]
struct SerialBenchReport {
    #[serde(flatten)]
    bench: BenchReport,
    /// Useful bytes (packed frames out, camera values in) over all bytes on the wire.
    efficiency: f64,
    payload_bytes: u64,
    wire_bytes: u64,
    /// Requests sent again during the timed loop (0 on a clean link).
    retransmissions: u64,
    /// Frames per request on the wire.
    chunk_frames: usize,
}

/// Raw throughput over a serial link: opens the port (handshake and configuration, untimed),
/// then runs the same timed loop as every other device for `--seconds`.
fn bench_serial(
    args: &ProjectionBenchArgs,
    path: &std::path::Path,
    baud: Option<u32>,
    output_dim: usize,
) -> anyhow::Result<()> {
    if let Some(key) = args.dev.set.table()?.keys().next() {
        bail!(
            "device {} has no config keys to override (got '{key}'): overrides apply to simulated devices only",
            args.dev.device
        );
    }
    let path = path
        .to_str()
        .with_context(|| format!("serial path {} is not UTF-8", path.display()))?;
    let setup = Instant::now();
    let mut device = speckle_serial::SerialDevice::open(
        path,
        baud.unwrap_or(speckle_serial::DEFAULT_BAUD),
        Some((args.input_dim, output_dim)),
    )
    .with_context(|| format!("cannot open device {}", args.dev.device))?;
    let batch = RawBatch::warm_up(args, output_dim, &mut device)?;
    let setup_s = setup.elapsed().as_secs_f64();
    let before = device.link_stats();
    let bench = batch.time(args, output_dim, &mut device, setup_s)?;
    let link = device.link_stats().since(&before);
    let report = SerialBenchReport {
        bench,
        efficiency: link.efficiency(),
        payload_bytes: link.payload_bytes_sent + link.payload_bytes_received,
        wire_bytes: link.wire_bytes_sent + link.wire_bytes_received,
        retransmissions: link.retransmissions,
        chunk_frames: device.chunk_frames(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report.bench);
        println!(
            "  link                       protocol efficiency {:.1} % ({} payload / {} wire bytes, {} retransmissions, {} frames per request)",
            100.0 * report.efficiency,
            report.payload_bytes,
            report.wire_bytes,
            report.retransmissions,
            report.chunk_frames
        );
    }
    Ok(())
}

fn report(
    args: &ProjectionBenchArgs,
    (mode, kind): (&'static str, String),
    output_dim: usize,
    (frames_per_vector, flop_per_vector): (f64, f64),
    m: &Measured,
) -> BenchReport {
    let vectors = m.calls * args.batch as u64;
    let v = vectors as f64;
    let wall_s = m.wall_s;
    // The warm-up call's frames are excluded: counters are read around the timed loop.
    let frames = m.frames() as f64;
    let device_time_s = m.device_time_s();
    let has_device_time = device_time_s > 0.0;
    BenchReport {
        spec: args.dev.device.to_string(),
        mode,
        kind,
        input_dim: args.input_dim,
        output_dim,
        batch: args.batch,
        seed: args.dev.seed,
        setup_s: m.setup_s,
        calls: m.calls,
        vectors,
        wall_s,
        vectors_per_s: v / wall_s,
        frames_per_vector,
        frames_per_s: frames / wall_s,
        flop_per_vector,
        gflops: flop_per_vector * v / wall_s / 1e9,
        device_time_s,
        device_vectors_per_s: has_device_time.then(|| v / device_time_s),
        wall_over_device_time: has_device_time.then(|| wall_s / device_time_s),
    }
}

fn bench_raw(
    args: &ProjectionBenchArgs,
    output_dim: usize,
    overrides: &toml::Table,
) -> anyhow::Result<BenchReport> {
    if args.dev.device == DeviceSpec::Digital {
        bail!("digital is a linear-only projector: use --mode linear");
    }
    let setup = Instant::now();
    let mut device = open_device(
        &args.dev.device,
        args.input_dim,
        output_dim,
        args.dev.seed,
        overrides,
    )
    .with_context(|| format!("cannot open device {}", args.dev.device))?;
    let batch = RawBatch::warm_up(args, output_dim, device.as_mut())?;
    let setup_s = setup.elapsed().as_secs_f64();
    batch.time(args, output_dim, device.as_mut(), setup_s)
}

/// The batch of random binary frames a raw bench shows, after its untimed warm-up call.
struct RawBatch {
    packed: Vec<u8>,
    camera: Vec<f32>,
    info: DeviceInfo,
}

impl RawBatch {
    /// Checks the opened device's dimensions and shows the batch once.
    fn warm_up(
        args: &ProjectionBenchArgs,
        output_dim: usize,
        device: &mut dyn OpticalDevice,
    ) -> anyhow::Result<Self> {
        let info = device.info();
        if info.input_dim != args.input_dim || info.output_dim != output_dim {
            bail!(
                "device {} is {} → {}, not the requested {} → {}",
                args.dev.device,
                info.input_dim,
                info.output_dim,
                args.input_dim,
                output_dim
            );
        }
        if info.max_batch == 0 {
            bail!("device reports a maximum batch of 0 frames");
        }
        let mut packed = Vec::new();
        let values = random_binary(args.batch, args.input_dim, args.dev.seed ^ 0x5eed);
        pack_bits(&values, args.batch, args.input_dim, &mut packed)?;
        let frames = PackedFrames::new(&packed, args.batch, args.input_dim)?;
        let mut camera = vec![0f32; args.batch * output_dim];
        show_batch(device, &frames, &mut camera, info.max_batch)?;
        Ok(RawBatch {
            packed,
            camera,
            info,
        })
    }

    /// Shows the batch until `--seconds` have passed and reports the throughput.
    fn time(
        mut self,
        args: &ProjectionBenchArgs,
        output_dim: usize,
        device: &mut dyn OpticalDevice,
        setup_s: f64,
    ) -> anyhow::Result<BenchReport> {
        let frames = PackedFrames::new(&self.packed, args.batch, args.input_dim)?;
        let max_batch = self.info.max_batch;
        let measured = timed(
            device,
            setup_s,
            args.seconds,
            |d| d.counters(),
            |d| show_batch(d, &frames, &mut self.camera, max_batch),
        )?;
        let flop = 4.0 * args.input_dim as f64 * output_dim as f64;
        Ok(report(
            args,
            ("raw", self.info.kind),
            output_dim,
            (1.0, flop),
            &measured,
        ))
    }
}

/// Shows `frames` on the device, at most `max_batch` frames per call.
fn show_batch(
    device: &mut dyn OpticalDevice,
    frames: &PackedFrames<'_>,
    camera: &mut [f32],
    max_batch: usize,
) -> anyhow::Result<()> {
    let out = camera.len() / frames.frames().max(1);
    let mut start = 0;
    while start < frames.frames() {
        let n = max_batch.min(frames.frames() - start);
        device.transform(
            &frames.slice(start, n),
            &mut camera[start * out..(start + n) * out],
        )?;
        start += n;
    }
    Ok(())
}

fn bench_linear(
    args: &ProjectionBenchArgs,
    output_dim: usize,
    overrides: &toml::Table,
) -> anyhow::Result<BenchReport> {
    let encoding = args.encoding.unwrap_or_default();
    let setup = Instant::now();
    let mut projector = open_projector(
        &args.dev.device,
        encoding,
        overrides,
        args.input_dim,
        output_dim,
        args.dev.seed,
    )
    .with_context(|| format!("cannot open a linear projector on {}", args.dev.device))?;
    let info = projector.info();
    let x = random_signed(args.batch, args.input_dim, args.dev.seed ^ 0x5eed);
    let mut y = vec![0f32; args.batch * output_dim];
    let measured = measure(
        &mut *projector,
        setup,
        args.seconds,
        |p| p.counters(),
        |p| Ok(p.project(&x, args.batch, &mut y)?),
    )?;
    let flop = 2.0 * args.input_dim as f64 * output_dim as f64;
    Ok(report(
        args,
        ("linear", info.identity.clone()),
        output_dim,
        (info.frames_per_vector, flop),
        &measured,
    ))
}

fn print_report(r: &BenchReport) {
    println!(
        "{} ({}, {} mode): {} → {}, batch {}",
        r.spec, r.kind, r.mode, r.input_dim, r.output_dim, r.batch
    );
    println!("  setup (open + first call)  {:.3} s", r.setup_s);
    println!(
        "  measured                   {} vectors in {:.3} s ({} calls)",
        r.vectors, r.wall_s, r.calls
    );
    println!("  vectors/s                  {:.1}", r.vectors_per_s);
    println!(
        "  frames/s                   {:.1} ({} frames per vector)",
        r.frames_per_s, r.frames_per_vector
    );
    println!(
        "  GFLOP/s                    {:.1} ({:.3e} flop per vector)",
        r.gflops, r.flop_per_vector
    );
    match r.device_vectors_per_s {
        Some(dv) => println!(
            "  on hardware                {:.3} s of device time, {:.1} vectors/s at the configured frame rate",
            r.device_time_s, dv
        ),
        None => println!("  on hardware                no device frames (digital projector)"),
    }
}
