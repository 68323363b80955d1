//! Whole batches through an opened device or projector, the way `speckle transform` runs them:
//! binary rows are packed to the device's width (extra mirrors dark), shown in calls of at most
//! the device's `max_batch` frames, and the first `out_dim` camera pixels of each frame are kept
//! as checked camera samples; float rows are projected [`LINEAR_CHUNK_ROWS`] at a time. The
//! command line and the Python module both call these, so one SPEC and seed give the same bits
//! from either.
//!
//! ```
//! use speckle_devices::batch::{pack_rows, transform_rows};
//! use speckle_devices::{open_device, DeviceSpec};
//! use speckle_hal::{OpticalDevice, PackedFrames};
//!
//! let spec: DeviceSpec = "sim".parse()?;
//! let mut device = open_device(&spec, 16, 32, 0, &Default::default())?;
//! let info = device.info();
//! let x: Vec<u8> = (0..3 * 16).map(|i| (i % 3 == 0) as u8).collect();
//! let mut packed = Vec::new();
//! pack_rows(&x, 3, 16, info.input_dim, &mut packed)?;
//! let frames = PackedFrames::new(&packed, 3, info.input_dim)?;
//! let mut y = vec![0u8; 3 * 32]; // the preset's camera has 8 bits
//! transform_rows(&mut device, &info, &frames, 32, &mut y, &mut Vec::new())?;
//! assert!(y.iter().any(|&v| v > 0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
use rayon::prelude::*;
use speckle_hal::{pack_bits, DeviceInfo, Error, ErrorKind, OpticalDevice, PackedFrames};

/// Rows projected per call by [`project_rows`] (and `speckle transform --linear`): bounds the
/// working memory of large inputs.
pub const LINEAR_CHUNK_ROWS: usize = 256;

/// Most camera values [`transform_rows`] buffers between the device and its output when it
/// converts frames (64 MiB of `f32`): larger batches are shown in several device calls, which
/// changes nothing in the frames (a device's noise follows its frame index, not its calls).
pub const CAMERA_SCRATCH_VALUES: usize = 16 << 20;

/// Camera values per device call from which [`transform_rows`] converts rows in parallel.
const PARALLEL_CONVERSION_VALUES: usize = 1 << 16;

/// How camera values are stored: `u8` for cameras of up to 8 bits, `u16` for 9 to 16 bits,
/// `f32` for a float (ideal) camera, as `speckle transform` writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraDtype {
    /// Counts of a camera of 1 to 8 bits.
    U8,
    /// Counts of a camera of 9 to 16 bits.
    U16,
    /// Intensities of a float camera.
    F32,
}

impl CameraDtype {
    /// The storage of a camera with `bit_depth` ADC bits (`None`: a float camera). More than
    /// 16 bits is an [`ErrorKind::Unsupported`] error.
    pub fn for_bit_depth(bit_depth: Option<u8>) -> Result<Self, Error> {
        match bit_depth {
            None => Ok(CameraDtype::F32),
            Some(bits) if bits <= 8 => Ok(CameraDtype::U8),
            Some(bits) if bits <= 16 => Ok(CameraDtype::U16),
            Some(bits) => Err(Error::new(
                ErrorKind::Unsupported,
                format!("device reports a {bits}-bit camera; at most 16 bits are supported"),
            )),
        }
    }
}

/// A type camera values are stored as: [`f32`], or the counts [`u8`] and [`u16`].
pub trait CameraSample: Copy + Send + Sync + 'static {
    /// The largest count the type holds; `None` for `f32`, which stores any camera value as
    /// it is.
    const MAX_COUNT: Option<u32>;

    /// A count already checked to be at most [`MAX_COUNT`](Self::MAX_COUNT).
    fn from_count(count: u32) -> Self;

    /// The buffer as `f32`, when the type is `f32` (camera frames go straight into it).
    fn as_f32_mut(buffer: &mut [Self]) -> Option<&mut [f32]>;
}

impl CameraSample for f32 {
    const MAX_COUNT: Option<u32> = None;

