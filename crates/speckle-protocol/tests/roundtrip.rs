//! Property tests: every message round-trips, and arbitrary or damaged bytes never panic and
//! never decode into a different message.
use proptest::prelude::*;
use speckle_protocol::*;

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(a, b, p)| Message::Hello(Hello {
            min_version: a,
            max_version: b,
            max_payload: p
        })),
        (
            proptest::array::uniform9(any::<u32>()),
            0u8..=16,
            any::<[u16; 3]>(),
            ".{0,40}"
        )
            .prop_map(|(w, bit_depth, firmware_version, description)| {
                Message::Capabilities(Capabilities {
                    input_dim: w[0],
                    output_dim: w[1],
                    max_input_dim: w[2],
                    max_output_dim: w[3],
                    max_batch: w[4],
                    max_payload: w[5],
                    frame_time_ns: w[6],
                    exposure_ns: w[7],
                    boot_count: w[8],
                    bit_depth,
                    firmware_version,
                    description,
                })
            }),
        (any::<[u32; 4]>(), -1e6f32..1e6).prop_map(|(w, gain)| Message::Configure(Configure {
            input_dim: w[0],
            output_dim: w[1],
            output_offset: w[2],
            exposure_ns: w[3],
            gain
        })),
        (any::<u64>(), 1u32..5, 0u32..40)
            .prop_flat_map(|(f, n, d)| {
                let len = packed_len(n, d).unwrap();
                (
                    Just(f),
                    Just(n),
                    Just(d),
                    proptest::collection::vec(any::<u8>(), len),
                )
            })
            .prop_map(|(first_frame, frame_count, input_dim, frames)| {
                Message::TransformRequest(TransformRequest {
                    first_frame,
                    frame_count,
                    input_dim,
                    frames,
                })
            }),
        (
            any::<u64>(),
            1u32..5,
            0u32..20,
            prop_oneof![Just(0u8), Just(8u8), Just(12u8)]
        )
            .prop_flat_map(|(f, n, d, b)| {
                let len = values_len(n, d, b).unwrap();
                (
                    Just(f),
                    Just(n),
                    Just(d),
                    Just(b),
                    proptest::collection::vec(any::<u8>(), len),
                )
            })
            .prop_map(
                |(first_frame, frame_count, output_dim, bit_depth, values)| {
                    Message::TransformResponse(TransformResponse {
                        first_frame,
                        frame_count,
                        output_dim,
                        bit_depth,
                        values,
                    })
                }
            ),
        Just(Message::GetStatus),
        (any::<u8>(), any::<u32>(), any::<u64>(), any::<u32>()).prop_map(
            |(state, boot_count, frames_shown, bad_frames)| {
                Message::Status(Status {
                    state,
                    boot_count,
                    frames_shown,
                    bad_frames,
                })
            }
        ),
        (any::<u16>(), any::<u32>(), ".{0,60}").prop_map(|(c, detail, message)| Message::Error(
            ErrorReport {
                code: ErrorCode(c),
                detail,
                message
            }
        )),
        (any::<u32>(), any::<u8>()).prop_map(|(boot_count, reason)| Message::ResetNotice(
            ResetNotice { boot_count, reason }
        )),
    ]
}

