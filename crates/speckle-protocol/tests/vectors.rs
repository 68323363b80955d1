//! Golden test vectors: the byte-exact frames in `firmware-interface/vectors/*.hex` are what the
//! encoder produces and what the decoder accepts. Regenerate (after a deliberate protocol
//! change only) with `SPECKLE_BLESS=1 cargo test -p speckle-protocol --test vectors`.
use speckle_protocol::*;
use std::fmt::Write as _;
use std::path::PathBuf;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../firmware-interface/vectors")
}

/// (file stem, description, seq, message)
fn golden() -> Vec<(&'static str, &'static str, u32, Message)> {
    vec![
        (
            "hello",
            "HELLO seq=1 min_version=1 max_version=1 max_payload=1048576",
            1,
            Message::Hello(Hello { min_version: 1, max_version: 1, max_payload: 1 << 20 }),
        ),
        (
            "capabilities",
            "CAPABILITIES seq=1 input_dim=1024 output_dim=1024 max_input_dim=1039680 max_output_dim=2073600 max_batch=65536 max_payload=32768 frame_time_ns=500000 exposure_ns=400000 boot_count=1 bit_depth=8 firmware=0.1.0 description=\"lighton: LightOn-like OPU\"",
            1,
            Message::Capabilities(Capabilities {
                input_dim: 1024,
                output_dim: 1024,
                max_input_dim: 1_039_680,
                max_output_dim: 2_073_600,
                max_batch: 65536,
                max_payload: 32768,
                frame_time_ns: 500_000,
                exposure_ns: 400_000,
                boot_count: 1,
                bit_depth: 8,
                firmware_version: [0, 1, 0],
                description: "lighton: LightOn-like OPU".into(),
            }),
        ),
        (
            "configure",
            "CONFIGURE seq=2 input_dim=64 output_dim=128 output_offset=0 exposure_ns=0 gain=0.0",
            2,
            Message::Configure(Configure { input_dim: 64, output_dim: 128, output_offset: 0, exposure_ns: 0, gain: 0.0 }),
        ),
        (
            "transform_request",
            "TRANSFORM_REQUEST seq=3 first_frame=0 frame_count=2 input_dim=12 frames: [features 0-11 all lit] [feature 0 lit]",
            3,
            Message::TransformRequest(TransformRequest {
                first_frame: 0,
                frame_count: 2,
                input_dim: 12,
                frames: vec![0xFF, 0x0F, 0x01, 0x00],
            }),
        ),
        (
            "transform_request_long",
            "TRANSFORM_REQUEST seq=4 first_frame=0x0102030405060708 frame_count=1 input_dim=2400 frames: 300 bytes of 0xA5 (exercises COBS 0xFF blocks)",
            4,
            Message::TransformRequest(TransformRequest {
                first_frame: 0x0102_0304_0506_0708,
                frame_count: 1,
                input_dim: 2400,
                frames: vec![0xA5; 300],
            }),
        ),
        (
            "transform_response_u8",
            "TRANSFORM_RESPONSE seq=3 first_frame=0 frame_count=2 output_dim=3 bit_depth=8 values=[0 17 255] [3 0 128]",
            3,
            Message::TransformResponse(TransformResponse {
                first_frame: 0,
                frame_count: 2,
                output_dim: 3,
                bit_depth: 8,
                values: vec![0, 17, 255, 3, 0, 128],
            }),
        ),
        (
            "transform_response_u16",
            "TRANSFORM_RESPONSE seq=5 first_frame=2 frame_count=1 output_dim=2 bit_depth=12 values=[4095 256] (u16 LE)",
            5,
            Message::TransformResponse(TransformResponse {
                first_frame: 2,
                frame_count: 1,
                output_dim: 2,
                bit_depth: 12,
                values: vec![0xFF, 0x0F, 0x00, 0x01],
            }),
        ),
        (
            "transform_response_f32",
            "TRANSFORM_RESPONSE seq=6 first_frame=3 frame_count=1 output_dim=2 bit_depth=0 values=[1.5 0.25] (f32 LE)",
            6,
            Message::TransformResponse(TransformResponse {
                first_frame: 3,
                frame_count: 1,
                output_dim: 2,
                bit_depth: 0,
                values: [1.5f32.to_le_bytes(), 0.25f32.to_le_bytes()].concat(),
            }),
        ),
        ("get_status", "GET_STATUS seq=7", 7, Message::GetStatus),
        (
            "status",
            "STATUS seq=7 state=1 boot_count=1 frames_shown=6 bad_frames=0",
            7,
            Message::Status(Status { state: 1, boot_count: 1, frames_shown: 6, bad_frames: 0 }),
        ),
        (
            "error_not_configured",
            "ERROR seq=8 code=5 (NOT_CONFIGURED) detail=2 message=\"no session: send Hello\"",
            8,
            Message::Error(ErrorReport { code: ErrorCode::NOT_CONFIGURED, detail: 2, message: "no session: send Hello".into() }),
        ),
        (
            "error_bad_frame",
            "ERROR seq=0 code=1 (BAD_FRAME) detail=0 message=\"\"",
            0,
            Message::Error(ErrorReport { code: ErrorCode::BAD_FRAME, detail: 0, message: String::new() }),
        ),
        (
            "reset_notice",
            "RESET_NOTICE seq=0 boot_count=2 reason=0 (power-on)",
            0,
            Message::ResetNotice(ResetNotice { boot_count: 2, reason: 0 }),
        ),
    ]
}

