use std::fmt;

/// The small set of error categories a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input is invalid: wrong buffer length, non-binary frame, non-finite value.
    InvalidInput,
    /// The request does not fit the device: more features or outputs than it has.
    DimensionMismatch,
    /// The device or projector cannot do what was asked (a mode or setting it lacks).
    Unsupported,
    /// Calibration failed or is missing.
    Calibration,
    /// No answer in the allotted time.
    Timeout,
    /// The link to the device failed (disconnect, unrecoverable corruption).
    Link,
    /// The device speaks an incompatible or malformed protocol.
    Protocol,
    /// The device reported a fault of its own.
    Device,
    /// An operating-system I/O error.
    Io,
    /// Anything else.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::DimensionMismatch => "dimension mismatch",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Calibration => "calibration",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Link => "link",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Device => "device",
            ErrorKind::Io => "I/O",
            ErrorKind::Other => "other",
        };
        f.write_str(s)
    }
}

/// The error of every HAL method: a [`kind`](Error::kind), a one-line message, and an optional
/// cause.
///
/// Its `Display` is the whole story on one line, `message: cause`, and
/// [`std::error::Error::source`] is `None`: a printer that walks the chain of causes (anyhow's
/// `{:#}`) then names each clause once. The cause stays reachable with [`Error::cause`].
///
/// ```
/// use speckle_hal::{Error, ErrorKind};
///
/// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
/// let e = Error::with_source(ErrorKind::Io, "cannot read x.toml", io);
/// assert_eq!(e.to_string(), "cannot read x.toml: no such file");
/// assert!(std::error::Error::source(&e).is_none());
/// assert_eq!(e.cause().unwrap().to_string(), "no such file");
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a one-line message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of `kind` with a message and an underlying cause.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The category of the error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying cause, if any (already part of the `Display` text).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

/// No `source()`: the cause is already in the `Display` text (see [`Error`]).
impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::UnexpectedEof => ErrorKind::Link,
            _ => ErrorKind::Io,
        };
        Error::with_source(kind, "I/O error", e)
    }
}
