//! `speckle bench`: the JSON report parses and carries the documented keys (tiny sizes, a very
//! short measurement; no performance is asserted here).
mod common;

use common::speckle;
use serde_json::Value;

fn bench_json(args: &[&str]) -> Value {
    let mut all = vec![
        "bench",
        "--json",
        "--seconds",
        "0.05",
        "--in",
        "16",
        "--out",
        "32",
        "--batch",
        "8",
    ];
    all.extend_from_slice(args);
    let run = speckle(all).ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

fn positive(v: &Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"));
    assert!(x > 0.0 && x.is_finite(), "{key} = {x}");
    x
}

#[test]
fn raw_bench_reports_throughput_and_device_time() {
    let v = bench_json(&["--device", "sim"]);
    assert_eq!(v["mode"], "raw");
    let vps = positive(&v, "vectors_per_s");
    positive(&v, "gflops");
    positive(&v, "frames_per_s");
    positive(&v, "device_time_s");
    positive(&v, "device_vectors_per_s");
    assert_eq!(v["flop_per_vector"].as_f64(), Some(4.0 * 16.0 * 32.0));
    // One frame per raw vector, and 500 µs per frame.
    let frames_ps = v["frames_per_s"].as_f64().unwrap();
    assert!((frames_ps / vps - 1.0).abs() < 1e-9);
    let dev = v["device_vectors_per_s"].as_f64().unwrap();
    assert!((dev - 2000.0).abs() < 1e-6, "{dev}");
}

#[test]
fn linear_bench_on_digital_and_optical() {
    let v = bench_json(&["--device", "digital", "--mode", "linear"]);
    positive(&v, "vectors_per_s");
    positive(&v, "gflops");
    assert_eq!(v["frames_per_vector"].as_f64(), Some(0.0));
    assert!(v["device_vectors_per_s"].is_null());
    let v = bench_json(&[
        "--device",
        "sim:ideal",
        "--mode",
        "linear",
        "--encoding",
        "ternary",
    ]);
    assert_eq!(v["frames_per_vector"].as_f64(), Some(4.0));
    positive(&v, "device_time_s");
}

#[test]
fn bad_bench_arguments_are_one_line_errors() {
    speckle(["bench", "--device", "digital", "--seconds", "0"]).fails_with("linear-only");
    speckle(["bench", "--out", "many", "--seconds", "0"]).fails_with("--out 'many'");
    speckle(["bench", "--batch", "0", "--seconds", "0"]).fails_with("--batch");
    // A serial device: a port that cannot be opened, and overrides it has no keys for.
    speckle([
        "bench",
        "--device",
        "serial:/nonexistent/opu",
        "--seconds",
        "0",
    ])
    .fails_with("cannot open serial port /nonexistent/opu");
    speckle([
        "bench",
        "--device",
        "serial:/nonexistent/opu",
        "--set",
        "camera.bits=8",
        "--seconds",
        "0",
    ])
    .fails_with("overrides apply to simulated devices only");
}

#[test]
fn train_bench_reports_samples_per_second_for_dfa() {
    let run = speckle([
        "bench",
        "train",
        "--json",
        "--config",
        "configs/mnist-dfa.toml",
        "--set",
        "model.hidden=[16, 16]",
        "--samples",
        "256",
    ])
    .ok();
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout));
    assert_eq!(v["algorithm"], "dfa");
    assert_eq!(v["samples"], 256);
    positive(&v, "samples_per_s");
    positive(&v, "gflops");
}

#[test]
fn train_bench_times_the_optical_epoch_against_a_digital_one() {
    let run = speckle([
        "bench",
        "train",
        "--json",
        "--set",
        "model.hidden=[16, 16]",
        "--samples",
        "64",
        "--repeat",
        "3",
        "--against-digital",
    ])
    .ok();
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout));
    let ratios: Vec<f64> = v["ratios_to_digital"]
        .as_array()
        .expect("ratios_to_digital is an array")
        .iter()
        .map(|r| r.as_f64().expect("a number"))
        .collect();
    assert_eq!(ratios.len(), 3);
    let epochs = v["epoch_seconds"].as_array().unwrap();
    let digital = v["digital_epoch_seconds"].as_array().unwrap();
    for ((r, e), d) in ratios.iter().zip(epochs).zip(digital) {
        let expected = e.as_f64().unwrap() / d.as_f64().unwrap();
        assert!(
            (r - expected).abs() <= 1e-12 * expected,
            "{r} vs {expected}"
        );
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(v["ratio_to_digital"].as_f64(), Some(sorted[1]));
    // Without the flag there is no digital epoch.
    let plain = speckle([
        "bench",
        "train",
        "--json",
        "--set",
        "model.hidden=[16, 16]",
        "--samples",
        "64",
    ])
    .ok();
    let v: Value = serde_json::from_str(&plain.stdout).unwrap();
    assert!(v["ratio_to_digital"].is_null());
}

#[test]
fn train_bench_rejects_unknown_config_keys() {
    speckle([
        "bench",
        "train",
        "--set",
        "training.epoch=3",
        "--samples",
        "8",
    ])
    .fails_with("epoch");
}
