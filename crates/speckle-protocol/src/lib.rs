//! # speckle-protocol
//!
//! The wire protocol between a host and an optical device (a DMD, a scattering medium and a
//! camera behind a microcontroller or FPGA), with no I/O: message types, their byte layouts,
//! framing (COBS with a `0x00` delimiter and a CRC-32 per frame) and a streaming
//! [`Deframer`] that skips garbage to the next delimiter. The full specification, written for
//! firmware authors, is `firmware-interface/PROTOCOL.md` at the repository root.
//!
//! The crate is `no_std` (it needs `alloc`), and decoding never panics on arbitrary bytes
//! (property-tested, and fuzzed by `crates/speckle-protocol/fuzz`).
//!
//! ```
//! use speckle_protocol::{decode_frame, encode_frame, Deframer, Message, TransformRequest};
//!
//! let request = Message::TransformRequest(TransformRequest {
//!     first_frame: 1000,
//!     frame_count: 2,
//!     input_dim: 12,
//!     frames: vec![0xFF, 0x0F, 0x01, 0x00],
//! });
//! let mut wire = vec![0x55, 0xAA]; // line noise before the frame
//! wire.push(0x00);
//! encode_frame(7, &request, &mut wire);
//! assert_eq!(*wire.last().unwrap(), 0x00);
//!
//! let mut deframer = Deframer::new(1 << 16);
//! let mut input = &wire[..];
//! // The noise is reported as a damaged frame, then the real frame decodes.
//! let first = deframer.next_frame(&mut input).unwrap().unwrap();
//! assert!(decode_frame(first).is_err());
//! let frame = deframer.next_frame(&mut input).unwrap().unwrap();
//! let decoded = decode_frame(frame).unwrap();
//! assert_eq!((decoded.seq, decoded.message), (7, request));
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cobs;
mod message;

use alloc::vec::Vec;
use core::fmt;

pub use message::{
    first_padded_frame, packed_len, value_size, values_len, Capabilities, Configure, ErrorCode,
    ErrorReport, Hello, Message, MessageType, ResetNotice, Status, TransformRequest,
    TransformResponse, CAPABILITIES_FIXED, ERROR_FIXED, TRANSFORM_REQUEST_FIXED,
    TRANSFORM_RESPONSE_FIXED,
};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes of the frame header (version, type, flags, sequence number, payload length).
pub const HEADER_LEN: usize = 12;
/// Bytes of the CRC that closes every frame.
pub const CRC_LEN: usize = 4;
/// The frame delimiter on the wire.
pub const DELIMITER: u8 = 0x00;
/// Hard upper bound on a payload, whatever the peers advertise (16 MiB): a decoder refuses
/// longer frames before allocating for them.
pub const MAX_PAYLOAD_LIMIT: u32 = 16 << 20;
/// The smallest `max_payload` a host may offer in HELLO or a device report in CAPABILITIES
/// (64 bytes): every fixed-size payload fits, and a CAPABILITIES or ERROR fits once its text is
/// cut with [`Message::fit_payload`].
pub const MIN_MAX_PAYLOAD: u32 = 64;

/// The CRC of every frame: CRC-32/ISO-HDLC (the CRC of zlib, Ethernet and PNG): polynomial
/// `0x04C11DB7`, reflected input and output, initial value and final XOR `0xFFFFFFFF`;
/// check value `0xCBF43926` for the ASCII bytes `123456789`.
pub const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The fixed 12-byte header, identical in every protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version of this frame.
    pub version: u8,
    /// Message type byte.
    pub message_type: u8,
    /// Reserved, 0 in version 1; receivers ignore it.
    pub flags: u16,
    /// Sequence number: a response carries the sequence number of its request.
    pub seq: u32,
    /// Payload length in bytes.
    pub payload_len: u32,
}

/// A decoded frame: its sequence number and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Sequence number from the header.
    pub seq: u32,
    /// The message.
    pub message: Message,
}

/// Why bytes between two delimiters are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// COBS decoding failed.
    Cobs(cobs::CobsError),
    /// Fewer bytes than a header and a CRC.
    TooShort {
        /// Decoded length.
        len: usize,
    },
    /// The header's payload length disagrees with the frame's length.
    LengthMismatch {
        /// Payload length in the header.
        declared: u32,
        /// Payload bytes actually present.
        actual: usize,
    },
    /// The header declares a payload above [`MAX_PAYLOAD_LIMIT`].
    TooLong {
        /// Payload length in the header.
        declared: u32,
    },
    /// The CRC does not match.
    Crc {
        /// CRC computed over the received bytes.
        computed: u32,
        /// CRC found in the frame.
        received: u32,
    },
    /// A valid frame (CRC checked) of a protocol version this crate does not speak.
    UnsupportedVersion {
        /// The frame's version.
        version: u8,
        /// Its message type byte.
        message_type: u8,
        /// Its sequence number.
        seq: u32,
    },
    /// A valid frame (CRC checked) of an unknown message type.
    UnknownMessage {
        /// The type byte.
        message_type: u8,
        /// Its sequence number.
        seq: u32,
    },
    /// A valid frame (CRC checked) whose payload does not fit its message type.
    Malformed {
        /// The type byte.
        message_type: u8,
        /// Its sequence number (0 from [`Message::decode_payload`], which sees no header).
        seq: u32,
        /// What is wrong.
        what: &'static str,
    },
}