fn hex_lines(bytes: &[u8], prefix: &str) -> String {
    let mut s = String::new();
    for chunk in bytes.chunks(16) {
        s.push_str(prefix);
        let line: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        s.push_str(&line.join(" "));
        s.push('\n');
    }
    s
}

fn render(name: &str, description: &str, seq: u32, msg: &Message) -> String {
    let raw = raw_frame(PROTOCOL_VERSION, seq, msg);
    let mut wire = Vec::new();
    encode_frame(seq, msg, &mut wire);
    let mut s = String::new();
    writeln!(
        s,
        "# speckle protocol v{PROTOCOL_VERSION} golden vector: {name}"
    )
    .unwrap();
    writeln!(s, "# {description}").unwrap();
    writeln!(
        s,
        "# raw frame before COBS ({} bytes: 12 header | {} payload | 4 CRC-32 LE):",
        raw.len(),
        raw.len() - 16
    )
    .unwrap();
    s.push_str(&hex_lines(&raw, "#   "));
    writeln!(
        s,
        "# wire bytes ({} bytes, COBS-encoded, ending with the 0x00 delimiter):",
        wire.len()
    )
    .unwrap();
    s.push_str(&hex_lines(&wire, ""));
    s
}

fn parse_hex(text: &str) -> Vec<u8> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .map(|t| u8::from_str_radix(t, 16).unwrap())
        .collect()
}

/// The vector file at `path`, checked to be exactly `rendered` (written first with
/// `SPECKLE_BLESS=1`).
fn blessed(path: &std::path::Path, rendered: &str) -> String {
    if std::env::var_os("SPECKLE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, rendered).unwrap();
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with SPECKLE_BLESS=1 to create)",
            path.display()
        )
    });
    assert_eq!(
        text,
        rendered,
        "{}: file differs from the encoder's output",
        path.display()
    );
    text
}

#[test]
fn golden_vectors_are_byte_exact() {
    let dir = vectors_dir();
    for (name, description, seq, msg) in golden() {
        let text = blessed(
            &dir.join(format!("{name}.hex")),
            &render(name, description, seq, &msg),
        );
        let wire = parse_hex(&text);
        let mut encoded = Vec::new();
        encode_frame(seq, &msg, &mut encoded);
        assert_eq!(wire, encoded, "{name}");
        assert_eq!(
            wire.iter().position(|&b| b == 0),
            Some(wire.len() - 1),
            "{name}"
        );
        let frame = decode_frame(&wire[..wire.len() - 1]).unwrap();
        assert_eq!((frame.seq, frame.message), (seq, msg), "{name}");
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".hex"))
        .collect();
    files.sort();
    assert_eq!(files.len(), golden().len(), "stray vector files: {files:?}");
}

#[test]
fn every_message_type_has_a_vector() {
    let types: std::collections::HashSet<u8> = golden()
        .iter()
        .map(|(_, _, _, m)| m.message_type() as u8)
        .collect();
    assert_eq!(types.len(), 9);
}