fn decode_all(wire: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    let mut deframer = Deframer::new(1 << 20);
    let mut input = wire;
    let mut out = Vec::new();
    while let Some(r) = deframer.next_frame(&mut input) {
        out.push(match r {
            Ok(bytes) => decode_frame(bytes),
            Err(_) => Err(DecodeError::TooShort { len: 0 }),
        });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn messages_round_trip(seq in any::<u32>(), msg in arb_message()) {
        let mut wire = Vec::new();
        encode_frame(seq, &msg, &mut wire);
        prop_assert_eq!(wire.iter().filter(|&&b| b == 0).count(), 1, "only the delimiter is zero");
        prop_assert!(wire.len() <= max_wire_len(wire.len()));
        let frames = decode_all(&wire);
        prop_assert_eq!(frames.len(), 1);
        let frame = frames[0].clone().unwrap();
        prop_assert_eq!(frame.seq, seq);
        prop_assert_eq!(frame.message, msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_frame(&bytes);
        let _ = decode_all(&bytes);
        // Any valid frame found must re-encode to itself.
        for frame in decode_all(&bytes).into_iter().flatten() {
            let mut wire = Vec::new();
            encode_frame(frame.seq, &frame.message, &mut wire);
            let again = decode_frame(&wire[..wire.len() - 1]).unwrap();
            prop_assert_eq!(again.seq, frame.seq);
        }
    }

    #[test]
    fn damaged_frames_are_rejected_and_the_stream_resynchronises(
        seq in any::<u32>(),
        msg in arb_message(),
        garbage in proptest::collection::vec(any::<u8>(), 0..50),
        flip_at in any::<prop::sample::Index>(),
        flip_bit in 0u8..8,
    ) {
        let mut good = Vec::new();
        encode_frame(seq, &msg, &mut good);
        // A single flipped bit in a frame is always detected (CRC-32 catches every 1-bit error).
        let mut damaged = good.clone();
        let i = flip_at.index(damaged.len() - 1);
        damaged[i] ^= 1 << flip_bit;
        let mut wire = garbage.clone();
        wire.push(0);
        wire.extend_from_slice(&damaged);
        wire.push(0);
        wire.extend_from_slice(&good);
        let frames = decode_all(&wire);
        let ok: Vec<_> = frames.iter().filter_map(|r| r.as_ref().ok()).collect();
        // The damaged copy can never decode into a message other than the original.
        for f in &ok {
            prop_assert_eq!(&f.message, &msg);
        }
        // The good frame after the damage always decodes.
        let last = frames.last().unwrap().as_ref().unwrap();
        prop_assert_eq!(last.seq, seq);
        prop_assert_eq!(&last.message, &msg);
    }

    /// A device cuts the text of a CAPABILITIES or ERROR to the host's `max_payload`: the
    /// payload fits, still decodes, and keeps a prefix of the text.
    #[test]
    fn fit_payload_cuts_text_to_fit(
        max in MIN_MAX_PAYLOAD as usize..200,
        text in ".{0,120}",
        is_error in any::<bool>(),
    ) {
        let mut msg = if is_error {
            Message::Error(ErrorReport { code: ErrorCode::DEVICE_FAULT, detail: 1, message: text.clone() })
        } else {
            let mut caps = match decode_frame(&caps_wire(1)[..]).unwrap().message {
                Message::Capabilities(c) => c,
                _ => unreachable!(),
            };
            caps.description = text.clone();
            Message::Capabilities(caps)
        };
        msg.fit_payload(max);
        let mut payload = Vec::new();
        msg.encode_payload(&mut payload);
        prop_assert!(payload.len() <= max, "{} > {max}", payload.len());
        let kept = match &msg {
            Message::Error(e) => e.message.clone(),
            Message::Capabilities(c) => c.description.clone(),
            _ => unreachable!(),
        };
        prop_assert!(text.starts_with(&kept));
        // Nothing is cut that fitted already.
        let fixed = if is_error { ERROR_FIXED } else { CAPABILITIES_FIXED };
        if fixed + text.len() <= max {
            prop_assert_eq!(kept, text);
        }
        let mut wire = Vec::new();
        encode_frame(3, &msg, &mut wire);
        prop_assert_eq!(decode_frame(&wire[..wire.len() - 1]).unwrap().message, msg);
    }

    #[test]
    fn cobs_round_trips(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let mut enc = Vec::new();
        cobs::encode_into(&data, &mut enc);
        prop_assert!(!enc.contains(&0));
        prop_assert!(enc.len() <= cobs::max_encoded_len(data.len()));
        let mut dec = Vec::new();
        cobs::decode_into(&enc, &mut dec).unwrap();
        prop_assert_eq!(dec, data);
    }
}

#[test]
fn crc_parameters_match_the_spec() {
    assert_eq!(CRC.checksum(b"123456789"), 0xCBF4_3926);
}

#[test]
fn overlong_garbage_is_bounded_and_reported_once() {
    let mut d = Deframer::new(32);
    let garbage = [0xAAu8; 100];
    let mut input = &garbage[..];
    assert!(d.next_frame(&mut input).is_none());
    assert!(d.pending() >= 100);
    let mut good = Vec::new();
    encode_frame(3, &Message::GetStatus, &mut good);
    let mut wire = vec![0u8];
    wire.extend_from_slice(&good);
    let mut input = &wire[..];
    assert_eq!(
        d.next_frame(&mut input),
        Some(Err(Overflow { discarded: 100 }))
    );
    let f = d.next_frame(&mut input).unwrap().unwrap().to_vec();
    assert_eq!(decode_frame(&f).unwrap().message, Message::GetStatus);
    assert!(d.next_frame(&mut input).is_none());
}

#[test]
fn a_frame_split_across_reads_is_reassembled() {
    let mut wire = Vec::new();
    encode_frame(9, &Message::GetStatus, &mut wire);
    encode_frame(10, &Message::GetStatus, &mut wire);
    let mut d = Deframer::new(1024);
    let mut seqs = Vec::new();
    for chunk in wire.chunks(3) {
        let mut input = chunk;
        while let Some(r) = d.next_frame(&mut input) {
            seqs.push(decode_frame(r.unwrap()).unwrap().seq);
        }
    }
    assert_eq!(seqs, vec![9, 10]);
}

#[test]
fn other_versions_are_reported_with_their_number() {
    let mut wire = Vec::new();
    encode_frame_with_version(2, 5, &Message::GetStatus, &mut wire);
    let err = decode_frame(&wire[..wire.len() - 1]).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnsupportedVersion {
            version: 2,
            message_type: 6,
            seq: 5
        }
    );
    assert!(!err.is_damage());
    assert!(err.to_string().contains("version 2"));
}

/// The wire bytes (without the delimiter) of a CAPABILITIES with seq `seq`.
fn caps_wire(seq: u32) -> Vec<u8> {
    let caps = Capabilities {
        input_dim: 8,
        output_dim: 4,
        max_input_dim: 64,
        max_output_dim: 64,
        max_batch: 16,
        max_payload: 1024,
        frame_time_ns: 500_000,
        exposure_ns: 400_000,
        boot_count: 1,
        bit_depth: 8,
        firmware_version: [0, 1, 0],
        description: "test device".into(),
    };
    let mut wire = Vec::new();
    encode_frame(seq, &Message::Capabilities(caps), &mut wire);
    wire.pop();
    wire
}

/// An intact frame (right CRC) of type `ty` with `payload`, without the delimiter.
fn intact(ty: MessageType, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    encode_raw_frame(PROTOCOL_VERSION, ty as u8, seq, payload, &mut wire);
    wire.pop();
    wire
}

#[test]
fn zero_frame_requests_and_answers_are_malformed_and_keep_their_seq() {
    let mut request = 0u64.to_le_bytes().to_vec();
    request.extend_from_slice(&0u32.to_le_bytes()); // frame_count
    request.extend_from_slice(&16u32.to_le_bytes()); // input_dim
    let err = decode_frame(&intact(MessageType::TransformRequest, 9, &request)).unwrap_err();
    assert!(
        matches!(err, DecodeError::Malformed { seq: 9, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("frame_count is 0"), "{err}");
    assert_eq!(err.intact_seq(), Some(9));
    assert!(!err.is_damage());

    let mut answer = 0u64.to_le_bytes().to_vec();
    answer.extend_from_slice(&0u32.to_le_bytes()); // frame_count
    answer.extend_from_slice(&4u32.to_le_bytes()); // output_dim
    answer.extend_from_slice(&[8, 0, 0, 0]);
    let err = decode_frame(&intact(MessageType::TransformResponse, 4, &answer)).unwrap_err();
    assert!(
        matches!(err, DecodeError::Malformed { seq: 4, .. }),
        "{err:?}"
    );
}

#[test]
fn intact_but_unusable_answers_name_the_problem() {
    // A CAPABILITIES whose bit depth (byte 36 of the payload) is 17.
    let mut raw = Vec::new();
    cobs::decode_into(&caps_wire(1), &mut raw).unwrap();
    let mut payload = raw[HEADER_LEN..raw.len() - CRC_LEN].to_vec();
    payload[36] = 17;
    let err = decode_frame(&intact(MessageType::Capabilities, 1, &payload)).unwrap_err();
    assert_eq!(err.intact_seq(), Some(1));
    assert!(err.to_string().contains("bit depth above 16"), "{err}");

    // A TRANSFORM_RESPONSE one value short.
    let mut answer = 5u64.to_le_bytes().to_vec();
    answer.extend_from_slice(&2u32.to_le_bytes());
    answer.extend_from_slice(&3u32.to_le_bytes());
    answer.extend_from_slice(&[8, 0, 0, 0]);
    answer.extend_from_slice(&[1, 2, 3, 4, 5]);
    let err = decode_frame(&intact(MessageType::TransformResponse, 2, &answer)).unwrap_err();
    assert_eq!(err.intact_seq(), Some(2));
    assert!(err.to_string().contains("value data length"), "{err}");

    // Damage is not intact: no seq to trust.
    let mut damaged = caps_wire(1);
    damaged[5] ^= 0x10;
    assert_eq!(decode_frame(&damaged).unwrap_err().intact_seq(), None);
}
