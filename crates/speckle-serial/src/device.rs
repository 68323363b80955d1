//! The host side: [`SerialDevice`], an [`OpticalDevice`] that talks to a device over the
//! speckle protocol and recovers from link faults.

use std::io;
use std::time::{Duration, Instant};

use speckle_hal::{DeviceCounters, DeviceInfo, Error, ErrorKind, OpticalDevice, PackedFrames};
use speckle_protocol::{
    self as proto, Capabilities, Configure, DecodeError, Deframer, ErrorCode, ErrorReport, Hello,
    Message, TransformRequest,
};

use crate::transport::{is_timeout, write_all_until, Transport, WriteEnd};

/// How a [`SerialDevice`] opens and how hard it tries.
#[derive(Debug, Clone)]
pub struct SerialOptions {
    /// Active `(input_dim, output_dim)` to configure, or `None` to keep the device's.
    pub dims: Option<(usize, usize)>,
    /// Camera exposure to configure, in nanoseconds; 0 keeps the device's current exposure.
    /// Sent again after every re-handshake, since a restarted device is back at its defaults.
    pub exposure_ns: u32,
    /// Analog gain factor to configure; 0.0 keeps the device's current gain. Sent again after
    /// every re-handshake.
    pub gain: f32,
    /// How long to wait for an answer before sending the request again (plus
    /// [`per_frame_allowance`](Self::per_frame_allowance) per frame of the request); writing
    /// the request to a device that stopped reading waits as long at most.
    pub response_timeout: Duration,
    /// Extra wait per frame in a transform request.
    pub per_frame_allowance: Duration,
    /// The most time one request may take, every retransmission and re-handshake included
    /// (plus [`per_frame_allowance`](Self::per_frame_allowance) per frame of the request):
    /// past it the call fails with an error that states this bound.
    pub request_timeout: Duration,
    /// Sends of one request after the first, on timeouts or damaged frames.
    pub max_retries: u32,
    /// Times a session may be re-established (after a device reset) within one call.
    pub max_resyncs: u32,
    /// Largest payload the host accepts (told to the device in Hello).
    pub max_payload: u32,
    /// A name for messages (the port path).
    pub name: String,
}

impl Default for SerialOptions {
    fn default() -> Self {
        Self {
            dims: None,
            exposure_ns: 0,
            gain: 0.0,
            response_timeout: Duration::from_millis(1000),
            per_frame_allowance: Duration::from_millis(2),
            request_timeout: Duration::from_secs(10),
            max_retries: 10,
            max_resyncs: 5,
            max_payload: 1 << 20,
            name: "device".into(),
        }
    }
}

impl SerialOptions {
    /// Checks the options once.
    pub fn check(&self) -> Result<(), Error> {
        if self.response_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "response_timeout and request_timeout must be positive",
            ));
        }
        if self.max_payload < proto::MIN_MAX_PAYLOAD {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_payload must be at least {} bytes",
                    proto::MIN_MAX_PAYLOAD
                ),
            ));
        }
        if !(self.gain.is_finite() && self.gain >= 0.0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "gain {} must be positive, or 0 to keep the device's",
                    self.gain
                ),
            ));
        }
        if let Some((i, o)) = self.dims {
            if i == 0 || o == 0 || i > u32::MAX as usize || o > u32::MAX as usize {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("dimensions {i} × {o} must be in 1..=4294967295"),
                ));
            }
        }
        Ok(())
    }
}

/// Traffic counters of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes written, all framing included.
    pub wire_bytes_sent: u64,
    /// Bytes read, all framing and garbage included.
    pub wire_bytes_received: u64,
    /// Useful bytes sent: packed frame bits of transform requests (first sends only).
    pub payload_bytes_sent: u64,
    /// Useful bytes received: camera values of accepted transform responses.
    pub payload_bytes_received: u64,
    /// Requests sent again after a timeout, a damaged frame or a NAK.
    pub retransmissions: u64,
    /// Damaged frames received.
    pub damaged_frames: u64,
    /// Answers that did not arrive in time.
    pub timeouts: u64,
    /// Intact frames ignored because they answered an earlier request.
    pub stale_frames: u64,
    /// Sessions re-established after a device reset.
    pub resyncs: u64,
}

