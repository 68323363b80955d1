//! `speckle transform`: a `.npy` batch through a device, raw camera frames or `--linear`.
use super::npy;
use anyhow::{bail, Context};
use clap::Args;
use ndarray::Array2;
use speckle::hal::{memory, pack_bits, DeviceInfo, OpticalDevice, PackedFrames, RandomProjector};
use speckle_devices::{open_device, open_projector, DeviceSpec, Encoding};

use super::args::DeviceArgs;
use std::path::PathBuf;

/// Rows projected per call in linear mode: bounds the working memory of large inputs.
const LINEAR_CHUNK_ROWS: usize = 256;

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
    /// Encoding of signed float inputs on an optical device (--linear): ternary, ternary:T
    /// (threshold T) or bitplane:P (P bits per sign).
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
    let frames = transform_raw(&mut device, &info, &x, out_dim)?;
    match info.bit_depth {
        None => npy::write_npy_atomic(&args.output, &frames)?,
        Some(bits) if bits <= 8 => {
            npy::write_npy_atomic(&args.output, &to_counts::<u8>(&frames, bits)?)?
        }
        Some(bits) if bits <= 16 => {
            npy::write_npy_atomic(&args.output, &to_counts::<u16>(&frames, bits)?)?
        }
        Some(bits) => bail!("device reports a {bits}-bit camera; at most 16 bits are supported"),
    }
    Ok(())
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
/// `out_dim` camera pixels of each frame. Rows narrower than the device are padded with dark
/// (0) mirrors.
fn transform_raw(
    device: &mut dyn OpticalDevice,
    info: &DeviceInfo,
    x: &npy::BinaryMatrix,
    out_dim: usize,
) -> anyhow::Result<Array2<f32>> {
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
    if info.max_batch == 0 {
        bail!("device reports a maximum batch of 0 frames");
    }
    let width = info.input_dim;
    let mut packed = Vec::new();
    if x.cols == width {
        pack_bits(&x.values, x.rows, width, &mut packed)?;
    } else {
        let mut padded = vec![0u8; x.rows * width];
        for (dst, src) in padded
            .chunks_exact_mut(width)
            .zip(x.values.chunks_exact(x.cols))
        {
            dst[..x.cols].copy_from_slice(src);
        }
        pack_bits(&padded, x.rows, width, &mut packed)?;
    }
    let frames = PackedFrames::new(&packed, x.rows, width)?;
    let frames_per_call = info.max_batch.min(x.rows.max(1));
    memory::Request::new(format!("device {}", info.kind), "one call's camera frames")
        .times(frames_per_call)
        .times(info.output_dim)
        .of(4)
        .check()?;
    let mut out = Array2::<f32>::zeros((x.rows, out_dim));
    let mut camera = vec![0f32; frames_per_call * info.output_dim];
    let mut start = 0;
    while start < x.rows {
        let n = info.max_batch.min(x.rows - start);
        let buf = &mut camera[..n * info.output_dim];
        device
            .transform(&frames.slice(start, n), buf)
            .with_context(|| format!("device failed on frames {start}..{}", start + n))?;
        for (r, frame) in buf.chunks_exact(info.output_dim).enumerate() {
            out.row_mut(start + r)
                .as_slice_mut()
                .expect("rows of a standard-layout array are contiguous")
                .copy_from_slice(&frame[..out_dim]);
        }
        start += n;
    }
    Ok(out)
}

/// Integer counts of a quantized camera, checked: a value that is not a whole number in
/// `0 ..= 2^bits − 1` is a device fault, never silently cast.
fn to_counts<T: TryFrom<u32> + Clone + Default>(
    frames: &Array2<f32>,
    bits: u8,
) -> anyhow::Result<Array2<T>> {
    let max = (1u32 << bits) - 1;
    let mut out = Array2::<T>::from_elem(frames.dim(), T::default());
    for ((pos, &v), o) in frames.indexed_iter().zip(out.iter_mut()) {
        let ok = v.is_finite() && v >= 0.0 && v <= max as f32 && v.fract() == 0.0;
        let count = ok.then(|| T::try_from(v as u32).ok()).flatten();
        *o = count.with_context(|| {
            format!(
                "device returned {v} at row {}, pixel {}: not a {bits}-bit count",
                pos.0, pos.1
            )
        })?;
    }
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
    for (chunk, (xs, out)) in x
        .values
        .chunks(LINEAR_CHUNK_ROWS * x.cols)
        .zip(ys.chunks_mut(LINEAR_CHUNK_ROWS * out_dim))
        .enumerate()
    {
        let n = xs.len() / x.cols;
        projector.project(xs, n, out).with_context(|| {
            let start = chunk * LINEAR_CHUNK_ROWS;
            format!("projection failed on rows {start}..{}", start + n)
        })?;
    }
    Ok(y)
}