/// Every `#define SPECKLE_...` number in the C header equals the Rust value.
#[test]
fn c_header_matches_the_implementation() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../firmware-interface/speckle_protocol.h");
    let text = std::fs::read_to_string(path).unwrap();
    let mut defs = std::collections::HashMap::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value)) = (it.next(), it.next()) else {
            continue;
        };
        let value = value.trim_end_matches('u');
        let v = if let Some(h) = value.strip_prefix("0x") {
            u64::from_str_radix(h, 16).ok()
        } else {
            value.parse().ok()
        };
        if let Some(v) = v {
            defs.insert(name.to_string(), v);
        }
    }
    let expect: Vec<(&str, u64)> = vec![
        ("SPECKLE_PROTOCOL_VERSION", PROTOCOL_VERSION.into()),
        ("SPECKLE_HEADER_LEN", HEADER_LEN as u64),
        ("SPECKLE_CRC_LEN", CRC_LEN as u64),
        ("SPECKLE_MAX_PAYLOAD_LIMIT", MAX_PAYLOAD_LIMIT.into()),
        ("SPECKLE_MIN_MAX_PAYLOAD", MIN_MAX_PAYLOAD.into()),
        ("SPECKLE_ERROR_FIXED_LEN", ERROR_FIXED as u64),
        ("SPECKLE_CRC_POLY", CRC.algorithm.poly.into()),
        ("SPECKLE_CRC_INIT", CRC.algorithm.init.into()),
        ("SPECKLE_CRC_XOROUT", CRC.algorithm.xorout.into()),
        ("SPECKLE_CRC_CHECK", CRC.algorithm.check.into()),
        ("SPECKLE_MSG_HELLO", MessageType::Hello as u64),
        ("SPECKLE_MSG_CAPABILITIES", MessageType::Capabilities as u64),
        ("SPECKLE_MSG_CONFIGURE", MessageType::Configure as u64),
        (
            "SPECKLE_MSG_TRANSFORM_REQUEST",
            MessageType::TransformRequest as u64,
        ),
        (
            "SPECKLE_MSG_TRANSFORM_RESPONSE",
            MessageType::TransformResponse as u64,
        ),
        ("SPECKLE_MSG_GET_STATUS", MessageType::GetStatus as u64),
        ("SPECKLE_MSG_STATUS", MessageType::Status as u64),
        ("SPECKLE_MSG_ERROR", MessageType::Error as u64),
        ("SPECKLE_MSG_RESET_NOTICE", MessageType::ResetNotice as u64),
        ("SPECKLE_CAPS_FIXED_LEN", CAPABILITIES_FIXED as u64),
        ("SPECKLE_TREQ_FIXED_LEN", TRANSFORM_REQUEST_FIXED as u64),
        ("SPECKLE_TRESP_FIXED_LEN", TRANSFORM_RESPONSE_FIXED as u64),
        ("SPECKLE_ERR_BAD_FRAME", ErrorCode::BAD_FRAME.0.into()),
        (
            "SPECKLE_ERR_UNSUPPORTED_VERSION",
            ErrorCode::UNSUPPORTED_VERSION.0.into(),
        ),
        (
            "SPECKLE_ERR_UNKNOWN_MESSAGE",
            ErrorCode::UNKNOWN_MESSAGE.0.into(),
        ),
        ("SPECKLE_ERR_MALFORMED", ErrorCode::MALFORMED.0.into()),
        (
            "SPECKLE_ERR_NOT_CONFIGURED",
            ErrorCode::NOT_CONFIGURED.0.into(),
        ),
        (
            "SPECKLE_ERR_DIMENSION_MISMATCH",
            ErrorCode::DIMENSION_MISMATCH.0.into(),
        ),
        (
            "SPECKLE_ERR_BATCH_TOO_LARGE",
            ErrorCode::BATCH_TOO_LARGE.0.into(),
        ),
        (
            "SPECKLE_ERR_PAYLOAD_TOO_LARGE",
            ErrorCode::PAYLOAD_TOO_LARGE.0.into(),
        ),
        ("SPECKLE_ERR_UNSUPPORTED", ErrorCode::UNSUPPORTED.0.into()),
        (
            "SPECKLE_ERR_INVALID_FRAMES",
            ErrorCode::INVALID_FRAMES.0.into(),
        ),
        ("SPECKLE_ERR_DEVICE_FAULT", ErrorCode::DEVICE_FAULT.0.into()),
    ];
    for (name, value) in expect {
        assert_eq!(defs.get(name), Some(&value), "{name}");
    }
    // Payload lengths of the fixed-size messages, from a real encoding.
    let len = |m: &Message| {
        let mut v = Vec::new();
        m.encode_payload(&mut v);
        v.len() as u64
    };
    for (_, _, _, m) in golden() {
        let (name, fixed) = match &m {
            Message::Hello(_) => ("SPECKLE_HELLO_LEN", len(&m)),
            Message::Configure(_) => ("SPECKLE_CONFIGURE_LEN", len(&m)),
            Message::Status(_) => ("SPECKLE_STATUS_LEN", len(&m)),
            Message::ResetNotice(_) => ("SPECKLE_RESET_LEN", len(&m)),
            _ => continue,
        };
        assert_eq!(defs.get(name), Some(&fixed), "{name}");
    }
}