impl LinkStats {
    /// Useful bytes over wire bytes, both directions (1.0 for an idle link).
    pub fn efficiency(&self) -> f64 {
        let wire = self.wire_bytes_sent + self.wire_bytes_received;
        if wire == 0 {
            return 1.0;
        }
        (self.payload_bytes_sent + self.payload_bytes_received) as f64 / wire as f64
    }

    /// The counters accumulated since `earlier`.
    pub fn since(&self, earlier: &LinkStats) -> LinkStats {
        LinkStats {
            wire_bytes_sent: self.wire_bytes_sent - earlier.wire_bytes_sent,
            wire_bytes_received: self.wire_bytes_received - earlier.wire_bytes_received,
            payload_bytes_sent: self.payload_bytes_sent - earlier.payload_bytes_sent,
            payload_bytes_received: self.payload_bytes_received - earlier.payload_bytes_received,
            retransmissions: self.retransmissions - earlier.retransmissions,
            damaged_frames: self.damaged_frames - earlier.damaged_frames,
            timeouts: self.timeouts - earlier.timeouts,
            stale_frames: self.stale_frames - earlier.stale_frames,
            resyncs: self.resyncs - earlier.resyncs,
        }
    }
}

/// Why one exchange did not produce an answer.
enum Failure {
    /// The device restarted or lost its session: re-handshake and retry.
    Reset,
    /// Give up with this error.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fatal(e)
    }
}

enum Event {
    Frame(proto::Frame),
    Damaged,
    /// An intact frame this host cannot use (unknown type, malformed payload), with its seq.
    Unusable {
        seq: u32,
        problem: String,
    },
    Timeout,
}

/// What went wrong with the last attempt of a request.
enum Problem {
    NoAnswer,
    WriteStalled,
    Damaged,
    Nak,
    Restarted,
    Unusable(String),
}

impl Problem {
    fn kind(&self) -> ErrorKind {
        match self {
            Problem::NoAnswer | Problem::WriteStalled => ErrorKind::Timeout,
            Problem::Damaged | Problem::Nak | Problem::Restarted => ErrorKind::Link,
            Problem::Unusable(_) => ErrorKind::Protocol,
        }
    }

    fn describe(&self) -> String {
        match self {
            Problem::NoAnswer => "no answer in time".into(),
            Problem::WriteStalled => {
                "the device stopped reading: the request could not be written in time".into()
            }
            Problem::Damaged => "damaged frames".into(),
            Problem::Nak => "the device received damaged frames".into(),
            Problem::Restarted => "the device restarted".into(),
            Problem::Unusable(p) => format!("intact answers it cannot use: {p}"),
        }
    }
}

/// The time one request may take, every attempt and re-handshake included.
#[derive(Debug, Clone, Copy)]
struct Budget {
    deadline: Instant,
    bound: Duration,
    /// Frames of the request (0 for a handshake or a status request).
    frames: usize,
    what: &'static str,
}

