//! The device side of the protocol: serves any [`OpticalDevice`] over a [`Transport`], with
//! optional fault injection. A retried request is answered by seeking the device's frame clock
//! ([`OpticalDevice::seek_frame`]) to the request's first frame, so that a device whose noise
//! depends only on the frame index (the simulated OPU) gives exactly the same answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use speckle_hal::{DeviceCounters, DeviceInfo, Error, ErrorKind, OpticalDevice, PackedFrames};
use speckle_protocol::{
    self as proto, Capabilities, DecodeError, Deframer, ErrorCode, ErrorReport, Message,
    ResetNotice, Status, TransformRequest, TransformResponse,
};

use crate::faults::{FaultConfig, FaultCounts, FaultInjector, FaultKind};
use crate::transport::{is_timeout, sleep_unless_stopped, write_all_until, Transport, WriteEnd};

/// The device's settings, handed to the emulator's device factory: the power-on defaults,
/// then each Configure applied on top (a 0 exposure or gain in a Configure keeps the current
/// value).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    /// Binary features per frame.
    pub input_dim: usize,
    /// Camera pixels per frame.
    pub output_dim: usize,
    /// First camera pixel of the output region.
    pub output_offset: usize,
    /// Exposure in nanoseconds; 0 = the device's power-on default (never set since power-on).
    pub exposure_ns: u32,
    /// Gain factor; 0.0 = the device's power-on default (never set since power-on).
    pub gain: f32,
}

/// How the emulated device presents itself.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Dimensions after power-on, before any Configure.
    pub default_dims: (usize, usize),
    /// Largest dimensions Configure accepts.
    pub max_dims: (usize, usize),
    /// Largest payload the device accepts or sends.
    pub max_payload: u32,
    /// Reported firmware version.
    pub firmware_version: [u16; 3],
    /// Protocol version the device speaks (tests set another to check version handling).
    pub protocol_version: u8,
    /// Link faults to inject.
    pub faults: FaultConfig,
    /// Seed of the fault stream.
    pub fault_seed: u64,
    /// How often `serve` checks the stop flag, also while it waits to write.
    pub poll_interval: Duration,
    /// How long `serve` tries to write one frame to a host that stopped reading before it
    /// drops the frame (and ends the partial frame with a lone delimiter later).
    pub write_timeout: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            default_dims: (1024, 1024),
            max_dims: (1 << 20, 1 << 20),
            // Small enough that a response never fills a pseudo-terminal's kernel buffer while
            // the host is still writing (which would stall both sides until a timeout).
            max_payload: 32 << 10,
            firmware_version: [0, 1, 0],
            protocol_version: proto::PROTOCOL_VERSION,
            faults: FaultConfig::none(),
            fault_seed: 0,
            poll_interval: Duration::from_millis(50),
            write_timeout: Duration::from_secs(1),
        }
    }
}

/// What an emulator has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    /// Intact frames received.
    pub frames_received: u64,
    /// Damaged frames received (answered with a BAD_FRAME NAK).
    pub bad_frames: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames dropped, wholly or in part, because the host did not read them in time.
    pub frames_unsent: u64,
    /// Frames shown on the device.
    pub frames_shown: u64,
    /// Faults injected.
    pub faults: FaultCounts,
}

/// Serves a device built by `factory` over the speckle protocol. The factory builds the device
/// on power-on and for each Configure, except a Configure that only narrows the output region
/// of the device a Configure built since the last restart (the same input width, offset,
/// exposure and gain, no more pixels): that one reads out a window of it, a camera's region of
/// interest, so that the pixels inside read what they read before
/// ([`OpticalDevice::set_readout_window`] on the device when it has one).
pub struct Emulator<D, F> {
    factory: F,
    options: EmulatorOptions,
    device: Option<D>,
    /// The active settings; `output_dim` may be a window of the device's pixels.
    settings: DeviceSettings,
    /// Pixels of the device a Configure built since the last restart; `None` for the
    /// power-on device, which a first Configure replaces.
    sensor_pixels: Option<usize>,
    session: bool,
    boot_count: u32,
    host_max_payload: u32,
    /// A frame was cut short by a write timeout: start the next one with a lone delimiter.
    need_delimiter: bool,
    injector: FaultInjector,
    stats: EmulatorStats,
    scratch: Vec<u8>,
    values: Vec<f32>,
}

