//! The emulator follows every device rule of PROTOCOL.md that has a rule vector: each host frame
//! of `firmware-interface/vectors/rules/*.hex`, sent to an emulator just powered on, gets the
//! answer its `# expect:` line gives.
use std::path::PathBuf;

use speckle_protocol::{decode_frame, Message};
use speckle_serial::{DeviceSettings, Emulator, EmulatorOptions, ToyDevice};

/// One host frame (wire bytes, delimiter included) and the expected answer.
struct Step {
    what: String,
    wire: Vec<u8>,
    expect: Option<String>,
}

fn parse(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in text.lines() {
        if let Some(what) = line.strip_prefix("# step ") {
            steps.push(Step {
                what: what.to_string(),
                wire: Vec::new(),
                expect: None,
            });
        } else if let Some(expect) = line.strip_prefix("# expect: ") {
            steps.last_mut().unwrap().expect = Some(expect.to_string());
        } else if !line.starts_with('#') {
            let bytes = line
                .split_whitespace()
                .map(|t| u8::from_str_radix(t, 16).unwrap());
            steps.last_mut().unwrap().wire.extend(bytes);
        }
    }
    steps
}

/// The answer's type name, its seq, its payload length and its fields, for `# expect:` lines.
fn fields(seq: u32, message: &Message) -> (String, Vec<(&'static str, u64)>) {
    let mut payload = Vec::new();
    message.encode_payload(&mut payload);
    let mut f = vec![
        ("seq", u64::from(seq)),
        ("payload_len", payload.len() as u64),
    ];
    let name = match message {
        Message::Capabilities(c) => {
            f.extend([
                ("input_dim", u64::from(c.input_dim)),
                ("output_dim", u64::from(c.output_dim)),
                ("exposure_ns", u64::from(c.exposure_ns)),
                ("max_input_dim", u64::from(c.max_input_dim)),
                ("max_output_dim", u64::from(c.max_output_dim)),
                ("max_batch", u64::from(c.max_batch)),
            ]);
            "CAPABILITIES"
        }
        Message::Error(e) => {
            f.extend([
                ("code", u64::from(e.code.0)),
                ("detail", u64::from(e.detail)),
            ]);
            "ERROR"
        }
        Message::TransformResponse(r) => {
            f.extend([
                ("first_frame", r.first_frame),
                ("frame_count", u64::from(r.frame_count)),
            ]);
            "TRANSFORM_RESPONSE"
        }
        Message::Status(s) => {
            f.push(("state", u64::from(s.state)));
            "STATUS"
        }
        other => panic!("unexpected answer {other:?}"),
    };
    (name.to_string(), f)
}

/// Checks `expect` ("TYPE key=value key<=value ...", a value may name a field of the last
/// CAPABILITIES) against the answer.
fn check(
    step: &str,
    expect: &str,
    answer: &(String, Vec<(&'static str, u64)>),
    caps: &[(&str, u64)],
) {
    let mut words = expect.split_whitespace();
    assert_eq!(words.next(), Some(answer.0.as_str()), "{step}: {answer:?}");
    let value =
        |name: &str, from: &[(&str, u64)]| from.iter().find(|(k, _)| *k == name).map(|p| p.1);
    for word in words {
        let (key, op, want) = match word.split_once("<=") {
            Some((k, v)) => (k, "<=", v),
            None => {
                let (k, v) = word.split_once('=').unwrap();
                (k, "=", v)
            }
        };
        let want = want
            .parse::<u64>()
            .ok()
            .or_else(|| value(want, caps))
            .unwrap_or_else(|| panic!("{step}: no value for {want}"));
        let got = value(key, &answer.1).unwrap_or_else(|| panic!("{step}: no field {key}"));
        match op {
            "=" => assert_eq!(got, want, "{step}: {key} in {answer:?}"),
            _ => assert!(got <= want, "{step}: {key} = {got} > {want}"),
        }
    }
}

#[test]
fn the_emulator_follows_every_rule_vector() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../firmware-interface/vectors/rules");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let factory = |s: &DeviceSettings| {
            Ok(ToyDevice::new(s.input_dim, s.output_dim, 1, Some(8))
                .with_exposure_ns(s.exposure_ns))
        };
        let mut emulator = Emulator::new(factory, EmulatorOptions::default());
        let mut caps = Vec::new();
        for step in parse(&text) {
            let Some(expect) = &step.expect else {
                continue; // a device frame, for hosts
            };
            let what = format!("{}: step {}", path.display(), step.what);
            let mut out = Vec::new();
            emulator.handle_frame(&step.wire[..step.wire.len() - 1], &mut out);
            assert_eq!(
                out.iter().filter(|&&b| b == 0).count(),
                1,
                "{what}: one answer"
            );
            let frame = decode_frame(&out[..out.len() - 1]).unwrap();
            let answer = fields(frame.seq, &frame.message);
            check(&what, expect, &answer, &caps);
            if answer.0 == "CAPABILITIES" {
                caps = answer.1.clone();
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} expectations found");
}
