//! `speckle transform`: a `.npy` batch through a device, raw camera frames or `--linear`.
use super::npy;
use anyhow::{bail, Context};
use clap::Args;
use ndarray::Array2;
use speckle::hal::{memory, DeviceInfo, OpticalDevice, PackedFrames, RandomProjector};
use speckle_devices::batch::{pack_rows, project_rows, transform_rows, CameraDtype, CameraSample};
use speckle_devices::{open_device, open_projector, DeviceSpec, Encoding};

use super::args::DeviceArgs;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TransformArgs {
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Input .npy: 2-D uint8/bool of 0/1 (raw mode) or float32 (--linear), batch × features.
    #[arg(long)]
    pub input: PathBuf,
    /// Output .npy: raw camera frames (uint8 up to 8 bits, uint16 for 9 to 16 bits, float32 for an
    /// ideal camera) or float32 projections (--linear).
    #[arg(long)]
    pub output: PathBuf,
    /// Output dimension [default: the number of input features].
    #[arg(long, value_name = "N")]
    pub out_dim: Option<usize>,
    /// Linear projection of float32 vectors instead of raw intensities of binary frames.
    #[arg(long)]
    pub linear: bool,
    /// Encoding of signed float inputs on an optical device (--linear), with its device frames
    /// per vector: ternary, ternary:T (threshold T), ternary:dither (4), bitplane:P (P bits per
    /// sign, 4P), levels:K or levels:K:dither (K levels per vector, 2(K-1)).
    #[arg(long, value_name = "ENC")]
    pub encoding: Option<Encoding>,
}

pub fn run(args: TransformArgs) -> anyhow::Result<()> {
    let overrides = args.dev.set.table()?;
    if args.out_dim == Some(0) {
        bail!("--out-dim must be at least 1");
    }
    speckle_runs::atomic::refuse_same_file(&args.input, &args.output)?;
    if args.linear {
        run_linear(&args, &overrides)
    } else {
        if args.dev.device == DeviceSpec::Digital {
            bail!("digital is a linear-only projector: add --linear (float32 input)");
        }
        if args.encoding.is_some() {
            bail!("--encoding applies to --linear only");
        }
        run_raw(&args, &overrides)
    }
}

fn run_raw(args: &TransformArgs, overrides: &toml::Table) -> anyhow::Result<()> {
    let x = npy::read_binary_matrix(&args.input)?;
    let out_dim = args.out_dim.unwrap_or(x.cols);
    check_output_size(args, x.rows, out_dim)?;
    let dev = &args.dev;
    let mut device = open_device(&dev.device, x.cols, out_dim, dev.seed, overrides)
        .with_context(|| format!("cannot open device {}", dev.device))?;
    let info = device.info();
    match CameraDtype::for_bit_depth(info.bit_depth)? {
        CameraDtype::F32 => npy::write_npy_atomic(
            &args.output,
            &transform_raw::<f32>(&mut device, &info, &x, out_dim)?,
        ),
        CameraDtype::U8 => npy::write_npy_atomic(
            &args.output,
            &transform_raw::<u8>(&mut device, &info, &x, out_dim)?,
        ),
        CameraDtype::U16 => npy::write_npy_atomic(
            &args.output,
            &transform_raw::<u16>(&mut device, &info, &x, out_dim)?,
        ),
    }
}

/// Refuses, before the device is opened, an output larger than the memory limit: `rows ×
/// out_dim` float32 values (the raw frames or projections, before any conversion).
fn check_output_size(args: &TransformArgs, rows: usize, out_dim: usize) -> anyhow::Result<()> {
    let subject = match args.out_dim {
        Some(m) => format!("--out-dim {m}"),
        None => format!("{} (out dim {out_dim}, its features)", args.input.display()),
    };
    memory::Request::new(subject, format!("the output of {rows} rows"))
        .times(rows)
        .times(out_dim)
        .of(4)
        .check()?;
    Ok(())
}

/// Shows every row of `x` on the device, `max_batch` frames per call, and keeps the first
/// `out_dim` camera pixels of each frame as checked camera samples: a value that is not a whole
/// number in `0 ..= 2^bits − 1` is a device fault, never silently cast. Rows narrower than the
/// device are padded with dark (0) mirrors.
fn transform_raw<T: CameraSample + Default>(
    device: &mut dyn OpticalDevice,
    info: &DeviceInfo,
    x: &npy::BinaryMatrix,
    out_dim: usize,
) -> anyhow::Result<Array2<T>> {
    if x.cols > info.input_dim {
        bail!(
            "input has {} features but the device takes at most {}",
            x.cols,
            info.input_dim
        );
    }
    if out_dim > info.output_dim {
        bail!(
            "--out-dim {} exceeds the device's {} camera pixels",
            out_dim,
            info.output_dim
        );
    }
    let mut packed = Vec::new();
    pack_rows(&x.values, x.rows, x.cols, info.input_dim, &mut packed)?;
    let frames = PackedFrames::new(&packed, x.rows, info.input_dim)?;
    let frames_per_call = info.max_batch.min(x.rows.max(1));
    memory::Request::new(format!("device {}", info.kind), "one call's camera frames")
        .times(frames_per_call)
        .times(info.output_dim)
        .of(4)
        .check()?;
    let mut out = Array2::<T>::default((x.rows, out_dim));
    let buf = out
        .as_slice_mut()
        .expect("a fresh array is in standard layout");
    transform_rows(device, info, &frames, out_dim, buf, &mut Vec::new())?;
    Ok(out)
}

fn run_linear(args: &TransformArgs, overrides: &toml::Table) -> anyhow::Result<()> {
    let x = npy::read_float_matrix(&args.input)?;
    let out_dim = args.out_dim.unwrap_or(x.cols);
    check_output_size(args, x.rows, out_dim)?;
    let dev = &args.dev;
    let encoding = args.encoding.unwrap_or_default();
    let mut projector = open_projector(&dev.device, encoding, overrides, x.cols, out_dim, dev.seed)
        .with_context(|| format!("cannot open a linear projector on {}", dev.device))?;
    let y = project_all(&mut projector, &x, out_dim)?;
    npy::write_npy_atomic(&args.output, &y)
}

fn project_all(
    projector: &mut dyn RandomProjector,
    x: &npy::FloatMatrix,
    out_dim: usize,
) -> anyhow::Result<Array2<f32>> {
    let mut y = Array2::<f32>::zeros((x.rows, out_dim));
    let ys = y
        .as_slice_mut()
        .expect("a fresh array is in standard layout");
    project_rows(projector, &x.values, x.rows, ys)?;
    Ok(y)
}
