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

#[test]
fn golden_vectors_are_byte_exact() {
    let bless = std::env::var_os("SPECKLE_BLESS").is_some();
    let dir = vectors_dir();
    for (name, description, seq, msg) in golden() {
        let path = dir.join(format!("{name}.hex"));
        let rendered = render(name, description, seq, &msg);
        if bless {
            std::fs::write(&path, &rendered).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with SPECKLE_BLESS=1 to create)",
                path.display()
            )
        });
        assert_eq!(
            text, rendered,
            "{name}: file differs from the encoder's output"
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