impl DecodeError {
    /// Whether the frame was damaged in transit (COBS, length or CRC failure), as opposed to a
    /// frame that arrived intact but that this side cannot understand.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            DecodeError::Cobs(_)
                | DecodeError::TooShort { .. }
                | DecodeError::LengthMismatch { .. }
                | DecodeError::TooLong { .. }
                | DecodeError::Crc { .. }
        )
    }

    /// The sequence number of a frame that arrived intact but is unusable (another version, an
    /// unknown type, a malformed payload): its header passed the CRC, so its seq can be trusted.
    /// `None` for a damaged frame.
    pub fn intact_seq(&self) -> Option<u32> {
        match *self {
            DecodeError::UnsupportedVersion { seq, .. }
            | DecodeError::UnknownMessage { seq, .. }
            | DecodeError::Malformed { seq, .. } => Some(seq),
            _ => None,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Cobs(cobs::CobsError::ZeroByte) => {
                f.write_str("COBS: zero byte inside a frame")
            }
            DecodeError::Cobs(cobs::CobsError::Truncated) => f.write_str("COBS: frame truncated"),
            DecodeError::TooShort { len } => {
                write!(f, "frame of {len} bytes is shorter than header + CRC")
            }
            DecodeError::LengthMismatch { declared, actual } => {
                write!(
                    f,
                    "header declares {declared} payload bytes but the frame has {actual}"
                )
            }
            DecodeError::TooLong { declared } => {
                write!(f, "header declares {declared} payload bytes, above the {MAX_PAYLOAD_LIMIT}-byte limit")
            }
            DecodeError::Crc { computed, received } => {
                write!(
                    f,
                    "CRC mismatch: computed {computed:#010x}, frame carries {received:#010x}"
                )
            }
            DecodeError::UnsupportedVersion { version, .. } => {
                write!(f, "peer speaks protocol version {version}, this side speaks version {PROTOCOL_VERSION}")
            }
            DecodeError::UnknownMessage { message_type, .. } => {
                write!(f, "unknown message type {message_type:#04x}")
            }
            DecodeError::Malformed {
                message_type, what, ..
            } => {
                write!(f, "malformed message of type {message_type:#04x}: {what}")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// Appends the wire bytes of one frame (COBS-encoded header, payload and CRC, then the
/// `0x00` delimiter) to `out`, in protocol version [`PROTOCOL_VERSION`].
pub fn encode_frame(seq: u32, message: &Message, out: &mut Vec<u8>) {
    encode_frame_with_version(PROTOCOL_VERSION, seq, message, out)
}

/// [`encode_frame`] with another version byte in the header (for testing version handling).
pub fn encode_frame_with_version(version: u8, seq: u32, message: &Message, out: &mut Vec<u8>) {
    let raw = raw_frame(version, seq, message);
    cobs::encode_into(&raw, out);
    out.push(DELIMITER);
}

/// The bytes of a frame before COBS: header, payload, CRC (little-endian).
pub fn raw_frame(version: u8, seq: u32, message: &Message) -> Vec<u8> {
    let mut payload = Vec::with_capacity(64);
    message.encode_payload(&mut payload);
    raw_frame_of(version, message.message_type() as u8, seq, &payload)
}

/// The bytes before COBS of a frame with any type byte and payload, with a correct length and
/// CRC: an *intact* frame even when its type or payload is not one a peer can use (how tests
/// and golden vectors build the frames a receiver must reject as intact but unusable).
pub fn raw_frame_of(version: u8, message_type: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(HEADER_LEN + payload.len() + CRC_LEN);
    raw.extend_from_slice(&[version, message_type, 0, 0]);
    raw.extend_from_slice(&seq.to_le_bytes());
    raw.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    raw.extend_from_slice(payload);
    let crc = CRC.checksum(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    raw
}

/// Appends the wire bytes (COBS, then the delimiter) of the frame [`raw_frame_of`] builds.
pub fn encode_raw_frame(
    version: u8,
    message_type: u8,
    seq: u32,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    cobs::encode_into(&raw_frame_of(version, message_type, seq, payload), out);
    out.push(DELIMITER);
}

/// Checks and parses the header of a decoded (un-COBSed) frame: length and CRC.
pub fn check_raw(raw: &[u8]) -> Result<Header, DecodeError> {
    if raw.len() < HEADER_LEN + CRC_LEN {
        return Err(DecodeError::TooShort { len: raw.len() });
    }
    let header = Header {
        version: raw[0],
        message_type: raw[1],
        flags: u16::from_le_bytes([raw[2], raw[3]]),
        seq: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
        payload_len: u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]),
    };
    if header.payload_len > MAX_PAYLOAD_LIMIT {
        return Err(DecodeError::TooLong {
            declared: header.payload_len,
        });
    }
    let actual = raw.len() - HEADER_LEN - CRC_LEN;
    if actual != header.payload_len as usize {
        return Err(DecodeError::LengthMismatch {
            declared: header.payload_len,
            actual,
        });
    }
    let body = &raw[..raw.len() - CRC_LEN];
    let tail = &raw[raw.len() - CRC_LEN..];
    let received = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = CRC.checksum(body);
    if computed != received {
        return Err(DecodeError::Crc { computed, received });
    }
    Ok(header)
}

/// Decodes one frame from the bytes between two delimiters (delimiter excluded).
pub fn decode_frame(encoded: &[u8]) -> Result<Frame, DecodeError> {
    let mut raw = Vec::new();
    decode_frame_into(encoded, &mut raw)
}

/// [`decode_frame`] reusing `scratch` for the un-COBSed bytes.
pub fn decode_frame_into(encoded: &[u8], scratch: &mut Vec<u8>) -> Result<Frame, DecodeError> {
    scratch.clear();
    cobs::decode_into(encoded, scratch).map_err(DecodeError::Cobs)?;
    let header = check_raw(scratch)?;
    if header.version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            version: header.version,
            message_type: header.message_type,
            seq: header.seq,
        });
    }
    let ty = MessageType::from_u8(header.message_type).ok_or(DecodeError::UnknownMessage {
        message_type: header.message_type,
        seq: header.seq,
    })?;
    let payload = &scratch[HEADER_LEN..scratch.len() - CRC_LEN];
    let message = Message::decode_payload(ty, payload).map_err(|e| match e {
        DecodeError::Malformed {
            message_type, what, ..
        } => DecodeError::Malformed {
            message_type,
            seq: header.seq,
            what,
        },
        other => other,
    })?;
    Ok(Frame {
        seq: header.seq,
        message,
    })
}

