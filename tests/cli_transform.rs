//! `speckle transform`: output dtypes per preset, bit-identical reruns, and the error contract
//! (exit ≠ 0, a one-line message naming the problem, no output file) for each kind of bad input.
mod common;

use common::{arg, binary_pattern, entries, float_pattern, lighton_toml, npy_descr, speckle};
use ndarray::{Array1, Array2, Array3};
use ndarray_npy::{read_npy, write_npy};
use std::path::Path;

const FEATURES: usize = 16;
const ROWS: usize = 12;

fn write_binary(dir: &Path) -> String {
    let p = arg(dir, "x.npy");
    write_npy(&p, &binary_pattern(ROWS, FEATURES)).unwrap();
    p
}

fn transform(device: &str, input: &str, output: &str, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "transform",
        "--device",
        device,
        "--input",
        input,
        "--output",
        output,
        "--out-dim",
        "64",
    ];
    args.extend_from_slice(extra);
    speckle(args)
}

#[test]
fn raw_lighton_is_uint8_and_bit_identical_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let x = write_binary(dir.path());
    let (y1, y2, y3) = (
        arg(dir.path(), "y1.npy"),
        arg(dir.path(), "y2.npy"),
        arg(dir.path(), "y3.npy"),
    );
    transform("sim", &x, &y1, &["--seed", "7"]).ok();
    transform("sim", &x, &y2, &["--seed", "7"]).ok();
    transform("sim", &x, &y3, &["--seed", "8"]).ok();
    assert_eq!(npy_descr(Path::new(&y1)), "|u1");
    assert_eq!(std::fs::read(&y1).unwrap(), std::fs::read(&y2).unwrap());
    let a: Array2<u8> = read_npy(&y1).unwrap();
    let c: Array2<u8> = read_npy(&y3).unwrap();
    assert_eq!(a.dim(), (ROWS, 64));
    assert_ne!(a, c, "another seed is another medium");
    // Lit frames give light: not every count is the dark level.
    assert!(a.iter().any(|&v| v > 10));
}

#[test]
fn raw_ideal_is_float32_and_bool_input_matches_uint8_input() {
    let dir = tempfile::tempdir().unwrap();
    let x = write_binary(dir.path());
    let xb = arg(dir.path(), "xb.npy");
    write_npy(&xb, &binary_pattern(ROWS, FEATURES).mapv(|v| v == 1)).unwrap();
    let (y1, y2) = (arg(dir.path(), "y1.npy"), arg(dir.path(), "y2.npy"));
    transform("sim:ideal", &x, &y1, &[]).ok();
    transform("sim:ideal", &xb, &y2, &[]).ok();
    assert_eq!(npy_descr(Path::new(&y1)), "<f4");
    assert_eq!(std::fs::read(&y1).unwrap(), std::fs::read(&y2).unwrap());
    let y: Array2<f32> = read_npy(&y1).unwrap();
    assert_eq!(y.dim(), (ROWS, 64));
    assert!(y.iter().all(|v| v.is_finite() && *v >= 0.0));
}

#[test]
fn twelve_bit_camera_writes_uint16() {
    let dir = tempfile::tempdir().unwrap();
    let x = write_binary(dir.path());
    let y = arg(dir.path(), "y.npy");
    transform("sim", &x, &y, &["--set", "camera.bits=12"]).ok();
    assert_eq!(npy_descr(Path::new(&y)), "<u2");
    let a: Array2<u16> = read_npy(&y).unwrap();
    assert!(a.iter().all(|&v| v <= 4095));
}

#[test]
fn linear_digital_and_optical_are_float32_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let x = arg(dir.path(), "x.npy");
    write_npy(&x, &float_pattern(ROWS, FEATURES)).unwrap();
    for (device, extra) in [
        ("digital", &[][..]),
        ("sim:ideal", &["--encoding", "ternary"][..]),
        ("sim", &["--encoding", "bitplane:2"][..]),
    ] {
        let (y1, y2) = (arg(dir.path(), "y1.npy"), arg(dir.path(), "y2.npy"));
        let mut e = vec!["--linear", "--seed", "3"];
        e.extend_from_slice(extra);
        transform(device, &x, &y1, &e).ok();
        transform(device, &x, &y2, &e).ok();
        assert_eq!(npy_descr(Path::new(&y1)), "<f4", "{device}");
        assert_eq!(
            std::fs::read(&y1).unwrap(),
            std::fs::read(&y2).unwrap(),
            "{device} is not deterministic"
        );
        let y: Array2<f32> = read_npy(&y1).unwrap();
        assert_eq!(y.dim(), (ROWS, 64));
        assert!(y.iter().all(|v| v.is_finite()), "{device}");
        assert!(y.iter().any(|v| *v != 0.0), "{device}");
    }
}