    fn from_count(count: u32) -> Self {
        count as f32
    }

    fn as_f32_mut(buffer: &mut [Self]) -> Option<&mut [f32]> {
        Some(buffer)
    }
}

impl CameraSample for u8 {
    const MAX_COUNT: Option<u32> = Some(u8::MAX as u32);

    fn from_count(count: u32) -> Self {
        count as u8
    }

    fn as_f32_mut(_buffer: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

impl CameraSample for u16 {
    const MAX_COUNT: Option<u32> = Some(u16::MAX as u32);

    fn from_count(count: u32) -> Self {
        count as u16
    }

    fn as_f32_mut(_buffer: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

/// Stores one camera frame's first `dst.len()` values as counts of at most `max`. Returns the
/// column of the first value that is not a whole number in `0 ..= max` (NaN included).
fn store_counts<T: CameraSample>(src: &[f32], dst: &mut [T], max: u32) -> Result<(), usize> {
    let max_f = max as f32;
    let mut ok = true;
    // Branch-free, so that it vectorizes; the first bad value is looked up only on failure.
    for (o, &v) in dst.iter_mut().zip(src) {
        let count = v as u32; // saturating; checked just below
        ok &= (v >= 0.0) & (v <= max_f) & (count as f32 == v);
        *o = T::from_count(count.min(max));
    }
    if ok {
        return Ok(());
    }
    Err(src[..dst.len()]
        .iter()
        .position(|&v| !(v >= 0.0 && v <= max_f && (v as u32) as f32 == v))
        .unwrap_or(0))
}

/// Packs one row of 0/1 bytes into `dst` (LSB first), eight values per step; `false` when a
/// value is neither 0 nor 1 (`dst` is then unspecified).
fn pack_row(src: &[u8], dst: &mut [u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Gathers bit 0 of each byte j of a word into bit j of its top byte (no carries: the
    // partial products land on distinct bits).
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let mut bad = 0u64;
    let mut chunks = src.chunks_exact(8);
    for (chunk, out) in (&mut chunks).zip(dst.iter_mut()) {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        bad |= word & !ONES;
        *out = (word.wrapping_mul(GATHER) >> 56) as u8;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut byte = 0u8;
        for (j, &v) in tail.iter().enumerate() {
            bad |= u64::from(v & !1);
            byte |= (v & 1) << j;
        }
        dst[src.len() / 8] = byte;
    }
    bad == 0
}

/// Packs `rows × cols` values, each 0 or 1, as frames `width` features wide (`width >= cols`;
/// features past `cols` are dark mirrors), into `out` in the layout of [`PackedFrames`]. A value
/// other than 0 or 1 is an [`ErrorKind::InvalidInput`] error naming its row and column.
pub fn pack_rows(
    values: &[u8],
    rows: usize,
    cols: usize,
    width: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if cols > width {
        return Err(Error::new(
            ErrorKind::DimensionMismatch,
            format!("input has {cols} features but the device takes at most {width}"),
        ));
    }
    if rows.checked_mul(cols) != Some(values.len()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} values cannot be {rows} rows of {cols} features",
                values.len()
            ),
        ));
    }
    let per = width.div_ceil(8);
    out.clear();
    out.resize(rows * per, 0);
    if cols == 0 {
        return Ok(());
    }
    for (r, (src, dst)) in values
        .chunks_exact(cols)
        .zip(out.chunks_exact_mut(per.max(1)))
        .enumerate()
    {
        if !pack_row(src, &mut dst[..cols.div_ceil(8)]) {
            // Let the HAL's packer name the first bad value.
            let e = pack_bits(src, 1, cols, &mut Vec::new())
                .err()
                .map(|e| e.to_string().replace("row 0,", &format!("row {r},")))
                .unwrap_or_else(|| format!("input is not binary in row {r}"));
            return Err(Error::new(ErrorKind::InvalidInput, e));
        }
    }
    Ok(())
}

/// Shows every frame of `frames` on `device` (whose info is `info`), at most `info.max_batch`
/// frames per call, and stores the first `out_dim` camera pixels of each frame into `out`
/// (`frames × out_dim` values, row-major) as `T`: `f32` keeps the camera's values, `u8`/`u16`
/// checked counts. Frames go straight into an `f32` `out` that keeps every pixel; otherwise
/// through `camera`, scratch space grown as needed (at most [`CAMERA_SCRATCH_VALUES`], one
/// frame at least) and reusable across calls.
///
/// Errors: a device error, prefixed with the frames of the failing call; a camera value that is
/// not a count of the device's bit depth ([`ErrorKind::Device`], naming row and pixel);
/// [`ErrorKind::InvalidInput`] for an `out_dim` larger than the camera, an `out` of the wrong
/// length, or counts `T` cannot hold; [`ErrorKind::Other`] when the scratch space cannot be
/// allocated.
pub fn transform_rows<T: CameraSample, D: OpticalDevice + ?Sized>(
    device: &mut D,
    info: &DeviceInfo,
    frames: &PackedFrames<'_>,
    out_dim: usize,
    out: &mut [T],
    camera: &mut Vec<f32>,
) -> Result<(), Error> {
    let rows = frames.frames();
    if out_dim > info.output_dim {
        return Err(Error::new(
            ErrorKind::DimensionMismatch,
            format!(
                "output dimension {out_dim} exceeds the device's {} camera pixels",
                info.output_dim
            ),
        ));
    }
    if rows.checked_mul(out_dim) != Some(out.len()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "output buffer has {} values, expected {rows} frames × {out_dim} pixels",
                out.len()
            ),
        ));
    }
    if info.max_batch == 0 && rows > 0 {
        return Err(Error::new(
            ErrorKind::Device,
            "device reports a maximum batch of 0 frames",
        ));
    }
    let width = info.output_dim;
    let max_count = count_limit::<T>(info)?;
    // Frames per device call: the device's maximum, and, when frames are converted through
    // `camera`, no more than CAMERA_SCRATCH_VALUES values of it.
    let direct = out_dim == width && T::MAX_COUNT.is_none();
    let per_call = if direct {
        info.max_batch
    } else {
        info.max_batch
            .min(CAMERA_SCRATCH_VALUES / width.max(1))
            .max(1)
    };
    let mut start = 0;
    while start < rows {
        let n = per_call.min(rows - start);
        let failed = |e: Error| {
            Error::new(
                e.kind(),
                format!("device failed on frames {start}..{}: {e}", start + n),
            )
        };
        let batch = frames.slice(start, n);
        let dst = &mut out[start * out_dim..(start + n) * out_dim];
        if direct {
            let dst = T::as_f32_mut(dst).expect("only f32 has no largest count");
            device.transform(&batch, dst).map_err(failed)?;
            start += n;
            continue;
        }
        if camera.len() < n * width {
            camera.try_reserve(n * width - camera.len()).map_err(|_| {
                Error::new(
                    ErrorKind::Other,
                    format!("cannot allocate a buffer for {n} camera frames of {width} pixels"),
                )
            })?;
            camera.resize(n * width, 0.0);
        }
        let buf = &mut camera[..n * width];
        device.transform(&batch, buf).map_err(failed)?;
        store_frames(buf, dst, width, out_dim, max_count, start, info)?;
        start += n;
    }
    Ok(())
}

