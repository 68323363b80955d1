//! Arbitrary bytes through the deframer and the decoder: never a panic, and every frame that
//! decodes re-encodes to a frame that decodes to the same bytes again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use speckle_protocol::{decode_frame, encode_frame, Deframer, Message, MessageType};

fuzz_target!(|data: &[u8]| {
    let mut deframer = Deframer::new(4096);
    let mut input = data;
    while let Some(found) = deframer.next_frame(&mut input) {
        let Ok(bytes) = found else { continue };
        let Ok(frame) = decode_frame(bytes) else {
            continue;
        };
        let mut wire = Vec::new();
        encode_frame(frame.seq, &frame.message, &mut wire);
        let again = decode_frame(&wire[..wire.len() - 1]).expect("a re-encoded frame decodes");
        let mut wire2 = Vec::new();
        encode_frame(again.seq, &again.message, &mut wire2);
        assert_eq!(wire, wire2);
    }
    // Payload parsers directly, without the CRC in the way.
    if let Some((&ty, payload)) = data.split_first() {
        if let Some(ty) = MessageType::from_u8(ty) {
            let _ = Message::decode_payload(ty, payload);
        }
    }
});
