//! Message types and their payload layouts (all integers little-endian).

use alloc::string::String;
use alloc::vec::Vec;

use crate::DecodeError;

/// Message type identifiers (byte 1 of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum MessageType {
    /// Host → device: open a session, offer protocol versions.
    Hello = 0x01,
    /// Device → host: capability report, the answer to Hello and Configure.
    Capabilities = 0x02,
    /// Host → device: choose active dimensions, output region, exposure, gain.
    Configure = 0x03,
    /// Host → device: one chunk of binary frames to show.
    TransformRequest = 0x04,
    /// Device → host: the camera values for one TransformRequest.
    TransformResponse = 0x05,
    /// Host → device: ask for a Status.
    GetStatus = 0x06,
    /// Device → host: state and counters.
    Status = 0x07,
    /// Device → host: a request failed (or a frame arrived damaged).
    Error = 0x08,
    /// Device → host, unsolicited: the device (re)started and has no session.
    ResetNotice = 0x09,
}

impl MessageType {
    /// The type for an identifier byte, if known.
    pub fn from_u8(id: u8) -> Option<Self> {
        Some(match id {
            0x01 => Self::Hello,
            0x02 => Self::Capabilities,
            0x03 => Self::Configure,
            0x04 => Self::TransformRequest,
            0x05 => Self::TransformResponse,
            0x06 => Self::GetStatus,
            0x07 => Self::Status,
            0x08 => Self::Error,
            0x09 => Self::ResetNotice,
            _ => return None,
        })
    }
}

/// Error codes carried by [`ErrorReport`]. A newtype rather than an enum so that codes from a
/// newer device still decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// A frame failed COBS, length or CRC checks (a NAK; `seq` is 0).
    pub const BAD_FRAME: Self = Self(1);
    /// The request's protocol version is not supported; `detail` is the device's version.
    pub const UNSUPPORTED_VERSION: Self = Self(2);
    /// Unknown or host-bound message type; `detail` is the type byte.
    pub const UNKNOWN_MESSAGE: Self = Self(3);
    /// The payload layout is wrong for its message type.
    pub const MALFORMED: Self = Self(4);
    /// No session: the device restarted or never saw Hello. The host re-handshakes.
    pub const NOT_CONFIGURED: Self = Self(5);
    /// Dimensions do not fit the device, or a request's width differs from the active one;
    /// `detail` is the bound the value broke: the maximum for a value above it, 1 for a
    /// dimension of 0, the active `input_dim` for a request of another width.
    pub const DIMENSION_MISMATCH: Self = Self(6);
    /// More frames than `max_batch`; `detail` is `max_batch`.
    pub const BATCH_TOO_LARGE: Self = Self(7);
    /// The answer would exceed the host's `max_payload` (`detail` is that limit), or a HELLO
    /// offers less than [`MIN_MAX_PAYLOAD`](crate::MIN_MAX_PAYLOAD) (`detail` is that minimum).
    pub const PAYLOAD_TOO_LARGE: Self = Self(8);
    /// A setting the device does not support (output offset, exposure, gain).
    pub const UNSUPPORTED: Self = Self(9);
    /// Padding bits past `input_dim` are set in a frame; `detail` is the index, within the
    /// request, of the first such frame.
    pub const INVALID_FRAMES: Self = Self(10);
    /// The device failed internally.
    pub const DEVICE_FAULT: Self = Self(11);

    /// A short name for the code, or `"unknown"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "bad frame",
            2 => "unsupported version",
            3 => "unknown message",
            4 => "malformed message",
            5 => "not configured",
            6 => "dimension mismatch",
            7 => "batch too large",
            8 => "payload too large",
            9 => "unsupported setting",
            10 => "invalid frames",
            11 => "device fault",
            _ => "unknown error code",
        }
    }
}

/// Host → device: opens a session. The header's version is the host's preferred version;
/// the device answers with [`Capabilities`] in the version it chose from `min_version ..= max_version`,
/// or [`ErrorCode::UNSUPPORTED_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Oldest protocol version the host speaks.
    pub min_version: u8,
    /// Newest protocol version the host speaks.
    pub max_version: u8,
    /// Largest payload the host accepts in one frame.
    pub max_payload: u32,
}

/// Device → host: what the device is and how it is configured now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Active binary features per frame.
    pub input_dim: u32,
    /// Active camera pixels per frame.
    pub output_dim: u32,
    /// Largest `input_dim` Configure accepts.
    pub max_input_dim: u32,
    /// Largest `output_dim` (plus offset) Configure accepts.
    pub max_output_dim: u32,
    /// Most frames in one TransformRequest.
    pub max_batch: u32,
    /// Largest payload the device accepts or sends in one frame.
    pub max_payload: u32,
    /// Frame period, nanoseconds.
    pub frame_time_ns: u32,
    /// Camera exposure, nanoseconds.
    pub exposure_ns: u32,
    /// Incremented at every device start; a change tells the host the device restarted.
    pub boot_count: u32,
    /// ADC bits per camera value (1..=16), or 0 for float32 intensities.
    pub bit_depth: u8,
    /// Firmware version, major.minor.patch.
    pub firmware_version: [u16; 3],
    /// Free text (model, serial number), UTF-8, at most 65535 bytes.
    pub description: String,
}