impl Budget {
    fn new(options: &SerialOptions, frames: usize, what: &'static str) -> Self {
        let bound = options.request_timeout
            + options
                .per_frame_allowance
                .saturating_mul(u32::try_from(frames).unwrap_or(u32::MAX));
        Budget {
            deadline: Instant::now() + bound,
            bound,
            frames,
            what,
        }
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// "request of 256 frames", "handshake", ...
    fn describe(&self) -> String {
        if self.frames > 0 {
            format!("request of {} frames", self.frames)
        } else {
            self.what.to_string()
        }
    }
}

/// Accepts a CAPABILITIES that a host can work with.
fn usable_caps(m: &Message) -> Result<(), String> {
    let Message::Capabilities(c) = m else {
        return Err(format!("expected CAPABILITIES, got {:?}", m.message_type()));
    };
    if c.input_dim == 0 || c.output_dim == 0 || c.max_batch == 0 {
        return Err(format!(
            "CAPABILITIES reports {} × {} with max_batch {}",
            c.input_dim, c.output_dim, c.max_batch
        ));
    }
    if c.max_payload < proto::MIN_MAX_PAYLOAD {
        return Err(format!(
            "CAPABILITIES reports max_payload {}, below the protocol's minimum {}",
            c.max_payload,
            proto::MIN_MAX_PAYLOAD
        ));
    }
    Ok(())
}

/// An optical device behind a serial link (or any [`Transport`]) that speaks the speckle
/// protocol (`firmware-interface/PROTOCOL.md`).
///
/// Every answer is matched to its request by sequence number and by the echo of the request's
/// first frame index and frame count, so a result is never a stale or mismatched one. The host
/// keeps the global frame index and sends it with every request, so a device that can replay
/// (the emulated simulator) answers a retried request exactly as the first time.
pub struct SerialDevice<T: Transport> {
    port: T,
    options: SerialOptions,
    caps: Capabilities,
    /// The configured region: `(input_dim, output_dim)`.
    dims: (usize, usize),
    /// The readout window, pixels `0..p` of the region, when one is set.
    window: Option<usize>,
    chunk_frames: usize,
    next_seq: u32,
    next_frame: u64,
    deframer: Deframer,
    rx: Vec<u8>,
    rx_len: usize,
    rx_pos: usize,
    scratch: Vec<u8>,
    wire: Vec<u8>,
    stats: LinkStats,
    counters: DeviceCounters,
}

impl SerialDevice<Box<dyn serialport::SerialPort>> {
    /// Opens the serial port at `path` (`baud` symbols per second; ignored by pseudo-terminals
    /// and USB CDC devices), handshakes, and configures `dims` (`(input_dim, output_dim)`)
    /// when given.
    pub fn open(path: &str, baud: u32, dims: Option<(usize, usize)>) -> Result<Self, Error> {
        let options = SerialOptions {
            dims,
            name: path.to_string(),
            ..SerialOptions::default()
        };
        Self::open_with(path, baud, options)
    }

    /// [`open`](Self::open) with explicit options.
    pub fn open_with(path: &str, baud: u32, options: SerialOptions) -> Result<Self, Error> {
        let cannot_open = |e: serialport::Error| {
            let kind = match e.kind() {
                serialport::ErrorKind::NoDevice => ErrorKind::Link,
                serialport::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
                _ => ErrorKind::Io,
            };
            Error::with_source(kind, format!("cannot open serial port {path}"), e)
        };
        let builder = serialport::new(path, baud).timeout(options.response_timeout);
        // Non-blocking, so that no write waits past its deadline for a device that stopped
        // reading.
        #[cfg(unix)]
        let port: Box<dyn serialport::SerialPort> = {
            let tty = builder.open_native().map_err(cannot_open)?;
            crate::transport::set_nonblocking(std::os::unix::io::AsRawFd::as_raw_fd(&tty))
                .map_err(|e| {
                    Error::with_source(
                        ErrorKind::Io,
                        format!("cannot set up serial port {path}"),
                        e,
                    )
                })?;
            Box::new(tty)
        };
        #[cfg(not(unix))]
        let port = builder.open().map_err(cannot_open)?;
        Self::new(port, options)
    }
}

impl<T: Transport> SerialDevice<T> {
    /// Opens a session over `port`: clears stale input, handshakes, checks the protocol
    /// version, and configures `options.dims`.
    pub fn new(mut port: T, options: SerialOptions) -> Result<Self, Error> {
        options.check()?;
        port.clear_input()
            .map_err(|e| link_error(&options.name, "cannot clear input", e))?;
        let max_wire = proto::max_wire_len(options.max_payload as usize);
        let mut dev = Self {
            port,
            caps: Capabilities {
                input_dim: 0,
                output_dim: 0,
                max_input_dim: 0,
                max_output_dim: 0,
                max_batch: 0,
                max_payload: 0,
                frame_time_ns: 0,
                exposure_ns: 0,
                boot_count: 0,
                bit_depth: 0,
                firmware_version: [0; 3],
                description: String::new(),
            },
            dims: (0, 0),
            window: None,
            chunk_frames: 1,
            next_seq: 1,
            next_frame: 0,
            deframer: Deframer::new(max_wire),
            rx: vec![0; 64 << 10],
            rx_len: 0,
            rx_pos: 0,
            scratch: Vec::new(),
            wire: Vec::new(),
            stats: LinkStats::default(),
            counters: DeviceCounters::default(),
            options,
        };
        let budget = Budget::new(&dev.options, 0, "handshake");
        dev.open_session(&budget, &mut 0)?;
        Ok(dev)
    }

