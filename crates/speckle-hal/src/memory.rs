//! Memory requests checked before they are made.
//!
//! A size that comes from the outside (a `.npy` header, `--out-dim`, `--batch`, a run config's
//! hidden widths, a device config's matrix budget) is turned into bytes with checked arithmetic
//! and compared with [`limit`] before anything is allocated, so that an absurd request is a
//! one-line error naming the size, not an abort (exit 134) or minutes of swapping.
//!
//! The limit is the machine's physical memory (`MemTotal` of `/proc/meminfo`, or the cgroup's
//! `memory.max` when lower), or `SPECKLE_MEMORY_LIMIT` when set (bytes, or a number with a
//! `K`, `M`, `G` or `T` suffix in powers of 1024). It bounds each request on its own.
//!
//! ```
//! use speckle_hal::memory::{self, Request};
//!
//! // 2^20 × 2^20 float32 weights: refused whatever the machine, and nothing is allocated.
//! let r = Request::new("model.hidden = [1048576, 1048576]", "its 1048576 × 1048576 weight matrix")
//!     .times(1 << 20)
//!     .times(1 << 20)
//!     .of(4);
//! let e = r.check_within(64 << 30).unwrap_err();
//! assert_eq!(
//!     e.to_string(),
//!     "model.hidden = [1048576, 1048576]: its 1048576 × 1048576 weight matrix would need 4 TiB \
//!      (1048576 × 1048576 × 4 bytes), more than the 64 GiB memory limit"
//! );
//! assert!(Request::new("x", "a small buffer").times(1000).of(4).check_within(64 << 30).is_ok());
//! // A product that overflows 64 bits is refused too.
//! assert!(Request::new("x", "y").times(u64::MAX).times(2).of(1).check().is_err());
//! assert_eq!(memory::format_bytes(3 << 20), "3 MiB");
//! ```
use crate::{Error, ErrorKind};

/// Environment variable that sets the memory limit (see the module documentation).
pub const LIMIT_ENV: &str = "SPECKLE_MEMORY_LIMIT";

/// The limit when the machine's memory cannot be read (not Linux): 64 GiB.
pub const FALLBACK_LIMIT: u64 = 64 << 30;

/// The most bytes one request may ask for: `SPECKLE_MEMORY_LIMIT` if set and valid, else the
/// physical memory (the cgroup's limit when lower), else [`FALLBACK_LIMIT`].
pub fn limit() -> u64 {
    if let Some(v) = std::env::var(LIMIT_ENV).ok().and_then(|s| parse_size(&s)) {
        return v;
    }
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total(&t));
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    match (physical, cgroup) {
        (Some(p), Some(c)) => p.min(c),
        (Some(p), None) => p,
        (None, Some(c)) => c,
        (None, None) => FALLBACK_LIMIT,
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses `123`, `512M`, `16G`, `1.5T` (powers of 1024; an optional `iB` or `B` after the
/// letter). `None` for anything else or zero.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let body = s
        .strip_suffix("iB")
        .or_else(|| s.strip_suffix('B'))
        .unwrap_or(s);
    let (number, shift) = match body.chars().last()? {
        'K' | 'k' => (&body[..body.len() - 1], 10),
        'M' | 'm' => (&body[..body.len() - 1], 20),
        'G' | 'g' => (&body[..body.len() - 1], 30),
        'T' | 't' => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let v: f64 = number.trim().parse().ok()?;
    let bytes = v * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `bytes` in the largest binary unit that keeps a number ≥ 1, with one decimal below 10
/// (`512 bytes`, `3.8 TiB`, `4 TiB`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    let rounded = (v * 10.0).round() / 10.0;
    if rounded < 10.0 && rounded.fract() != 0.0 {
        format!("{rounded:.1} {unit}")
    } else {
        format!("{} {unit}", v.round())
    }
}

/// A memory request: what asks (`subject`, e.g. `--out-dim 4000000000`), for what (`what`,
/// e.g. `the output`), and its size as a product of counts times an element size.
#[derive(Debug, Clone)]
pub struct Request {
    subject: String,
    what: String,
    factors: Vec<u64>,
    element_bytes: u64,
}

impl Request {
    /// A request of `subject` for `what`, of no size yet.
    pub fn new(subject: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            what: what.into(),
            factors: Vec::new(),
            element_bytes: 1,
        }
    }

    /// Multiplies the size by a count (rows, columns, a batch).
    pub fn times(mut self, count: impl TryInto<u64>) -> Self {
        self.factors.push(count.try_into().unwrap_or(u64::MAX));
        self
    }

    /// Sets the size of one element in bytes.
    pub fn of(mut self, element_bytes: u64) -> Self {
        self.element_bytes = element_bytes;
        self
    }

    /// The bytes asked for; `None` when the product overflows 64 bits.
    pub fn bytes(&self) -> Option<u64> {
        self.factors
            .iter()
            .try_fold(self.element_bytes, |acc, &f| acc.checked_mul(f))
    }

    /// Checks the request against [`limit`].
    pub fn check(&self) -> Result<(), Error> {
        self.check_within(limit())
    }

    /// Checks the request against `limit` bytes: an error of kind
    /// [`ErrorKind::InvalidInput`] naming the subject, the size and the limit when it exceeds it.
    pub fn check_within(&self, limit: u64) -> Result<(), Error> {
        match self.excess(limit) {
            None => Ok(()),
            Some(why) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{}: {why}", self.subject),
            )),
        }
    }

    /// Why the request exceeds `limit` (`WHAT would need SIZE (A × B × E bytes), more than the
    /// L memory limit`), without the subject; `None` when it fits.
    pub fn excess(&self, limit: u64) -> Option<String> {
        let size = match self.bytes() {
            Some(b) if b <= limit => return None,
            Some(b) => format_bytes(b),
            None => "more than 16 EiB".to_string(),
        };
        let mut product: Vec<String> = self.factors.iter().map(u64::to_string).collect();
        product.push(match self.element_bytes {
            1 => "1 byte".to_string(),
            b => format!("{b} bytes"),
        });
        Some(format!(
            "{} would need {size} ({}), more than the {} memory limit",
            self.what,
            product.join(" × "),
            format_bytes(limit)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_format_and_parse() {
        assert_eq!(format_bytes(0), "0 bytes");
        assert_eq!(format_bytes(1023), "1023 bytes");
        assert_eq!(format_bytes(1024), "1 KiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(128_000_000_000), "119 GiB");
        assert_eq!(format_bytes(4_000_000_000_000), "3.6 TiB");
        assert_eq!(format_bytes(u64::MAX), "16 EiB");
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1.5T"), Some(3 << 39));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("0"), None);
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_576_000 * 1024));
    }

    #[test]
    fn the_limit_is_positive() {
        assert!(limit() > 0);
    }

    #[test]
    fn requests_name_the_size_and_the_product() {
        let e = Request::new("--out-dim 4000000000", "the output")
            .times(8)
            .times(4_000_000_000u64)
            .of(4)
            .check_within(16 << 30)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            "--out-dim 4000000000: the output would need 119 GiB (8 × 4000000000 × 4 bytes), \
             more than the 16 GiB memory limit"
        );
        let e = Request::new("a", "b")
            .times(usize::MAX)
            .times(4usize)
            .check_within(1 << 30)
            .unwrap_err();
        assert!(e.to_string().contains("more than 16 EiB"), "{e}");
    }
}