/// One frame of a rule vector: what it is, its wire bytes, what a decoder makes of it (`None`:
/// a valid message; `Some(text)`: an intact but unusable frame whose decode error says `text`),
/// and, for a host frame, the answer the device must send.
struct Step {
    what: String,
    wire: Vec<u8>,
    unusable: Option<&'static str>,
    expect: Option<String>,
}

/// A rule of PROTOCOL.md shown as a sequence of frames: a device that follows the rule answers
/// each host frame as its `# expect:` line says (checked against the emulator by
/// `crates/speckle-serial/tests/rules.rs`); a host treats the device frames marked unusable as
/// the rule says (checked by the host tests in `crates/speckle-serial/tests/memory_link.rs`).
struct Rule {
    name: &'static str,
    rule: &'static str,
    steps: Vec<Step>,
}

/// A host frame carrying `message`, described from its fields (plus `note`), and the answer
/// the device must send.
fn host(seq: u32, message: Message, note: &str, expect: &str) -> Step {
    let mut wire = Vec::new();
    encode_frame(seq, &message, &mut wire);
    let fields = match &message {
        Message::Hello(h) => format!("HELLO seq={seq} max_payload={}", h.max_payload),
        Message::Configure(c) => format!(
            "CONFIGURE seq={seq} input_dim={} output_dim={} output_offset={} exposure_ns={} gain={}",
            c.input_dim, c.output_dim, c.output_offset, c.exposure_ns, c.gain
        ),
        Message::TransformRequest(r) => format!(
            "TRANSFORM_REQUEST seq={seq} first_frame={} frame_count={} input_dim={} frames={:02x?}",
            r.first_frame, r.frame_count, r.input_dim, r.frames
        ),
        Message::Capabilities(_) => format!("CAPABILITIES seq={seq}"),
        other => format!("{:?} seq={seq}", other.message_type()),
    };
    Step {
        what: format!("host: {fields}{note}"),
        wire,
        unusable: None,
        expect: Some(expect.to_string()),
    }
}

/// The HELLO that opens a session, and its CAPABILITIES.
fn open_session(seq: u32) -> Step {
    host(seq, hello(1 << 20), "", &format!("CAPABILITIES seq={seq}"))
}

fn raw(
    sender: &str,
    what: &str,
    ty: u8,
    seq: u32,
    payload: &[u8],
    unusable: &'static str,
    expect: Option<&str>,
) -> Step {
    let mut wire = Vec::new();
    encode_raw_frame(PROTOCOL_VERSION, ty, seq, payload, &mut wire);
    Step {
        what: format!("{sender}: {what}"),
        wire,
        unusable: Some(unusable),
        expect: expect.map(str::to_string),
    }
}

fn hello(max_payload: u32) -> Message {
    Message::Hello(Hello {
        min_version: 1,
        max_version: 1,
        max_payload,
    })
}

fn configure(input_dim: u32, output_dim: u32, exposure_ns: u32) -> Message {
    Message::Configure(Configure {
        input_dim,
        output_dim,
        output_offset: 0,
        exposure_ns,
        gain: 0.0,
    })
}

fn request(frame_count: u32, input_dim: u32, frames: Vec<u8>) -> Message {
    Message::TransformRequest(TransformRequest {
        first_frame: 0,
        frame_count,
        input_dim,
        frames,
    })
}

fn capabilities(bit_depth: u8) -> Capabilities {
    Capabilities {
        input_dim: 8,
        output_dim: 4,
        max_input_dim: 1024,
        max_output_dim: 1024,
        max_batch: 16,
        max_payload: 4096,
        frame_time_ns: 500_000,
        exposure_ns: 400_000,
        boot_count: 1,
        bit_depth,
        firmware_version: [0, 1, 0],
        description: "rule".into(),
    }
}