/// The largest count `T` stores for this device's camera (`None`: the camera's values are stored
/// as they are), or why `T` cannot hold them.
fn count_limit<T: CameraSample>(info: &DeviceInfo) -> Result<Option<u32>, Error> {
    match (T::MAX_COUNT, info.bit_depth) {
        (None, _) => Ok(None),
        (Some(type_max), Some(bits)) if (1..=31).contains(&bits) => {
            let camera_max = (1u32 << bits) - 1;
            if camera_max > type_max {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("a {bits}-bit camera's counts do not fit a {type_max}-count type"),
                ));
            }
            Ok(Some(camera_max))
        }
        (Some(_), _) => Err(Error::new(
            ErrorKind::InvalidInput,
            "the device returns float intensities, not counts",
        )),
    }
}

/// Stores the camera frames of one device call (`buf`, `width` pixels a frame) as the first
/// `out_dim` values of each row of `dst`, checking counts against `max_count`; `start` is the
/// call's first row, for messages.
fn store_frames<T: CameraSample>(
    buf: &[f32],
    dst: &mut [T],
    width: usize,
    out_dim: usize,
    max_count: Option<u32>,
    start: usize,
    info: &DeviceInfo,
) -> Result<(), Error> {
    let values = dst.len();
    let rows_out = buf
        .chunks_exact(width)
        .zip(dst.chunks_exact_mut(out_dim.max(1)));
    match max_count {
        None => {
            for (frame, row) in rows_out {
                let row = T::as_f32_mut(row).expect("only f32 has no largest count");
                row.copy_from_slice(&frame[..row.len()]);
            }
        }
        Some(max) => {
            // Rows in parallel when there is enough to share (the device's threads are idle
            // meanwhile); the first bad value, if any, is then looked up in row order.
            let converted = if values >= PARALLEL_CONVERSION_VALUES {
                buf.par_chunks_exact(width)
                    .zip(dst.par_chunks_exact_mut(out_dim.max(1)))
                    .all(|(frame, row)| store_counts(frame, row, max).is_ok())
            } else {
                rows_out
                    .map(|(frame, row)| store_counts(frame, row, max).is_ok())
                    .fold(true, |a, b| a & b)
            };
            if !converted {
                let bad = buf.chunks_exact(width).enumerate().find_map(|(r, frame)| {
                    let mut probe = vec![T::from_count(0); out_dim];
                    store_counts(frame, &mut probe, max)
                        .err()
                        .map(|c| (r, c, frame[c]))
                });
                if let Some((r, c, v)) = bad {
                    let bits = info.bit_depth.unwrap_or(0);
                    return Err(Error::new(
                        ErrorKind::Device,
                        format!(
                            "device returned {v} at row {}, pixel {c}: not a {bits}-bit count",
                            start + r
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Projects `rows` vectors of `input` (`rows × input_dim`, row-major) into `out`
/// (`rows × output_dim`), [`LINEAR_CHUNK_ROWS`] rows per call, as `speckle transform --linear`
/// does. A failing call's error is prefixed with its rows.
pub fn project_rows<P: speckle_hal::RandomProjector + ?Sized>(
    projector: &mut P,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) -> Result<(), Error> {
    if rows == 0 {
        return Ok(());
    }
    if input.len() % rows != 0 || out.len() % rows != 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} inputs and {} outputs cannot be {rows} rows",
                input.len(),
                out.len()
            ),
        ));
    }
    let (cols, out_dim) = (input.len() / rows, out.len() / rows);
    for (chunk, (xs, ys)) in input
        .chunks(LINEAR_CHUNK_ROWS * cols.max(1))
        .zip(out.chunks_mut(LINEAR_CHUNK_ROWS * out_dim.max(1)))
        .enumerate()
    {
        let n = ys.len() / out_dim.max(1);
        projector.project(xs, n, ys).map_err(|e| {
            let start = chunk * LINEAR_CHUNK_ROWS;
            Error::new(
                e.kind(),
                format!("projection failed on rows {start}..{}: {e}", start + n),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{open_device, open_projector, DeviceSpec};

    #[test]
    fn counts_are_checked_never_cast() {
        let mut out = [0u8; 3];
        assert_eq!(store_counts(&[0.0, 17.0, 255.0], &mut out, 255), Ok(()));
        assert_eq!(out, [0, 17, 255]);
        for (bad, max) in [
            (256.0, 255),
            (3.0, 1),
            (1.5, 255),
            (f32::NAN, 255),
            (-1.0, 255),
            (f32::INFINITY, 255),
        ] {
            assert_eq!(
                store_counts(&[1.0, bad, 0.0], &mut out, max),
                Err(1),
                "{bad}"
            );
        }
        let mut wide = [0u16; 2];
        assert_eq!(store_counts(&[4095.0, 7.0], &mut wide, 4095), Ok(()));
        assert_eq!(wide, [4095, 7]);
        assert_eq!(store_counts(&[4096.0, 7.0], &mut wide, 4095), Err(0));
        assert_eq!(
            CameraDtype::for_bit_depth(Some(8)).unwrap(),
            CameraDtype::U8
        );
        assert_eq!(
            CameraDtype::for_bit_depth(Some(9)).unwrap(),
            CameraDtype::U16
        );
        assert_eq!(CameraDtype::for_bit_depth(None).unwrap(), CameraDtype::F32);
        let e = CameraDtype::for_bit_depth(Some(20)).unwrap_err();
        assert!(e.to_string().contains("20-bit"), "{e}");
    }

    /// The eight-at-a-time packer gives the HAL's layout, and the HAL's message for a value
    /// other than 0 or 1.
    #[test]
    fn fast_packing_matches_the_hal() {
        for cols in [1, 7, 8, 9, 16, 23, 64, 65] {
            let rows = 5;
            let x: Vec<u8> = (0..rows * cols)
                .map(|i| ((i * 13 + i / 3) % 7 < 3) as u8)
                .collect();
            let (mut fast, mut hal) = (Vec::new(), Vec::new());
            pack_rows(&x, rows, cols, cols, &mut fast).unwrap();
            pack_bits(&x, rows, cols, &mut hal).unwrap();
            assert_eq!(fast, hal, "{cols} columns");
            let mut bad = x.clone();
            bad[3 * cols + cols - 1] = 5;
            let e = pack_rows(&bad, rows, cols, cols, &mut fast).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("input is not binary: value 5 at row 3, column {}", cols - 1)
            );
        }
    }

    #[test]
    fn padding_and_non_binary_rows() {
        let mut out = Vec::new();
        pack_rows(&[1, 0, 1, 1], 2, 2, 9, &mut out).unwrap();
        assert_eq!(out, vec![0b01, 0, 0b11, 0]);
        let e = pack_rows(&[1, 0, 2, 1], 2, 2, 9, &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input is not binary: value 2 at row 1, column 0"
        );
        let e = pack_rows(&[1, 0], 1, 2, 1, &mut out).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DimensionMismatch);
    }

    /// Splitting a batch into device calls of `max_batch` frames, keeping fewer pixels, and
    /// storing counts as u8 or as f32 all give the same values as one plain device call.
    #[test]
    fn batched_rows_match_one_device_call() {
        let spec: DeviceSpec = "sim".parse().unwrap();
        let (rows, cols, out_dim) = (7, 20, 24);
        let x: Vec<u8> = (0..rows * cols).map(|i| ((i * 7) % 5 < 2) as u8).collect();
        let mut packed = Vec::new();
        pack_rows(&x, rows, cols, cols, &mut packed).unwrap();
        let frames = PackedFrames::new(&packed, rows, cols).unwrap();

        let mut reference = open_device(&spec, cols, out_dim, 5, &Default::default()).unwrap();
        let info = reference.info();
        assert!(info.max_batch >= rows);
        let mut whole = vec![0f32; rows * out_dim];
        reference.transform(&frames, &mut whole).unwrap();

        let mut device = open_device(&spec, cols, out_dim, 5, &Default::default()).unwrap();
        let mut small = info.clone();
        small.max_batch = 3; // three device calls: 3 + 3 + 1 frames
        let mut counts = vec![0u8; rows * 10];
        transform_rows(
            &mut device,
            &small,
            &frames,
            10,
            &mut counts,
            &mut Vec::new(),
        )
        .unwrap();
        for r in 0..rows {
            for c in 0..10 {
                assert_eq!(counts[r * 10 + c] as f32, whole[r * out_dim + c]);
            }
        }
        let e = transform_rows(
            &mut device,
            &info,
            &frames,
            25,
            &mut counts,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("exceeds the device's 24"), "{e}");
        // Float storage keeps the counts as they are.
        let mut floats = vec![0f32; rows * 10];
        let mut device = open_device(&spec, cols, out_dim, 5, &Default::default()).unwrap();
        transform_rows(
            &mut device,
            &small,
            &frames,
            10,
            &mut floats,
            &mut Vec::new(),
        )
        .unwrap();
        assert!(floats.iter().zip(&counts).all(|(&f, &c)| f == c as f32));
        // A 12-bit camera's counts do not fit u8.
        let mut twelve = info.clone();
        twelve.bit_depth = Some(12);
        let e = transform_rows(
            &mut device,
            &twelve,
            &frames,
            10,
            &mut counts,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("12-bit"), "{e}");
    }

    /// Reports each frame's index as every pixel's count and records its call sizes.
    struct Counting {
        width: usize,
        calls: Vec<usize>,
        next: u64,
    }

    impl Counting {
        fn starting_at(width: usize, next: u64) -> Self {
            Self {
                width,
                calls: Vec::new(),
                next,
            }
        }
    }

    impl OpticalDevice for Counting {
        fn info(&self) -> DeviceInfo {
            DeviceInfo {
                kind: "counting".into(),
                description: String::new(),
                input_dim: 8,
                output_dim: self.width,
                bit_depth: Some(8),
                frame_time_us: 1.0,
                exposure_us: 1.0,
                max_batch: 100,
            }
        }

        fn transform(&mut self, input: &PackedFrames<'_>, output: &mut [f32]) -> Result<(), Error> {
            speckle_hal::check_device_buffers(&self.info(), input, output)?;
            for frame in output.chunks_exact_mut(self.width) {
                frame.fill(self.next as f32);
                self.next += 1;
            }
            self.calls.push(input.frames());
            Ok(())
        }

        fn counters(&self) -> speckle_hal::DeviceCounters {
            Default::default()
        }
    }

    /// Shows `frames` blank frames on a [`Counting`] device, keeping `out_dim` pixels as u8 counts.
    fn count_frames(
        device: &mut Counting,
        frames: usize,
        out_dim: usize,
        camera: &mut Vec<f32>,
    ) -> Result<Vec<u8>, Error> {
        let info = device.info();
        let packed = vec![0u8; frames];
        let frames_in = PackedFrames::new(&packed, frames, 8).unwrap();
        let mut out = vec![0u8; frames * out_dim];
        transform_rows(device, &info, &frames_in, out_dim, &mut out, camera)?;
        Ok(out)
    }

    #[test]
    fn converted_frames_are_buffered_within_the_scratch_bound() {
        let width = CAMERA_SCRATCH_VALUES / 4;
        let mut device = Counting::starting_at(width, 0);
        let mut camera = Vec::new();
        let out = count_frames(&mut device, 9, 2, &mut camera).unwrap();
        assert_eq!(device.calls, vec![4, 4, 1]);
        assert_eq!(
            out,
            vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8]
        );
        assert!(camera.len() <= CAMERA_SCRATCH_VALUES);
    }

    /// Rows converted in parallel report the first bad count in row order.
    #[test]
    fn a_count_out_of_range_is_a_device_error_naming_row_and_pixel() {
        let width = PARALLEL_CONVERSION_VALUES / 2;
        let mut device = Counting::starting_at(width, 253);
        let e = count_frames(&mut device, 5, width, &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Device);
        assert_eq!(
            e.to_string(),
            "device returned 256 at row 3, pixel 0: not a 8-bit count"
        );
    }

    #[test]
    fn projected_chunks_name_their_rows() {
        let spec = DeviceSpec::Digital;
        let mut p =
            open_projector(&spec, Default::default(), &Default::default(), 4, 3, 1).unwrap();
        let rows = LINEAR_CHUNK_ROWS + 2;
        let mut x = vec![0.5f32; rows * 4];
        let mut y = vec![0f32; rows * 3];
        project_rows(&mut p, &x, rows, &mut y).unwrap();
        assert_eq!(&y[..3], &y[y.len() - 3..]);
        x[(LINEAR_CHUNK_ROWS + 1) * 4] = f32::NAN;
        let e = project_rows(&mut p, &x, rows, &mut y).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("projection failed on rows 256..258: "),
            "{e}"
        );
    }
}