/// Wire bytes of a frame with a `payload_len`-byte payload, at most (COBS worst case).
pub const fn max_wire_len(payload_len: usize) -> usize {
    cobs::max_encoded_len(HEADER_LEN + payload_len + CRC_LEN) + 1
}

/// What [`Deframer::next_frame`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    /// Bytes thrown away (at least the limit).
    pub discarded: usize,
}

/// Splits a byte stream at `0x00` delimiters, holding at most `max_len` bytes of one frame.
/// Bytes past the limit are discarded up to the next delimiter and reported once as an
/// [`Overflow`], so garbage never grows memory and the stream resynchronises at the next
/// delimiter. Empty frames (two delimiters in a row) are skipped silently.
#[derive(Debug, Clone)]
pub struct Deframer {
    buf: Vec<u8>,
    max_len: usize,
    discarding: usize,
    clear_next: bool,
}

impl Deframer {
    /// A deframer accepting encoded frames of up to `max_len` bytes (use [`max_wire_len`]).
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_len,
            discarding: 0,
            clear_next: false,
        }
    }

    /// Drops any partial frame (after a timeout, before a retry).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = 0;
        self.clear_next = false;
    }

    /// Bytes of the partial frame held.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.discarding
    }

    /// Consumes bytes from `input` up to and including the next delimiter and returns the
    /// encoded frame before it (borrowed until the next call), or `None` once `input` is used
    /// up without completing a frame.
    pub fn next_frame(&mut self, input: &mut &[u8]) -> Option<Result<&[u8], Overflow>> {
        if self.clear_next {
            self.buf.clear();
            self.clear_next = false;
        }
        loop {
            if input.is_empty() {
                return None;
            }
            match input.iter().position(|&b| b == DELIMITER) {
                Some(p) => {
                    let chunk = &input[..p];
                    *input = &input[p + 1..];
                    if self.discarding > 0 {
                        let discarded = self.discarding + chunk.len();
                        self.discarding = 0;
                        return Some(Err(Overflow { discarded }));
                    }
                    if self.buf.len() + chunk.len() > self.max_len {
                        let discarded = self.buf.len() + chunk.len();
                        self.buf.clear();
                        return Some(Err(Overflow { discarded }));
                    }
                    self.buf.extend_from_slice(chunk);
                    if self.buf.is_empty() {
                        continue;
                    }
                    self.clear_next = true;
                    return Some(Ok(&self.buf));
                }
                None => {
                    let chunk = *input;
                    *input = &[];
                    if self.discarding > 0 {
                        self.discarding += chunk.len();
                    } else if self.buf.len() + chunk.len() > self.max_len {
                        self.discarding = self.buf.len() + chunk.len();
                        self.buf.clear();
                    } else {
                        self.buf.extend_from_slice(chunk);
                    }
                    return None;
                }
            }
        }
    }
}