/// Runs a transform that must fail: checks the message and that the directory holds only the
/// input files afterwards (no output, no temporary file).
fn assert_rejected(dir: &Path, device: &str, input: &str, extra: &[&str], needle: &str) {
    let before = entries(dir);
    let out = arg(dir, "out.npy");
    let msg = transform(device, input, &out, extra).fails_with(needle);
    assert_eq!(entries(dir), before, "files left behind after: {msg}");
}

#[test]
fn bad_raw_inputs_are_one_line_errors_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let mut x = binary_pattern(ROWS, FEATURES);
    x[[3, 5]] = 2;
    let p = arg(d, "nonbinary.npy");
    write_npy(&p, &x).unwrap();
    assert_rejected(d, "sim", &p, &[], "not binary: value 2 at row 3, column 5");

    let p = arg(d, "float.npy");
    write_npy(&p, &float_pattern(ROWS, FEATURES)).unwrap();
    assert_rejected(d, "sim", &p, &[], "dtype float32");

    let p = arg(d, "int64.npy");
    write_npy(&p, &binary_pattern(ROWS, FEATURES).mapv(i64::from)).unwrap();
    assert_rejected(d, "sim", &p, &[], "dtype int64");

    let p = arg(d, "rank1.npy");
    write_npy(&p, &Array1::<u8>::zeros(FEATURES)).unwrap();
    assert_rejected(d, "sim", &p, &[], "1 dimension");

    let p = arg(d, "rank3.npy");
    write_npy(&p, &Array3::<u8>::zeros((2, 2, FEATURES))).unwrap();
    assert_rejected(d, "sim", &p, &[], "3 dimension");

    let p = arg(d, "corrupt.npy");
    std::fs::write(&p, b"\x93NUMPY this is not a header").unwrap();
    assert_rejected(d, "sim", &p, &[], "not a valid .npy file");

    // A valid header whose data stops short.
    let good = write_binary(d);
    let bytes = std::fs::read(&good).unwrap();
    let p = arg(d, "truncated.npy");
    std::fs::write(&p, &bytes[..bytes.len() - 7]).unwrap();
    assert_rejected(d, "sim", &p, &[], "truncated");

    let p = arg(d, "missing.npy");
    assert_rejected(d, "sim", &p, &[], "missing.npy");

    // A 4 × 4 mirror DMD takes at most 16 features.
    let small = lighton_toml()
        .replace("rows = 912", "rows = 4")
        .replace("cols = 1140", "cols = 4");
    let cfg = arg(d, "small.toml");
    std::fs::write(&cfg, small).unwrap();
    let p = arg(d, "wide.npy");
    write_npy(&p, &binary_pattern(2, 17)).unwrap();
    assert_rejected(d, &format!("sim:{cfg}"), &p, &[], "17 features");

    let typo = lighton_toml().replace("bits = 8", "bitz = 8");
    let cfg = arg(d, "typo.toml");
    std::fs::write(&cfg, typo).unwrap();
    assert_rejected(d, &format!("sim:{cfg}"), &good, &[], "bitz");
    assert_rejected(d, "sim", &good, &["--set", "camera.bitz=10"], "bitz");

    assert_rejected(d, "digital", &good, &[], "linear-only");
    assert_rejected(d, "sim:nosuchpreset", &good, &[], "nosuchpreset");
}

#[test]
fn bad_linear_inputs_are_one_line_errors_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (value, name) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let mut x = float_pattern(ROWS, FEATURES);
        x[[2, 9]] = value;
        let p = arg(d, &format!("{name}.npy"));
        write_npy(&p, &x).unwrap();
        for device in ["digital", "sim"] {
            assert_rejected(
                d,
                device,
                &p,
                &["--linear"],
                &format!("not finite: {name} at row 2, column 9"),
            );
        }
    }
    let p = arg(d, "f64.npy");
    write_npy(&p, &float_pattern(ROWS, FEATURES).mapv(f64::from)).unwrap();
    assert_rejected(d, "digital", &p, &["--linear"], "dtype float64");

    let p = arg(d, "u8.npy");
    write_npy(&p, &binary_pattern(ROWS, FEATURES)).unwrap();
    assert_rejected(d, "digital", &p, &["--linear"], "dtype uint8");

    let p = arg(d, "x.npy");
    write_npy(&p, &float_pattern(ROWS, FEATURES)).unwrap();
    assert_rejected(
        d,
        "sim",
        &p,
        &["--linear", "--encoding", "bitplane:99"],
        "bitplane:99",
    );
}

#[test]
fn an_existing_output_survives_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = arg(d, "out.npy");
    std::fs::write(&out, b"previous").unwrap();
    let mut x = binary_pattern(ROWS, FEATURES);
    x[[0, 0]] = 9;
    let p = arg(d, "bad.npy");
    write_npy(&p, &x).unwrap();
    transform("sim", &p, &out, &[]).fails_with("not binary");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
}