    /// Opens a session (Hello, Configure), saying Hello again each time the device restarts
    /// meanwhile, as long as `resyncs` stays within `max_resyncs`.
    fn open_session(&mut self, budget: &Budget, resyncs: &mut u32) -> Result<(), Error> {
        loop {
            match self.establish(budget) {
                Ok(()) => return Ok(()),
                Err(Failure::Reset) if *resyncs < self.options.max_resyncs => {
                    *resyncs += 1;
                    self.stats.resyncs += 1;
                }
                Err(Failure::Reset) => {
                    return Err(Error::new(
                        ErrorKind::Link,
                        format!(
                            "{}: device restarted {} times during one {}",
                            self.options.name,
                            *resyncs + 1,
                            budget.describe()
                        ),
                    ))
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }

    /// The device's last capability report.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Traffic counters since the device was opened.
    pub fn link_stats(&self) -> LinkStats {
        self.stats
    }

    /// Frames per transform request on the wire (a batch is streamed in requests of this many
    /// frames, limited by the device's `max_batch` and both sides' `max_payload`).
    pub fn chunk_frames(&self) -> usize {
        self.chunk_frames
    }

    /// Global index of the next frame.
    pub fn frame_index(&self) -> u64 {
        self.next_frame
    }

    /// Sets the global index of the next frame (to replay frames on a replaying device).
    pub fn seek_frame(&mut self, index: u64) {
        self.next_frame = index;
    }

    /// Asks the device for its status.
    pub fn status(&mut self) -> Result<proto::Status, Error> {
        let budget = Budget::new(&self.options, 0, "GET_STATUS");
        let accept = |m: &Message| match m {
            Message::Status(_) => Ok(()),
            other => Err(format!("expected STATUS, got {:?}", other.message_type())),
        };
        match self.exchange(&Message::GetStatus, false, Duration::ZERO, &budget, &accept) {
            Ok(Message::Status(s)) => Ok(s),
            Ok(_) => unreachable!("accepted as a STATUS"),
            Err(Failure::Reset) => Err(Error::new(ErrorKind::Link, "device restarted")),
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    /// The transport, e.g. to close it.
    pub fn into_inner(self) -> T {
        self.port
    }

    /// Hello, version check, and Configure when dimensions or camera settings were requested.
    fn establish(&mut self, budget: &Budget) -> Result<(), Failure> {
        let hello = Message::Hello(Hello {
            min_version: proto::PROTOCOL_VERSION,
            max_version: proto::PROTOCOL_VERSION,
            max_payload: self.options.max_payload,
        });
        let Message::Capabilities(caps) =
            self.exchange(&hello, true, Duration::ZERO, budget, &usable_caps)?
        else {
            unreachable!("accepted as a CAPABILITIES")
        };
        let camera = self.options.exposure_ns != 0 || self.options.gain != 0.0;
        let wanted = match self.options.dims {
            Some(dims) => Some(dims),
            // A window is set on a region this host configured (the device then keeps what
            // its pixels read): configure that region first.
            None if self.window.is_some() => Some(self.dims),
            None if camera => Some((caps.input_dim as usize, caps.output_dim as usize)),
            None => None,
        };
        let caps = match wanted {
            None => caps,
            Some((i, o)) => {
                if i > caps.max_input_dim as usize || o > caps.max_output_dim as usize {
                    return Err(Error::new(
                        ErrorKind::DimensionMismatch,
                        format!(
                            "{}: requested {i} inputs × {o} outputs, the device has at most {} × {}",
                            self.options.name, caps.max_input_dim, caps.max_output_dim
                        ),
                    )
                    .into());
                }
                self.configure((i, o), budget)?
            }
        };
        let dims = (caps.input_dim as usize, caps.output_dim as usize);
        if self.dims != (0, 0) && dims != self.dims {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "{}: device came back with {} × {} instead of {} × {}",
                    self.options.name, dims.0, dims.1, self.dims.0, self.dims.1
                ),
            )
            .into());
        }
        self.chunk_frames = self.chunk_for(&caps, dims)?;
        self.dims = dims;
        self.caps = caps;
        if let Some(pixels) = self.window {
            self.configure_window(pixels, budget)?;
        }
        Ok(())
    }

    /// Frames per request: what both sides' payload limits and `max_batch` allow for frames of
    /// `dims.0` features answered with `caps.output_dim` values.
    fn chunk_for(&self, caps: &Capabilities, dims: (usize, usize)) -> Result<usize, Error> {
        // The decoder rejects bit depths the protocol cannot carry.
        let value_size = proto::value_size(caps.bit_depth).unwrap_or(4);
        let payload = caps.max_payload.min(self.options.max_payload) as usize;
        let in_bytes = dims.0.div_ceil(8);
        let out_bytes = (caps.output_dim as usize).saturating_mul(value_size);
        let by_request = payload.saturating_sub(proto::TRANSFORM_REQUEST_FIXED) / in_bytes;
        let by_response = payload.saturating_sub(proto::TRANSFORM_RESPONSE_FIXED) / out_bytes;
        let chunk = by_request.min(by_response).min(caps.max_batch as usize);
        if chunk == 0 {
            return Err(Error::new(
                ErrorKind::DimensionMismatch,
                format!(
                    "{}: one frame ({in_bytes} bytes in, {out_bytes} bytes out) exceeds the {payload}-byte payload limit",
                    self.options.name
                ),
            ));
        }
        Ok(chunk)
    }

    /// Sends Configure for `(input_dim, output_dim)` from pixel 0 with the host's camera
    /// settings, and returns the device's report of exactly those dimensions.
    fn configure(
        &mut self,
        dims: (usize, usize),
        budget: &Budget,
    ) -> Result<Capabilities, Failure> {
        let (i, o) = dims;
        let configure = Message::Configure(Configure {
            input_dim: i as u32,
            output_dim: o as u32,
            output_offset: 0,
            exposure_ns: self.options.exposure_ns,
            gain: self.options.gain,
        });
        let accept = |m: &Message| {
            usable_caps(m)?;
            match m {
                Message::Capabilities(c)
                    if (c.input_dim as usize, c.output_dim as usize) != (i, o) =>
                {
                    Err(format!(
                        "configured {i} × {o} but the device reports {} × {}",
                        c.input_dim, c.output_dim
                    ))
                }
                _ => Ok(()),
            }
        };
        match self.exchange(&configure, false, Duration::ZERO, budget, &accept)? {
            Message::Capabilities(c) => Ok(c),
            _ => unreachable!("accepted as a CAPABILITIES"),
        }
    }

    /// Configures the output region `0..pixels` of the configured region (the whole of it when
    /// `pixels` is its `output_dim`), keeping the input width and camera settings: a camera's
    /// region of interest.
    fn configure_window(&mut self, pixels: usize, budget: &Budget) -> Result<(), Failure> {
        let caps = self.configure((self.dims.0, pixels), budget)?;
        self.chunk_frames = self.chunk_for(&caps, self.dims)?;
        self.caps = caps;
        Ok(())
    }

    /// Camera values per frame on the wire: the window's, or the region's.
    fn wire_pixels(&self) -> usize {
        self.window.unwrap_or(self.dims.1)
    }

    /// Writes the request (after a lone delimiter when `resync`), giving up at `deadline`.
    /// Returns whether it all went out: a device that stopped reading leaves it unsent, which
    /// is retried like a lost frame.
    fn send(&mut self, resync: bool, deadline: Instant) -> Result<bool, Error> {
        let slice = self.options.response_timeout;
        let mut bytes = Vec::new();
        let wire: &[u8] = if resync {
            // A lone delimiter ends whatever partial frame the device holds.
            bytes.reserve(self.wire.len() + 1);
            bytes.push(0);
            bytes.extend_from_slice(&self.wire);
            &bytes
        } else {
            &self.wire
        };
        let end = write_all_until(&mut self.port, wire, deadline, slice, None)
            .map_err(|e| link_error(&self.options.name, "write failed", e))?;
        let written = match end {
            WriteEnd::Done => wire.len(),
            WriteEnd::TimedOut { written } | WriteEnd::Stopped { written } => written,
        };
        self.stats.wire_bytes_sent += written as u64;
        Ok(end == WriteEnd::Done)
    }

    /// Reads until a frame, a damaged frame, or `deadline`.
    fn read_event(&mut self, deadline: Instant) -> Result<Event, Error> {
        loop {
            let mut input = &self.rx[self.rx_pos..self.rx_len];
            let before = input.len();
            let found = self.deframer.next_frame(&mut input).map(|r| match r {
                Ok(bytes) => proto::decode_frame_into(bytes, &mut self.scratch),
                Err(_) => Err(DecodeError::TooShort { len: 0 }),
            });
            self.rx_pos += before - input.len();
            match found {
                Some(Ok(frame)) => return Ok(Event::Frame(frame)),
                Some(Err(DecodeError::UnsupportedVersion { version, .. })) => {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        format!(
                            "{}: device speaks protocol version {version}, this host speaks version {}",
                            self.options.name,
                            proto::PROTOCOL_VERSION
                        ),
                    ))
                }
                Some(Err(e)) => {
                    if let Some(seq) = e.intact_seq() {
                        return Ok(Event::Unusable {
                            seq,
                            problem: e.to_string(),
                        });
                    }
                    self.stats.damaged_frames += 1;
                    return Ok(Event::Damaged);
                }
                None => {}
            }
            self.rx_pos = 0;
            self.rx_len = 0;
            let now = Instant::now();
            if now >= deadline {
                return Ok(Event::Timeout);
            }
            let name = &self.options.name;
            self.port
                .set_timeout((deadline - now).max(Duration::from_millis(1)))
                .map_err(|e| link_error(name, "cannot set timeout", e))?;
            match self.port.read(&mut self.rx) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::Link,
                        format!(
                            "{}: link closed by the device (disconnected?)",
                            self.options.name
                        ),
                    ))
                }
                Ok(n) => {
                    self.rx_len = n;
                    self.stats.wire_bytes_received += n as u64;
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(link_error(&self.options.name, "read failed", e)),
            }
        }
    }

    /// Sends `message` as a new request and waits for an answer that `accept` takes, sending
    /// it again after a timeout, a damaged frame, a NAK or an intact answer it cannot use, at
    /// most `max_retries` times and never past the budget. A device Error answer becomes a
    /// typed error; a lost session becomes [`Failure::Reset`] (ignored during Hello, which is
    /// what re-opens a session).
    fn exchange(
        &mut self,
        message: &Message,
        is_hello: bool,
        extra_wait: Duration,
        budget: &Budget,
        accept: &dyn Fn(&Message) -> Result<(), String>,
    ) -> Result<Message, Failure> {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.wire.clear();
        proto::encode_frame(seq, message, &mut self.wire);
        let wait = self.options.response_timeout + extra_wait;
        let mut problem = Problem::NoAnswer;
        for attempt in 0..=self.options.max_retries {
            if budget.expired() {
                break;
            }
            if attempt > 0 {
                self.stats.retransmissions += 1;
            }
            let write_deadline = (Instant::now() + wait).min(budget.deadline);
            if !self.send(attempt > 0, write_deadline)? {
                self.stats.timeouts += 1;
                problem = Problem::WriteStalled;
                continue;
            }
            let attempt_deadline = (Instant::now() + wait).min(budget.deadline);
            problem = loop {
                match self.read_event(attempt_deadline)? {
                    Event::Timeout => {
                        self.stats.timeouts += 1;
                        self.deframer.reset();
                        break Problem::NoAnswer;
                    }
                    Event::Damaged => break Problem::Damaged,
                    Event::Unusable { seq: s, problem } if s == seq => {
                        break Problem::Unusable(problem)
                    }
                    Event::Unusable { .. } => self.stats.stale_frames += 1,
                    Event::Frame(frame) => match frame.message {
                        Message::Error(ErrorReport { code, .. })
                            if code == ErrorCode::BAD_FRAME =>
                        {
                            break Problem::Nak
                        }
                        Message::ResetNotice(_) if !is_hello => return Err(Failure::Reset),
                        // The device restarted, maybe on this very Hello: say it again now.
                        Message::ResetNotice(_) => break Problem::Restarted,
                        Message::Error(e) if frame.seq == seq => {
                            if e.code == ErrorCode::NOT_CONFIGURED && !is_hello {
                                return Err(Failure::Reset);
                            }
                            return Err(Failure::Fatal(device_error(&self.options.name, &e)));
                        }
                        m if frame.seq == seq => match accept(&m) {
                            Ok(()) => return Ok(m),
                            Err(p) => break Problem::Unusable(p),
                        },
                        _ => self.stats.stale_frames += 1,
                    },
                }
            };
        }
        let name = &self.options.name;
        let message = if budget.expired() {
            format!(
                "{name}: device did not answer within {:.1} s ({}); last problem: {}",
                budget.bound.as_secs_f64(),
                budget.describe(),
                problem.describe()
            )
        } else {
            format!(
                "{name}: no valid answer after {} attempts ({})",
                self.options.max_retries + 1,
                problem.describe()
            )
        };
        Err(Failure::Fatal(Error::new(problem.kind(), message)))
    }

    /// One request of at most `chunk_frames` frames, re-establishing the session after resets.
    fn transform_chunk(
        &mut self,
        frames: &PackedFrames<'_>,
        first_frame: u64,
        output: &mut [f32],
    ) -> Result<(), Error> {
        let n = frames.frames();
        let budget = Budget::new(&self.options, n, "TRANSFORM_REQUEST");
        let request = Message::TransformRequest(TransformRequest {
            first_frame,
            frame_count: n as u32,
            input_dim: self.dims.0 as u32,
            frames: frames.as_bytes().to_vec(),
        });
        let extra = self.options.per_frame_allowance * n as u32;
        let mut resyncs = 0;
        loop {
            // Read inside the loop: a re-handshake may bring another bit depth.
            let (output_dim, bit_depth) = (self.wire_pixels(), self.caps.bit_depth);
            let accept = |m: &Message| {
                match m {
                Message::TransformResponse(r)
                    if r.first_frame != first_frame
                        || r.frame_count as usize != n
                        || r.output_dim as usize != output_dim
                        || r.bit_depth != bit_depth =>
                {
                    Err(format!(
                        "the answer to frames {first_frame}+{n} ({output_dim} values, {bit_depth} bits) \
                         echoes frames {}+{} ({} values, {} bits)",
                        r.first_frame, r.frame_count, r.output_dim, r.bit_depth
                    ))
                }
                Message::TransformResponse(_) => Ok(()),
                other => Err(format!(
                    "expected TRANSFORM_RESPONSE, got {:?}",
                    other.message_type()
                )),
            }
            };
            match self.exchange(&request, false, extra, &budget, &accept) {
                Ok(Message::TransformResponse(r)) => {
                    let region = self.dims.1;
                    if output_dim == region {
                        decode_values(&r.values, r.bit_depth, output);
                    } else {
                        // A window: its values, then zeros to the end of each frame's row.
                        let frame_bytes = r.values.len() / n;
                        for (row, values) in output
                            .chunks_exact_mut(region)
                            .zip(r.values.chunks_exact(frame_bytes))
                        {
                            let (inside, past) = row.split_at_mut(output_dim);
                            decode_values(values, r.bit_depth, inside);
                            past.fill(0.0);
                        }
                    }
                    self.stats.payload_bytes_sent += frames.as_bytes().len() as u64;
                    self.stats.payload_bytes_received += r.values.len() as u64;
                    return Ok(());
                }
                Ok(_) => unreachable!("accepted as a TRANSFORM_RESPONSE"),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Reset) => {
                    if resyncs >= self.options.max_resyncs {
                        return Err(Error::new(
                            ErrorKind::Link,
                            format!(
                                "{}: device restarted {} times during one {}",
                                self.options.name,
                                resyncs + 1,
                                budget.describe()
                            ),
                        ));
                    }
                    resyncs += 1;
                    self.stats.resyncs += 1;
                    self.open_session(&budget, &mut resyncs)?;
                }
            }
        }
    }
}