fn rules() -> Vec<Rule> {
    // A TRANSFORM_REQUEST payload of frame_count 0: the fixed 16 bytes, no frames.
    let mut zero_frames = 0u64.to_le_bytes().to_vec();
    zero_frames.extend_from_slice(&0u32.to_le_bytes());
    zero_frames.extend_from_slice(&16u32.to_le_bytes());
    // A CAPABILITIES payload whose bit depth (offset 36) is 17.
    let mut depth_17 = Vec::new();
    Message::Capabilities(capabilities(8)).encode_payload(&mut depth_17);
    depth_17[36] = 17;
    // A TRANSFORM_RESPONSE of 2 frames of 4 8-bit values with one value missing.
    let mut short = 0u64.to_le_bytes().to_vec();
    short.extend_from_slice(&2u32.to_le_bytes());
    short.extend_from_slice(&4u32.to_le_bytes());
    short.extend_from_slice(&[8, 0, 0, 0]);
    short.extend_from_slice(&[9; 7]);
    // A TRANSFORM_REQUEST payload of 1 frame of 16 features with 3 bytes of frame data.
    let mut one_frame_too_long = 0u64.to_le_bytes().to_vec();
    one_frame_too_long.extend_from_slice(&1u32.to_le_bytes());
    one_frame_too_long.extend_from_slice(&16u32.to_le_bytes());
    one_frame_too_long.extend_from_slice(&[1, 2, 3]);
    vec![
        Rule {
            name: "frame_count_zero",
            rule: "PROTOCOL.md 6.4: a TRANSFORM_REQUEST of frame_count 0 is MALFORMED (frame_count is 1..=max_batch); the payload check comes before the session check (section 7), so the answer is the same with or without a session.",
            steps: vec![raw(
                "host",
                "TRANSFORM_REQUEST seq=5 first_frame=0 frame_count=0 input_dim=16, no frames (no session yet)",
                MessageType::TransformRequest as u8,
                5,
                &zero_frames,
                "frame_count is 0",
                Some("ERROR seq=5 code=4 detail=0"),
            )],
        },
        Rule {
            name: "dimension_lower_bound",
            rule: "PROTOCOL.md 6.3 and 7: DIMENSION_MISMATCH's detail is the bound the value broke: 1 for a dimension of 0, the maximum for one above it; input_dim is checked before output_dim.",
            steps: vec![
                open_session(1),
                host(2, configure(0, 0, 0), "", "ERROR seq=2 code=6 detail=1"),
                host(3, configure(8, 0, 0), "", "ERROR seq=3 code=6 detail=1"),
                host(4, configure(u32::MAX, 4, 0), "", "ERROR seq=4 code=6 detail=max_input_dim"),
            ],
        },
        Rule {
            name: "configure_zero_keeps",
            rule: "PROTOCOL.md 6.3: exposure_ns = 0 or gain = 0.0 in CONFIGURE keeps the current value (the power-on default until a CONFIGURE sets one); re-configuring the dimensions does not undo camera settings. A restart brings back the power-on values.",
            steps: vec![
                open_session(1),
                host(2, configure(8, 4, 200_000), "", "CAPABILITIES seq=2 input_dim=8 output_dim=4 exposure_ns=200000"),
                host(3, configure(16, 4, 0), "", "CAPABILITIES seq=3 input_dim=16 output_dim=4 exposure_ns=200000"),
            ],
        },
        Rule {
            name: "min_max_payload",
            rule: "PROTOCOL.md 3 and 6.1: max_payload is at least 64. A HELLO offering less gets ERROR PAYLOAD_TOO_LARGE with detail 64 and an empty message; otherwise every answer fits the host's max_payload, the device cutting a CAPABILITIES description or an ERROR message (at a UTF-8 boundary) to fit. Before any HELLO the device assumes 64.",
            steps: vec![
                host(1, hello(32), "", "ERROR seq=1 code=8 detail=64 payload_len=8"),
                host(2, hello(64), "", "CAPABILITIES seq=2 payload_len<=64"),
                raw(
                    "host",
                    "TRANSFORM_REQUEST seq=3 frame_count=1 input_dim=16 with 3 bytes of frames (2 expected); the ERROR's message is cut to fit",
                    MessageType::TransformRequest as u8,
                    3,
                    &one_frame_too_long,
                    "frame data length disagrees",
                    Some("ERROR seq=3 code=4 detail=0 payload_len<=64"),
                ),
            ],
        },
        Rule {
            name: "check_order",
            rule: "PROTOCOL.md 7: when several errors apply the device reports the first of: damage, version, unknown or device-to-host type, payload layout, (HELLO: version range, max_payload), no session, then the message's own checks in the order section 7 lists.",
            steps: vec![
                host(1, Message::Capabilities(capabilities(8)), " (a device-to-host type), no session", "ERROR seq=1 code=3 detail=2"),
                raw(
                    "host",
                    "CONFIGURE seq=2 with a 19-byte payload, no session",
                    MessageType::Configure as u8,
                    2,
                    &[1; 19],
                    "payload too short",
                    Some("ERROR seq=2 code=4 detail=0"),
                ),
                host(3, configure(0, 4, 0), ", no session", "ERROR seq=3 code=5"),
                open_session(4),
                host(5, configure(8, 4, 0), "", "CAPABILITIES seq=5 input_dim=8 output_dim=4"),
                host(6, request(1, 9, vec![0xFF, 0xFF]), " (active: 8), padding bits set", "ERROR seq=6 code=6 detail=8"),
            ],
        },
        Rule {
            name: "invalid_frames_detail",
            rule: "PROTOCOL.md 6.4 and 7: INVALID_FRAMES' detail is the index, within the request, of the first frame with padding bits set.",
            steps: vec![
                open_session(1),
                host(2, configure(12, 4, 0), "", "CAPABILITIES seq=2 input_dim=12 output_dim=4"),
                host(3, request(3, 12, vec![0xFF, 0x0F, 0xFF, 0x1F, 0x00, 0x10]), ", frames 1 and 2 with padding bit 12 set", "ERROR seq=3 code=10 detail=1"),
            ],
        },
        Rule {
            name: "unusable_answers",
            rule: "PROTOCOL.md 4 and 8: an intact answer with the request's seq that the host cannot use (here a bit depth of 17, and values one byte short) is treated like a damaged frame: the host sends the request again, and if the attempts run out it fails with a protocol error naming the problem. With another seq such a frame is stale and ignored.",
            steps: vec![
                raw(
                    "device",
                    "CAPABILITIES seq=1 with bit_depth=17",
                    MessageType::Capabilities as u8,
                    1,
                    &depth_17,
                    "bit depth above 16",
                    None,
                ),
                raw(
                    "device",
                    "TRANSFORM_RESPONSE seq=3 first_frame=0 frame_count=2 output_dim=4 bit_depth=8 with 7 values instead of 8",
                    MessageType::TransformResponse as u8,
                    3,
                    &short,
                    "value data length disagrees",
                    None,
                ),
            ],
        },
    ]
}

