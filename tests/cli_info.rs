//! `speckle info`: the JSON keys other tools rely on, per device kind, and errors.
mod common;

use common::speckle;
use serde_json::Value;

fn info_json(args: &[&str]) -> Value {
    let mut all = vec!["info", "--json"];
    all.extend_from_slice(args);
    let run = speckle(all).ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

#[test]
fn sim_json_has_the_documented_keys() {
    let v = info_json(&["--device", "sim", "--in", "100", "--out", "200"]);
    assert_eq!(v["input_dim"], 100);
    assert_eq!(v["output_dim"], 200);
    assert_eq!(v["bit_depth"], 8);
    assert_eq!(v["frame_time_us"].as_f64(), Some(500.0));
    assert_eq!(v["exposure_us"].as_f64(), Some(400.0));
    assert!(v["kind"].is_string());
    assert!(v["description"].is_string());
    assert!(v["max_batch"].as_u64().unwrap() >= 1);
    // 912 × 1140 mirrors: the most features the preset's DMD takes.
    assert_eq!(v["max_input_dim"], 912 * 1140);
}

#[test]
fn ideal_camera_has_null_bit_depth_and_overrides_apply() {
    let v = info_json(&["--device", "sim:ideal", "--in", "8", "--out", "8"]);
    assert!(v["bit_depth"].is_null());
    let v = info_json(&[
        "--device",
        "sim",
        "--in",
        "8",
        "--out",
        "8",
        "--set",
        "camera.bits=10",
    ]);
    assert_eq!(v["bit_depth"], 10);
}

#[test]
fn digital_is_reported_as_linear_only() {
    let v = info_json(&["--device", "digital"]);
    assert_eq!(v["kind"], "digital");
    assert_eq!(v["linear_only"], true);
    assert!(v["bit_depth"].is_null());
    for key in ["input_dim", "output_dim", "frame_time_us"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn text_output_names_the_device() {
    let run = speckle(["info", "--device", "sim:ideal", "--in", "8", "--out", "8"]).ok();
    assert!(run.stdout.contains("sim:ideal"), "{}", run.stdout);
    assert!(run.stdout.contains("float"), "{}", run.stdout);
}

#[test]
fn bad_specs_are_one_line_errors() {
    speckle(["info", "--device", "simulated"]).fails_with("simulated");
    speckle(["info", "--device", "serial:/dev/x@fast"]).fails_with("baud");
    speckle(["info", "--device", "sim:/nonexistent/dev.toml"]).fails_with("/nonexistent/dev.toml");
    speckle(["info", "--device", "sim", "--set", "dmd.rowz=3"]).fails_with("rowz");
}