impl<D, F> Emulator<D, F>
where
    D: OpticalDevice,
    F: FnMut(&DeviceSettings) -> Result<D, Error>,
{
    /// An emulator in its power-on state (no session, default dimensions).
    pub fn new(factory: F, options: EmulatorOptions) -> Self {
        let injector = FaultInjector::new(options.faults.clone(), options.fault_seed);
        let settings = default_settings(&options);
        Self {
            factory,
            device: None,
            settings,
            sensor_pixels: None,
            session: false,
            boot_count: 1,
            host_max_payload: proto::MIN_MAX_PAYLOAD,
            need_delimiter: false,
            injector,
            stats: EmulatorStats::default(),
            scratch: Vec::new(),
            values: Vec::new(),
            options,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> EmulatorStats {
        EmulatorStats {
            faults: self.injector.counts(),
            ..self.stats
        }
    }

    /// Restarts the device: the session, the configuration and the device are lost.
    /// Returns the ResetNotice to announce.
    pub fn reset(&mut self) -> Message {
        self.session = false;
        self.device = None;
        self.sensor_pixels = None;
        self.settings = default_settings(&self.options);
        // Until a Hello says otherwise, answers fit the smallest payload a host may accept.
        self.host_max_payload = proto::MIN_MAX_PAYLOAD;
        self.boot_count = self.boot_count.wrapping_add(1);
        Message::ResetNotice(ResetNotice {
            boot_count: self.boot_count,
            reason: 3,
        })
    }

    fn device(&mut self) -> Result<&mut D, Error> {
        if self.device.is_none() {
            self.device = Some((self.factory)(&self.settings)?);
        }
        Ok(self.device.as_mut().expect("device was just built"))
    }

    fn capabilities(&mut self) -> Result<Capabilities, Error> {
        let info = self.device()?.info();
        let mut caps = capabilities_of(&info, &self.options, self.boot_count);
        caps.output_dim = clamp_u32(self.active_pixels(&info));
        Ok(caps)
    }

    /// Camera values per frame: the active region, within the device's pixels.
    fn active_pixels(&self, info: &DeviceInfo) -> usize {
        self.settings.output_dim.min(info.output_dim)
    }

    /// Handles one encoded frame (bytes between delimiters) and appends the reply's wire bytes
    /// to `out`.
    pub fn handle_frame(&mut self, encoded: &[u8], out: &mut Vec<u8>) {
        let version = self.options.protocol_version;
        let frame = match proto::decode_frame_into(encoded, &mut self.scratch) {
            Ok(f) => f,
            Err(e) => {
                // An intact frame's header (and seq) passed the CRC; a damaged one's did not.
                let seq = e.intact_seq().unwrap_or(0);
                let (code, detail) = match e {
                    DecodeError::UnsupportedVersion { .. } => {
                        (ErrorCode::UNSUPPORTED_VERSION, u32::from(version))
                    }
                    DecodeError::UnknownMessage { message_type, .. } => {
                        (ErrorCode::UNKNOWN_MESSAGE, u32::from(message_type))
                    }
                    DecodeError::Malformed { .. } => (ErrorCode::MALFORMED, 0),
                    _ => {
                        self.stats.bad_frames += 1;
                        (ErrorCode::BAD_FRAME, 0)
                    }
                };
                let mut msg = error(code, detail, e.to_string());
                msg.fit_payload(self.host_max_payload as usize);
                proto::encode_frame_with_version(version, seq, &msg, out);
                return;
            }
        };
        self.stats.frames_received += 1;
        let mut reply = self.reply(frame.message);
        reply.fit_payload(self.host_max_payload as usize);
        proto::encode_frame_with_version(version, frame.seq, &reply, out);
        self.stats.frames_sent += 1;
    }

    fn reply(&mut self, message: Message) -> Message {
        match message {
            Message::Hello(h) => {
                let v = self.options.protocol_version;
                if !(h.min_version..=h.max_version).contains(&v) {
                    return error(
                        ErrorCode::UNSUPPORTED_VERSION,
                        u32::from(v),
                        format!(
                            "device speaks protocol version {v}, host offers {}..={}",
                            h.min_version, h.max_version
                        ),
                    );
                }
                if h.max_payload < proto::MIN_MAX_PAYLOAD {
                    // An empty message: the host may not accept even a short one.
                    return error(
                        ErrorCode::PAYLOAD_TOO_LARGE,
                        proto::MIN_MAX_PAYLOAD,
                        String::new(),
                    );
                }
                self.host_max_payload = h.max_payload.min(self.options.max_payload);
                match self.capabilities() {
                    Ok(c) => {
                        self.session = true;
                        Message::Capabilities(c)
                    }
                    Err(e) => error(ErrorCode::DEVICE_FAULT, 0, e.to_string()),
                }
            }
            Message::GetStatus => Message::Status(Status {
                state: u8::from(self.session),
                boot_count: self.boot_count,
                frames_shown: self.stats.frames_shown,
                bad_frames: u32::try_from(self.stats.bad_frames).unwrap_or(u32::MAX),
            }),
            Message::Configure(c) if self.session => self.configure(c),
            Message::TransformRequest(r) if self.session => self.transform(r),
            Message::Configure(_) | Message::TransformRequest(_) => error(
                ErrorCode::NOT_CONFIGURED,
                self.boot_count,
                "no session: send Hello".to_string(),
            ),
            // A device→host type is no request, with or without a session.
            other => error(
                ErrorCode::UNKNOWN_MESSAGE,
                other.message_type() as u32,
                "message type is not accepted by a device".to_string(),
            ),
        }
    }

    fn configure(&mut self, c: proto::Configure) -> Message {
        let (max_in, max_out) = self.options.max_dims;
        let (input_dim, output_dim, offset) = (
            c.input_dim as usize,
            c.output_dim as usize,
            c.output_offset as usize,
        );
        // Checked in this order; `detail` is the bound the value broke.
        let (bound, problem) = if input_dim == 0 {
            (1, "input_dim 0 is below 1".to_string())
        } else if input_dim > max_in {
            (max_in, format!("input_dim {input_dim} is above {max_in}"))
        } else if output_dim == 0 {
            (1, "output_dim 0 is below 1".to_string())
        } else if output_dim.saturating_add(offset) > max_out {
            let problem =
                format!("output region {offset}+{output_dim} exceeds the {max_out} camera pixels");
            (max_out, problem)
        } else {
            (0, String::new())
        };
        if bound != 0 {
            return error(ErrorCode::DIMENSION_MISMATCH, clamp_u32(bound), problem);
        }
        // 0 keeps the current exposure or gain (the power-on default until one is set).
        let settings = DeviceSettings {
            input_dim,
            output_dim,
            output_offset: offset,
            exposure_ns: match c.exposure_ns {
                0 => self.settings.exposure_ns,
                e => e,
            },
            gain: if c.gain == 0.0 {
                self.settings.gain
            } else {
                c.gain
            },
        };
        let narrows = match (self.device.as_mut(), self.sensor_pixels) {
            (Some(device), Some(pixels))
                if settings.output_dim <= pixels
                    && DeviceSettings {
                        output_dim: self.settings.output_dim,
                        ..settings.clone()
                    } == self.settings =>
            {
                if settings.output_dim != self.settings.output_dim {
                    let window = (settings.output_dim < pixels).then_some(settings.output_dim);
                    match device.set_readout_window(window) {
                        // Without a window of its own the device reads whole frames, and the
                        // emulator sends the region's values.
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::Unsupported => {}
                        Err(e) => return error(ErrorCode::DEVICE_FAULT, 0, e.to_string()),
                    }
                    self.settings.output_dim = settings.output_dim;
                }
                true
            }
            _ => false,
        };
        if narrows {
            // Kept the device: a window of it, or the whole of it again.
        } else if settings == self.settings && self.device.is_some() {
            // The power-on device is the one this Configure would build.
            self.sensor_pixels = Some(settings.output_dim);
        } else {
            match (self.factory)(&settings) {
                Ok(d) => {
                    self.device = Some(d);
                    self.sensor_pixels = Some(settings.output_dim);
                    self.settings = settings;
                }
                Err(e) => {
                    let code = match e.kind() {
                        ErrorKind::DimensionMismatch => ErrorCode::DIMENSION_MISMATCH,
                        ErrorKind::Unsupported | ErrorKind::InvalidInput => ErrorCode::UNSUPPORTED,
                        _ => ErrorCode::DEVICE_FAULT,
                    };
                    return error(code, 0, e.to_string());
                }
            }
        }
        match self.capabilities() {
            Ok(c) => Message::Capabilities(c),
            Err(e) => error(ErrorCode::DEVICE_FAULT, 0, e.to_string()),
        }
    }

    fn transform(&mut self, r: TransformRequest) -> Message {
        let payload_limit = self.host_max_payload;
        let info = match self.device() {
            Ok(d) => d.info(),
            Err(e) => return error(ErrorCode::DEVICE_FAULT, 0, e.to_string()),
        };
        if r.input_dim as usize != info.input_dim {
            return error(
                ErrorCode::DIMENSION_MISMATCH,
                info.input_dim as u32,
                format!(
                    "frames are {} wide, active input_dim is {}",
                    r.input_dim, info.input_dim
                ),
            );
        }
        let frames = r.frame_count as usize;
        if frames > info.max_batch {
            return error(
                ErrorCode::BATCH_TOO_LARGE,
                info.max_batch as u32,
                format!("{frames} frames exceed max_batch {}", info.max_batch),
            );
        }
        let bit_depth = info.bit_depth.unwrap_or(0);
        let active = self.active_pixels(&info);
        let Some(len) = proto::values_len(r.frame_count, active as u32, bit_depth)
            .filter(|&l| l + proto::TRANSFORM_RESPONSE_FIXED <= payload_limit as usize)
        else {
            return error(
                ErrorCode::PAYLOAD_TOO_LARGE,
                payload_limit,
                format!("the response to {frames} frames would exceed {payload_limit} bytes"),
            );
        };
        if let Some(bad) = proto::first_padded_frame(&r.frames, r.frame_count, r.input_dim) {
            return error(
                ErrorCode::INVALID_FRAMES,
                bad,
                format!(
                    "frame {bad} has padding bits set past feature {}",
                    r.input_dim
                ),
            );
        }
        let packed = match PackedFrames::new(&r.frames, frames, info.input_dim) {
            Ok(p) => p,
            Err(e) => return error(ErrorCode::INVALID_FRAMES, 0, e.to_string()),
        };
        self.values.clear();
        self.values.resize(frames * info.output_dim, 0.0);
        let mut values = std::mem::take(&mut self.values);
        let device = self.device.as_mut().expect("device built above");
        let result = device
            .seek_frame(r.first_frame)
            .and_then(|()| device.transform(&packed, &mut values));
        let reply = match result {
            Err(e) => error(ErrorCode::DEVICE_FAULT, 0, e.to_string()),
            Ok(()) => {
                self.stats.frames_shown += frames as u64;
                if active < info.output_dim {
                    // The region's values, frame after frame.
                    for f in 1..frames {
                        let start = f * info.output_dim;
                        values.copy_within(start..start + active, f * active);
                    }
                    values.truncate(frames * active);
                }
                match encode_values(&values, bit_depth, len) {
                    Ok(bytes) => Message::TransformResponse(TransformResponse {
                        first_frame: r.first_frame,
                        frame_count: r.frame_count,
                        output_dim: active as u32,
                        bit_depth,
                        values: bytes,
                    }),
                    Err(msg) => error(ErrorCode::DEVICE_FAULT, 0, msg),
                }
            }
        };
        self.values = values;
        reply
    }

    /// Serves the device on `port` until `stop` is set or the peer closes the link.
    /// Announces power-on with a ResetNotice first. Every read and write waits at most
    /// `poll_interval` before the stop flag is checked again, so a stop request is honoured
    /// within about that time even while the host has stopped reading.
    pub fn serve<T: Transport>(&mut self, port: &mut T, stop: &AtomicBool) -> Result<(), Error> {
        let max_len = proto::max_wire_len(self.options.max_payload as usize + 64);
        let mut deframer = Deframer::new(max_len);
        let mut rx = vec![0u8; 64 << 10];
        let mut out = Vec::new();
        let version = self.options.protocol_version;
        let notice = Message::ResetNotice(ResetNotice {
            boot_count: self.boot_count,
            reason: 0,
        });
        proto::encode_frame_with_version(version, 0, &notice, &mut out);
        if !self.send(port, &mut out, stop)? {
            return Ok(());
        }
        let mut inbound = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            port.set_timeout(self.options.poll_interval)?;
            let n = match port.read(&mut rx) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => {
                    return Err(Error::with_source(
                        ErrorKind::Link,
                        "emulator link failed",
                        e,
                    ))
                }
            };
            let mut input = &rx[..n];
            while let Some(frame) = deframer.next_frame(&mut input) {
                inbound.clear();
                match frame {
                    Ok(bytes) => inbound.extend_from_slice(bytes),
                    // An overlong frame: answer it like any damaged frame.
                    Err(_) => inbound.push(0xFF),
                }
                let mut late = false;
                match self.injector.draw(true) {
                    Some(FaultKind::Reset) => {
                        let notice = self.reset();
                        proto::encode_frame_with_version(version, 0, &notice, &mut out);
                        if !self.send(port, &mut out, stop)? {
                            return Ok(());
                        }
                        continue;
                    }
                    Some(FaultKind::Delay) => late = true,
                    Some(kind) => self.injector.damage(kind, &mut inbound, false),
                    None => {}
                }
                self.handle_frame(&inbound, &mut out);
                if late && !self.pause(self.options.faults.delay_duration, stop) {
                    return Ok(());
                }
                if !self.send(port, &mut out, stop)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Sleeps `duration` unless `stop` is set meanwhile (then returns `false`).
    fn pause(&self, duration: Duration, stop: &AtomicBool) -> bool {
        sleep_unless_stopped(duration, self.options.poll_interval, stop)
    }

    /// Writes the frames in `out` (then clears it), each possibly damaged or delayed, each
    /// given up after `write_timeout` if the host does not read it. Returns `false` once the
    /// peer is gone or `stop` is set.
    fn send<T: Transport>(
        &mut self,
        port: &mut T,
        out: &mut Vec<u8>,
        stop: &AtomicBool,
    ) -> Result<bool, Error> {
        let mut frame = Vec::new();
        let mut rest = &out[..];
        let mut go_on = true;
        while let Some(p) = rest.iter().position(|&b| b == 0) {
            frame.clear();
            frame.extend_from_slice(&rest[..=p]);
            rest = &rest[p + 1..];
            match self.injector.draw(false) {
                Some(FaultKind::Delay) if !self.pause(self.options.faults.delay_duration, stop) => {
                    go_on = false;
                    break;
                }
                Some(FaultKind::Delay) | None => {}
                Some(kind) => self.injector.damage(kind, &mut frame, true),
            }
            if self.need_delimiter {
                // End the partial frame a write timeout left in the host's buffer.
                frame.insert(0, 0);
            }
            let deadline = Instant::now() + self.options.write_timeout;
            let slice = self.options.poll_interval;
            match write_all_until(port, &frame, deadline, slice, Some(stop)) {
                Ok(WriteEnd::Done) => self.need_delimiter = false,
                // A host that stopped reading: the frame is lost, as on a real link.
                Ok(WriteEnd::TimedOut { .. }) => {
                    self.stats.frames_unsent += 1;
                    self.need_delimiter = true;
                }
                Ok(WriteEnd::Stopped { .. }) => {
                    go_on = false;
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    go_on = false;
                    break;
                }
                Err(e) => {
                    return Err(Error::with_source(
                        ErrorKind::Link,
                        "emulator write failed",
                        e,
                    ))
                }
            }
        }
        out.clear();
        Ok(go_on)
    }
}

fn default_settings(options: &EmulatorOptions) -> DeviceSettings {
    DeviceSettings {
        input_dim: options.default_dims.0,
        output_dim: options.default_dims.1,
        output_offset: 0,
        exposure_ns: 0,
        gain: 0.0,
    }
}

fn error(code: ErrorCode, detail: u32, message: String) -> Message {
    Message::Error(ErrorReport {
        code,
        detail,
        message,
    })
}

fn clamp_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn micros_to_ns(us: f64) -> u32 {
    let ns = (us * 1000.0).round();
    if ns.is_finite() && ns >= 0.0 {
        ns.min(u32::MAX as f64) as u32
    } else {
        0
    }
}

/// The capability report of a device with `info`.
pub fn capabilities_of(
    info: &DeviceInfo,
    options: &EmulatorOptions,
    boot_count: u32,
) -> Capabilities {
    Capabilities {
        input_dim: clamp_u32(info.input_dim),
        output_dim: clamp_u32(info.output_dim),
        max_input_dim: clamp_u32(options.max_dims.0),
        max_output_dim: clamp_u32(options.max_dims.1),
        max_batch: clamp_u32(info.max_batch),
        max_payload: options.max_payload,
        frame_time_ns: micros_to_ns(info.frame_time_us),
        exposure_ns: micros_to_ns(info.exposure_us),
        boot_count,
        bit_depth: info.bit_depth.unwrap_or(0),
        firmware_version: options.firmware_version,
        description: info.description.clone(),
    }
}

/// Encodes camera values at `bit_depth` (integers in range for 1..=16 bits, float32 for 0).
fn encode_values(values: &[f32], bit_depth: u8, len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(len);
    match bit_depth {
        0 => {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        1..=16 => {
            let max = ((1u32 << bit_depth) - 1) as f32;
            for (i, &v) in values.iter().enumerate() {
                if !(0.0..=max).contains(&v) || v.fract() != 0.0 {
                    return Err(format!(
                        "camera value {v} at {i} is not an integer count in 0..={max}"
                    ));
                }
                let count = v as u16;
                if bit_depth <= 8 {
                    out.push(count as u8);
                } else {
                    out.extend_from_slice(&count.to_le_bytes());
                }
            }
        }
        _ => return Err(format!("bit depth {bit_depth} cannot be carried")),
    }
    Ok(out)
}

/// A tiny deterministic, replayable device for tests, benchmarks and examples: pixel `j` of
/// frame `t` is `Σ_i x_i·w(i, j) + n(t, j)` with hashed weights `w ∈ 0..4` and hashed noise
/// `n ∈ 0..3`, clipped to the bit depth (or as float32 when `bit_depth` is `None`).
#[derive(Debug, Clone)]
pub struct ToyDevice {
    input_dim: usize,
    output_dim: usize,
    seed: u64,
    bit_depth: Option<u8>,
    max_batch: usize,
    exposure_us: f64,
    frame: u64,
    counters: DeviceCounters,
}

impl ToyDevice {
    /// A toy device with the given dimensions, seed and bit depth (`None` = float32).
    pub fn new(input_dim: usize, output_dim: usize, seed: u64, bit_depth: Option<u8>) -> Self {
        Self {
            input_dim,
            output_dim,
            seed,
            bit_depth,
            max_batch: 4096,
            exposure_us: 400.0,
            frame: 0,
            counters: DeviceCounters::default(),
        }
    }

    /// The same device with an exposure of `exposure_ns` (0 keeps the default, 400 µs), as a
    /// factory builds it from [`DeviceSettings::exposure_ns`]. It changes what the device
    /// reports, not its values.
    pub fn with_exposure_ns(mut self, exposure_ns: u32) -> Self {
        if exposure_ns != 0 {
            self.exposure_us = f64::from(exposure_ns) / 1000.0;
        }
        self
    }
}

fn mix(mut z: u64) -> u64 {
    // SplitMix64 finaliser.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl OpticalDevice for ToyDevice {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            kind: "toy".into(),
            description: format!("toy device, seed {}", self.seed),
            input_dim: self.input_dim,
            output_dim: self.output_dim,
            bit_depth: self.bit_depth,
            frame_time_us: 500.0,
            exposure_us: self.exposure_us,
            max_batch: self.max_batch,
        }
    }

    fn transform(&mut self, input: &PackedFrames<'_>, output: &mut [f32]) -> Result<(), Error> {
        let info = self.info();
        speckle_hal::check_device_buffers(&info, input, output)?;
        let max = info.max_count();
        for f in 0..input.frames() {
            let t = self.frame + f as u64;
            let row = &mut output[f * self.output_dim..(f + 1) * self.output_dim];
            for (j, out) in row.iter_mut().enumerate() {
                let mut acc = 0u64;
                for i in (0..self.input_dim).filter(|&i| input.bit(f, i)) {
                    acc += mix(self.seed ^ mix((i as u64) << 32 | j as u64)) & 3;
                }
                let noise =
                    mix(self.seed.rotate_left(17) ^ mix(t.wrapping_mul(1 << 24) ^ j as u64)) % 3;
                let v = (acc + noise) as f32;
                *out = match self.bit_depth {
                    Some(_) => v.min(max),
                    None => v + 0.25,
                };
            }
        }
        self.frame += input.frames() as u64;
        self.counters.frames += input.frames() as u64;
        self.counters.device_time_s += input.frames() as f64 * info.frame_time_us * 1e-6;
        Ok(())
    }

    fn counters(&self) -> DeviceCounters {
        self.counters
    }

    fn seek_frame(&mut self, index: u64) -> Result<(), Error> {
        self.frame = index;
        Ok(())
    }
}
