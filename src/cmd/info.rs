//! `speckle info`: what a device is, as the other commands would open it.
use anyhow::Context;
use clap::Args;
use speckle_devices::{full_dims, open_device, DeviceSpec};

use super::args::DeviceArgs;

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Input features to open a simulated device with [default: every DMD macro-pixel the
    /// preset allows, i.e. its full mirror count].
    #[arg(long = "in", value_name = "N")]
    pub input_dim: Option<usize>,
    /// Camera pixels to open a simulated device with [default: the preset's full camera].
    #[arg(long = "out", value_name = "M")]
    pub output_dim: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let overrides = args.dev.set.table()?;
    let value = describe(&args, &overrides)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_text(&value);
    }
    Ok(())
}

fn describe(args: &InfoArgs, overrides: &toml::Table) -> anyhow::Result<serde_json::Value> {
    let spec = &args.dev.device;
    let spec_text = spec.to_string();
    if spec == &DeviceSpec::Digital {
        // Refuses --set: digital has no config.
        full_dims(spec, overrides)?;
        // No physical size: any dimensions up to its entry limit, checked like a projector's.
        // A dimension not given counts as 1.
        if args.input_dim.is_some() || args.output_dim.is_some() {
            speckle::projection::GaussianProjector::check_dimensions(
                args.input_dim.unwrap_or(1),
                args.output_dim.unwrap_or(1),
            )?;
        }
        return Ok(serde_json::json!({
            "spec": spec_text,
            "kind": "digital",
            "description": "ideal digital Gaussian projector y = x·P, P with iid N(0, 1) entries; linear projections only",
            "linear_only": true,
            "input_dim": args.input_dim,
            "output_dim": args.output_dim,
            "max_matrix_entries": speckle::projection::MAX_GAUSSIAN_ENTRIES,
            "bit_depth": null,
            "frame_time_us": null,
            "exposure_us": null,
            "max_batch": null,
            "seed": args.dev.seed,
        }));
    }
    let Some((full_in, full_out)) = full_dims(spec, overrides)? else {
        anyhow::bail!("device {spec_text} has no dimensions of its own");
    };
    let input_dim = args.input_dim.unwrap_or(full_in);
    let output_dim = args.output_dim.unwrap_or(full_out);
    let device = open_device(spec, input_dim, output_dim, args.dev.seed, overrides)
        .with_context(|| format!("cannot open device {spec_text}"))?;
    let info = device.info();
    Ok(serde_json::json!({
        "spec": spec_text,
        "kind": info.kind,
        "description": info.description,
        "linear_only": false,
        "input_dim": info.input_dim,
        "output_dim": info.output_dim,
        "max_input_dim": full_in,
        "max_output_dim": full_out,
        "bit_depth": info.bit_depth,
        "frame_time_us": info.frame_time_us,
        "exposure_us": info.exposure_us,
        "max_batch": info.max_batch,
        "seed": args.dev.seed,
    }))
}

fn print_text(v: &serde_json::Value) {
    let show = |key: &str| match &v[key] {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!("device       {}", show("spec"));
    println!("kind         {}", show("kind"));
    println!("description  {}", show("description"));
    if v["kind"] == "digital" {
        println!(
            "dimensions   {} -> {} (any, up to {} matrix entries)",
            show("input_dim"),
            show("output_dim"),
            show("max_matrix_entries")
        );
        println!("mode         linear only (use transform --linear)");
        return;
    }
    println!(
        "dimensions   {} binary features -> {} camera pixels (at most {} -> {})",
        show("input_dim"),
        show("output_dim"),
        show("max_input_dim"),
        show("max_output_dim")
    );
    let depth = match v["bit_depth"].as_u64() {
        Some(b) => format!("{b}-bit counts"),
        None => "float intensities (ideal camera)".into(),
    };
    println!("camera       {depth}");
    println!(
        "timing       frame {} µs, exposure {} µs",
        show("frame_time_us"),
        show("exposure_us")
    );
    println!("max batch    {} frames", show("max_batch"));
}