fn render_rule(rule: &Rule) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "# speckle protocol v{PROTOCOL_VERSION} rule vector: {}",
        rule.name
    )
    .unwrap();
    let mut line = String::from("# Rule:");
    for word in rule.rule.split_whitespace() {
        if line.len() + word.len() + 1 > 96 {
            writeln!(s, "{line}").unwrap();
            line = String::from("#  ");
        }
        line.push(' ');
        line.push_str(word);
    }
    writeln!(s, "{line}").unwrap();
    writeln!(
        s,
        "# From a device just powered on, one frame a step: '# step N: SENDER: what it is', its wire"
    )
    .unwrap();
    writeln!(
        s,
        "# bytes, then for a host frame the answer the device must send: '# expect: TYPE seq=N"
    )
    .unwrap();
    writeln!(
        s,
        "# field=value ...' (payload_len is the answer's payload length; a named limit such as"
    )
    .unwrap();
    writeln!(
        s,
        "# max_input_dim is the device's own, from its CAPABILITIES)."
    )
    .unwrap();
    for (i, step) in rule.steps.iter().enumerate() {
        writeln!(s, "# step {}: {}", i + 1, step.what).unwrap();
        s.push_str(&hex_lines(&step.wire, ""));
        if let Some(expect) = &step.expect {
            writeln!(s, "# expect: {expect}").unwrap();
        }
    }
    s
}

/// The rule vectors in `firmware-interface/vectors/rules/` are byte-exact, and each frame is
/// what it says: a valid message, or an intact (right CRC) frame a receiver cannot use.
#[test]
fn rule_vectors_are_byte_exact() {
    let dir = vectors_dir().join("rules");
    for rule in rules() {
        blessed(&dir.join(format!("{}.hex", rule.name)), &render_rule(&rule));
        for step in &rule.steps {
            let body = &step.wire[..step.wire.len() - 1];
            match (decode_frame(body), step.unusable) {
                (Ok(_), None) => {}
                (Err(e), Some(text)) => {
                    assert!(e.intact_seq().is_some(), "{}: {e}", step.what);
                    assert!(e.to_string().contains(text), "{}: {e}", step.what);
                }
                (other, _) => panic!("{}: decodes to {other:?}", step.what),
            }
        }
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, rules().len(), "stray rule vector files");
}