impl<T: Transport> OpticalDevice for SerialDevice<T> {
    fn info(&self) -> DeviceInfo {
        let [a, b, c] = self.caps.firmware_version;
        DeviceInfo {
            kind: "serial".into(),
            description: format!(
                "{} (firmware {a}.{b}.{c}, protocol v{}, {})",
                self.caps.description,
                proto::PROTOCOL_VERSION,
                self.options.name
            ),
            input_dim: self.dims.0,
            output_dim: self.dims.1,
            bit_depth: match self.caps.bit_depth {
                0 => None,
                b => Some(b),
            },
            frame_time_us: f64::from(self.caps.frame_time_ns) / 1000.0,
            exposure_us: f64::from(self.caps.exposure_ns) / 1000.0,
            max_batch: self.caps.max_batch as usize,
        }
    }

    fn transform(&mut self, input: &PackedFrames<'_>, output: &mut [f32]) -> Result<(), Error> {
        let info = self.info();
        speckle_hal::check_device_buffers(&info, input, output)?;
        let out_dim = self.dims.1;
        let mut start = 0;
        while start < input.frames() {
            let n = self.chunk_frames.min(input.frames() - start);
            let first = self.next_frame + start as u64;
            self.transform_chunk(
                &input.slice(start, n),
                first,
                &mut output[start * out_dim..(start + n) * out_dim],
            )?;
            start += n;
        }
        let frames = input.frames() as u64;
        self.next_frame += frames;
        self.counters.frames += frames;
        self.counters.device_time_s += frames as f64 * info.frame_time_us * 1e-6;
        Ok(())
    }