/// Host → device: choose the active dimensions and camera settings. Answered by [`Capabilities`].
#[derive(Debug, Clone, PartialEq)]
pub struct Configure {
    /// Binary features per frame.
    pub input_dim: u32,
    /// Camera pixels per frame.
    pub output_dim: u32,
    /// First camera pixel of the output region.
    pub output_offset: u32,
    /// Exposure in nanoseconds, 0 = device default.
    pub exposure_ns: u32,
    /// Analog gain factor, 0.0 = device default.
    pub gain: f32,
}

/// Host → device: show `frame_count` frames. `first_frame` is the global index of the first
/// one; a device that can replay (a simulator) shows them as frames `first_frame ..`, so a
/// retried request gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformRequest {
    /// Global index of the first frame.
    pub first_frame: u64,
    /// Frames in this request.
    pub frame_count: u32,
    /// Features per frame; must equal the active `input_dim`.
    pub input_dim: u32,
    /// `frame_count × ceil(input_dim / 8)` bytes, bit-packed LSB first.
    pub frames: Vec<u8>,
}

/// Device → host: camera values for one request, frame after frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformResponse {
    /// Echo of the request's `first_frame`.
    pub first_frame: u64,
    /// Echo of the request's `frame_count`.
    pub frame_count: u32,
    /// Camera values per frame.
    pub output_dim: u32,
    /// Bits per value (1..=16) or 0 for float32; sets the value encoding.
    pub bit_depth: u8,
    /// `frame_count × output_dim` values, each [`value_size`] bytes, little-endian.
    pub values: Vec<u8>,
}

/// Device → host: state and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// 0 = no session (needs Hello), 1 = ready.
    pub state: u8,
    /// See [`Capabilities::boot_count`].
    pub boot_count: u32,
    /// Frames shown since boot.
    pub frames_shown: u64,
    /// Damaged frames received since boot.
    pub bad_frames: u32,
}

/// Device → host: the request with the header's sequence number failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// What went wrong.
    pub code: ErrorCode,
    /// A number qualifying the code (see each code).
    pub detail: u32,
    /// Human-readable text, UTF-8, may be empty.
    pub message: String,
}

/// Device → host, unsolicited, with sequence number 0: the device started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetNotice {
    /// The new boot count.
    pub boot_count: u32,
    /// 0 power-on, 1 watchdog, 2 requested, 3 internal fault.
    pub reason: u8,
}

/// Every message of protocol version 1.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Capabilities`].
    Capabilities(Capabilities),
    /// See [`Configure`].
    Configure(Configure),
    /// See [`TransformRequest`].
    TransformRequest(TransformRequest),
    /// See [`TransformResponse`].
    TransformResponse(TransformResponse),
    /// Host → device: ask for a [`Status`]; empty payload.
    GetStatus,
    /// See [`Status`].
    Status(Status),
    /// See [`ErrorReport`].
    Error(ErrorReport),
    /// See [`ResetNotice`].
    ResetNotice(ResetNotice),
}

/// Bytes per camera value for a bit depth: 1 for 1..=8, 2 for 9..=16, 4 (float32) for 0, and
/// `None` for depths the protocol cannot carry.
pub fn value_size(bit_depth: u8) -> Option<usize> {
    match bit_depth {
        0 => Some(4),
        1..=8 => Some(1),
        9..=16 => Some(2),
        _ => None,
    }
}

/// Bytes of `frames` packed frames of `input_dim` features, if it fits in `usize`.
pub fn packed_len(frames: u32, input_dim: u32) -> Option<usize> {
    (frames as usize).checked_mul((input_dim as usize).div_ceil(8))
}

/// The index of the first of `frame_count` packed frames of `input_dim` features whose padding
/// bits (past `input_dim`, in its last byte) are set: what `INVALID_FRAMES` reports in its
/// `detail`. `None` when every frame is clean (or `frames` is not `frame_count` frames long).
pub fn first_padded_frame(frames: &[u8], frame_count: u32, input_dim: u32) -> Option<u32> {
    let per = (input_dim as usize).div_ceil(8);
    let used = input_dim % 8;
    if used == 0 || per == 0 || packed_len(frame_count, input_dim) != Some(frames.len()) {
        return None;
    }
    let padding = 0xFFu8 << used;
    frames
        .chunks_exact(per)
        .position(|frame| frame[per - 1] & padding != 0)
        .map(|i| i as u32)
}