    fn counters(&self) -> DeviceCounters {
        self.counters
    }

    /// The host owns the frame clock: the next request carries `index` as its first frame.
    fn seek_frame(&mut self, index: u64) -> Result<(), Error> {
        self.next_frame = index;
        Ok(())
    }

    /// Configures the output region `0..pixels` (a camera's region of interest: section 6.3 of
    /// the protocol), so that each frame's answer carries only those values; `None`
    /// configures the whole region again. A device that refuses the region (`UNSUPPORTED` or
    /// `DIMENSION_MISMATCH`) gives [`ErrorKind::Unsupported`] and keeps reading whole frames.
    fn set_readout_window(&mut self, pixels: Option<usize>) -> Result<(), Error> {
        let region = self.dims.1;
        let window = match pixels {
            Some(p) if p == 0 || p > region => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("readout window of {p} pixels: the device reads 1..={region} pixels"),
                ))
            }
            Some(p) if p < region => Some(p),
            _ => None,
        };
        if window == self.window {
            return Ok(());
        }
        let wanted = window.unwrap_or(region);
        let previous = self.window;
        self.window = window;
        let budget = Budget::new(&self.options, 0, "CONFIGURE");
        let mut resyncs = 0;
        let result = match self.configure_window(wanted, &budget) {
            Ok(()) => Ok(()),
            // A restarted device lost its configuration: the new session sets the window.
            Err(Failure::Reset) => {
                self.stats.resyncs += 1;
                self.open_session(&budget, &mut resyncs)
            }
            Err(Failure::Fatal(e)) => Err(e),
        };
        result.map_err(|e| {
            self.window = previous;
            match e.kind() {
                ErrorKind::Unsupported | ErrorKind::DimensionMismatch => Error::new(
                    ErrorKind::Unsupported,
                    format!("no readout window of {wanted} pixels: {e}"),
                ),
                _ => e,
            }
        })
    }
}

fn decode_values(values: &[u8], bit_depth: u8, output: &mut [f32]) {
    match bit_depth {
        0 => {
            for (o, b) in output.iter_mut().zip(values.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        1..=8 => {
            for (o, &b) in output.iter_mut().zip(values) {
                *o = f32::from(b);
            }
        }
        _ => {
            for (o, b) in output.iter_mut().zip(values.chunks_exact(2)) {
                *o = f32::from(u16::from_le_bytes([b[0], b[1]]));
            }
        }
    }
}

fn link_error(name: &str, what: &str, e: io::Error) -> Error {
    let kind = if is_timeout(&e) {
        ErrorKind::Timeout
    } else {
        ErrorKind::Link
    };
    Error::with_source(kind, format!("{name}: {what}"), e)
}

fn device_error(name: &str, e: &ErrorReport) -> Error {
    let kind = match e.code {
        ErrorCode::DIMENSION_MISMATCH => ErrorKind::DimensionMismatch,
        ErrorCode::UNSUPPORTED => ErrorKind::Unsupported,
        ErrorCode::INVALID_FRAMES => ErrorKind::InvalidInput,
        ErrorCode::DEVICE_FAULT => ErrorKind::Device,
        _ => ErrorKind::Protocol,
    };
    let detail = if e.message.is_empty() {
        String::new()
    } else {
        format!(": {}", e.message.replace('\n', " "))
    };
    Error::new(
        kind,
        format!(
            "{name}: device error {} ({}){detail}",
            e.code.0,
            e.code.name()
        ),
    )
}