/// Bytes of the values of `frames × output_dim` camera values at `bit_depth`.
pub fn values_len(frames: u32, output_dim: u32, bit_depth: u8) -> Option<usize> {
    (frames as usize)
        .checked_mul(output_dim as usize)?
        .checked_mul(value_size(bit_depth)?)
}

/// Fixed part of the TransformRequest payload.
pub const TRANSFORM_REQUEST_FIXED: usize = 16;
/// Fixed part of the TransformResponse payload.
pub const TRANSFORM_RESPONSE_FIXED: usize = 20;
/// Fixed part of the Capabilities payload (the description follows).
pub const CAPABILITIES_FIXED: usize = 46;
/// Fixed part of the Error payload (the message follows).
pub const ERROR_FIXED: usize = 8;

impl Message {
    /// The type identifier.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello(_) => MessageType::Hello,
            Message::Capabilities(_) => MessageType::Capabilities,
            Message::Configure(_) => MessageType::Configure,
            Message::TransformRequest(_) => MessageType::TransformRequest,
            Message::TransformResponse(_) => MessageType::TransformResponse,
            Message::GetStatus => MessageType::GetStatus,
            Message::Status(_) => MessageType::Status,
            Message::Error(_) => MessageType::Error,
            Message::ResetNotice(_) => MessageType::ResetNotice,
        }
    }

    /// Cuts the free text of a CAPABILITIES (its description) or an ERROR (its message), at a
    /// UTF-8 character boundary, so that the payload fits in `max_payload` bytes: what a device
    /// does before sending either to a host that offered a small `max_payload` (never below
    /// [`MIN_MAX_PAYLOAD`](crate::MIN_MAX_PAYLOAD), which the fixed fields always fit). Other
    /// messages are left as they are.
    pub fn fit_payload(&mut self, max_payload: usize) {
        let (text, fixed) = match self {
            Message::Capabilities(c) => (&mut c.description, CAPABILITIES_FIXED),
            Message::Error(e) => (&mut e.message, ERROR_FIXED),
            _ => return,
        };
        let room = max_payload.saturating_sub(fixed).min(usize::from(u16::MAX));
        if text.len() > room {
            let mut end = room;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
    }

    /// Appends the payload bytes. Strings longer than 65535 bytes are cut at a character
    /// boundary; a TransformRequest/Response whose data length disagrees with its counts is
    /// encoded as given (the peer will reject it as malformed).
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello(h) => {
                out.push(h.min_version);
                out.push(h.max_version);
                put_u16(out, 0);
                put_u32(out, h.max_payload);
            }
            Message::Capabilities(c) => {
                for v in [
                    c.input_dim,
                    c.output_dim,
                    c.max_input_dim,
                    c.max_output_dim,
                    c.max_batch,
                    c.max_payload,
                    c.frame_time_ns,
                    c.exposure_ns,
                    c.boot_count,
                ] {
                    put_u32(out, v);
                }
                out.push(c.bit_depth);
                out.push(0);
                for v in c.firmware_version {
                    put_u16(out, v);
                }
                put_str(out, &c.description);
            }
            Message::Configure(c) => {
                put_u32(out, c.input_dim);
                put_u32(out, c.output_dim);
                put_u32(out, c.output_offset);
                put_u32(out, c.exposure_ns);
                out.extend_from_slice(&c.gain.to_le_bytes());
            }
            Message::TransformRequest(r) => {
                put_u64(out, r.first_frame);
                put_u32(out, r.frame_count);
                put_u32(out, r.input_dim);
                out.extend_from_slice(&r.frames);
            }
            Message::TransformResponse(r) => {
                put_u64(out, r.first_frame);
                put_u32(out, r.frame_count);
                put_u32(out, r.output_dim);
                out.extend_from_slice(&[r.bit_depth, 0, 0, 0]);
                out.extend_from_slice(&r.values);
            }
            Message::GetStatus => {}
            Message::Status(s) => {
                out.extend_from_slice(&[s.state, 0, 0, 0]);
                put_u32(out, s.boot_count);
                put_u64(out, s.frames_shown);
                put_u32(out, s.bad_frames);
            }
            Message::Error(e) => {
                put_u16(out, e.code.0);
                let msg = truncate_str(&e.message);
                put_u16(out, msg.len() as u16);
                put_u32(out, e.detail);
                out.extend_from_slice(msg.as_bytes());
            }
            Message::ResetNotice(r) => {
                put_u32(out, r.boot_count);
                out.extend_from_slice(&[r.reason, 0, 0, 0]);
            }
        }
    }

    /// Parses a payload of type `ty`. Lengths must match exactly.
    pub fn decode_payload(ty: MessageType, p: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader { p, at: 0, ty };
        let msg = match ty {
            MessageType::Hello => {
                let min_version = r.u8()?;
                let max_version = r.u8()?;
                r.u16()?;
                Message::Hello(Hello {
                    min_version,
                    max_version,
                    max_payload: r.u32()?,
                })
            }
            MessageType::Capabilities => decode_capabilities(&mut r)?,
            MessageType::Configure => Message::Configure(Configure {
                input_dim: r.u32()?,
                output_dim: r.u32()?,
                output_offset: r.u32()?,
                exposure_ns: r.u32()?,
                gain: f32::from_bits(r.u32()?),
            }),
            MessageType::TransformRequest => decode_transform_request(&mut r)?,
            MessageType::TransformResponse => decode_transform_response(&mut r)?,
            MessageType::GetStatus => Message::GetStatus,
            MessageType::Status => {
                let state = r.u8()?;
                r.bytes(3)?;
                Message::Status(Status {
                    state,
                    boot_count: r.u32()?,
                    frames_shown: r.u64()?,
                    bad_frames: r.u32()?,
                })
            }
            MessageType::Error => {
                let code = ErrorCode(r.u16()?);
                let len = usize::from(r.u16()?);
                let detail = r.u32()?;
                let message = String::from_utf8_lossy(r.bytes(len)?).into_owned();
                Message::Error(ErrorReport {
                    code,
                    detail,
                    message,
                })
            }
            MessageType::ResetNotice => {
                let boot_count = r.u32()?;
                let reason = r.u8()?;
                r.bytes(3)?;
                Message::ResetNotice(ResetNotice { boot_count, reason })
            }
        };
        if r.remaining() != 0 {
            return Err(r.malformed("trailing bytes after the payload"));
        }
        Ok(msg)
    }
}

/// The payload of a CAPABILITIES message.
fn decode_capabilities(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let mut w = [0u32; 9];
    for v in &mut w {
        *v = r.u32()?;
    }
    let bit_depth = r.u8()?;
    r.u8()?;
    let firmware_version = [r.u16()?, r.u16()?, r.u16()?];
    let description = r.string()?;
    if value_size(bit_depth).is_none() {
        return Err(r.malformed("bit depth above 16"));
    }
    Ok(Message::Capabilities(Capabilities {
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
    }))
}

/// The payload of a TRANSFORM_REQUEST: the frame data must have the announced length.
fn decode_transform_request(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let first_frame = r.u64()?;
    let frame_count = r.u32()?;
    let input_dim = r.u32()?;
    if frame_count == 0 {
        return Err(r.malformed("frame_count is 0 (a request carries 1 to max_batch frames)"));
    }
    let want = packed_len(frame_count, input_dim)
        .ok_or_else(|| r.malformed("frame data length overflows"))?;
    if r.remaining() != want {
        return Err(r.malformed("frame data length disagrees with frame count × input_dim"));
    }
    Ok(Message::TransformRequest(TransformRequest {
        first_frame,
        frame_count,
        input_dim,
        frames: r.rest().to_vec(),
    }))
}

/// The payload of a TRANSFORM_RESPONSE: the values must have the announced length.
fn decode_transform_response(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let first_frame = r.u64()?;
    let frame_count = r.u32()?;
    let output_dim = r.u32()?;
    let bit_depth = r.u8()?;
    r.bytes(3)?;
    if frame_count == 0 {
        return Err(
            r.malformed("frame_count is 0 (an answer echoes a request of at least 1 frame)")
        );
    }
    if value_size(bit_depth).is_none() {
        return Err(r.malformed("bit depth above 16"));
    }
    let want = values_len(frame_count, output_dim, bit_depth)
        .ok_or_else(|| r.malformed("value data length overflows"))?;
    if r.remaining() != want {
        return Err(r.malformed("value data length disagrees with frame count × output_dim"));
    }
    Ok(Message::TransformResponse(TransformResponse {
        first_frame,
        frame_count,
        output_dim,
        bit_depth,
        values: r.rest().to_vec(),
    }))
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn truncate_str(s: &str) -> &str {
    if s.len() <= usize::from(u16::MAX) {
        return s;
    }
    let mut end = usize::from(u16::MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = truncate_str(s);
    put_u16(out, s.len() as u16);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    p: &'a [u8],
    at: usize,
    ty: MessageType,
}

impl<'a> Reader<'a> {
    fn malformed(&self, what: &'static str) -> DecodeError {
        DecodeError::Malformed {
            message_type: self.ty as u8,
            seq: 0,
            what,
        }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.p.len());
        match end {
            Some(end) => {
                let s = &self.p[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(self.malformed("payload too short")),
        }
    }
    fn remaining(&self) -> usize {
        self.p.len() - self.at
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.p[self.at..];
        self.at = self.p.len();
        s
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        Ok(String::from_utf8_lossy(self.bytes(len)?).into_owned())
    }
}
