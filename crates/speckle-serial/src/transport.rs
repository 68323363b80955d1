//! Byte transports: anything `Read + Write` with a timeout. A serial port is one; the
//! in-memory [`memory_link`] is another, for tests and benchmarks.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A byte stream to or from a device. `read` waits at most the timeout last set and then
/// returns an error of kind `TimedOut` or `WouldBlock`; `Ok(0)` means the peer is gone. `write`
/// likewise waits at most the timeout for room and may write fewer bytes than asked (a serial
/// port whose peer stopped reading is full): a write that cannot block forever is what lets
/// every exchange keep its deadline. Bytes written must be on their way without a `flush`,
/// which the link never calls: on a serial port it waits, with no timeout, until the device has
/// taken every byte (`tcdrain`), which a stalled device never does.
pub trait Transport: Read + Write {
    /// Sets how long the next reads and writes wait.
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()>;

    /// Throws away bytes received but not yet read (called once when a session opens).
    fn clear_input(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        (**self).set_timeout(timeout)
    }
    fn clear_input(&mut self) -> io::Result<()> {
        (**self).clear_input()
    }
}

impl Transport for Box<dyn serialport::SerialPort> {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        serialport::SerialPort::set_timeout(self.as_mut(), timeout).map_err(io::Error::from)
    }
    fn clear_input(&mut self) -> io::Result<()> {
        self.clear(serialport::ClearBuffer::Input)
            .map_err(io::Error::from)
    }
}

#[cfg(unix)]
impl Transport for serialport::TTYPort {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        serialport::SerialPort::set_timeout(self, timeout).map_err(io::Error::from)
    }
    fn clear_input(&mut self) -> io::Result<()> {
        serialport::SerialPort::clear(self, serialport::ClearBuffer::Input).map_err(io::Error::from)
    }
}

#[derive(Default)]
struct Queue {
    bytes: VecDeque<u8>,
    /// The writing end is gone (readers see end of stream once drained).
    writer_gone: bool,
    /// The reading end is gone (writers get `BrokenPipe`).
    reader_gone: bool,
}

#[derive(Default)]
struct Pipe {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves plain bytes behind: still consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One end of an in-memory, full-duplex, unbounded byte link (see [`memory_link`]).
pub struct MemoryPort {
    rx: Arc<Pipe>,
    tx: Arc<Pipe>,
    timeout: Duration,
}

/// Two connected in-memory ports: bytes written to one are read from the other. Dropping an
/// end is a disconnect: the peer reads end of stream and its writes fail with `BrokenPipe`.
pub fn memory_link() -> (MemoryPort, MemoryPort) {
    let a = Arc::new(Pipe::default());
    let b = Arc::new(Pipe::default());
    let timeout = Duration::from_millis(100);
    (
        MemoryPort {
            rx: a.clone(),
            tx: b.clone(),
            timeout,
        },
        MemoryPort {
            rx: b,
            tx: a,
            timeout,
        },
    )
}

impl Read for MemoryPort {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + self.timeout;
        let mut q = self.rx.lock();
        while q.bytes.is_empty() && !q.writer_gone {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
            }
            q = self
                .rx
                .ready
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let n = buf.len().min(q.bytes.len());
        for (dst, src) in buf.iter_mut().zip(q.bytes.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for MemoryPort {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut q = self.tx.lock();
        if q.reader_gone {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "peer closed the link",
            ));
        }
        q.bytes.extend(buf);
        self.tx.ready.notify_all();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemoryPort {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }
    fn clear_input(&mut self) -> io::Result<()> {
        self.rx.lock().bytes.clear();
        Ok(())
    }
}

impl Drop for MemoryPort {
    fn drop(&mut self) {
        self.tx.lock().writer_gone = true;
        self.tx.ready.notify_all();
        self.rx.lock().reader_gone = true;
    }
}

/// How [`write_all_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteEnd {
    /// Every byte was written.
    Done,
    /// The deadline passed first, after `written` bytes (a partial frame when non-zero).
    TimedOut {
        /// Bytes that did go out.
        written: usize,
    },
    /// The stop flag was set first, after `written` bytes.
    Stopped {
        /// Bytes that did go out.
        written: usize,
    },
}

/// Writes all of `buf`, waiting at most `slice` per write call, until `deadline` or until
/// `stop` is set (checked between calls): a peer that stopped reading costs at most the
/// deadline, and a stop request is noticed within one slice.
pub(crate) fn write_all_until<T: Transport + ?Sized>(
    port: &mut T,
    buf: &[u8],
    deadline: Instant,
    slice: Duration,
    stop: Option<&AtomicBool>,
) -> io::Result<WriteEnd> {
    let mut written = 0;
    // No flush: see `Transport`.
    while written < buf.len() {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Ok(WriteEnd::Stopped { written });
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(WriteEnd::TimedOut { written });
        }
        port.set_timeout((deadline - now).min(slice).max(Duration::from_millis(1)))?;
        match port.write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(WriteEnd::Done)
}

/// Sleeps for `duration`, in slices of at most `slice`, returning early (`false`) once `stop`
/// is set.
pub(crate) fn sleep_unless_stopped(duration: Duration, slice: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + duration;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(slice));
    }
}

/// Whether an I/O error only means "nothing arrived in time".
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// A transport that lets `budget` bytes of writes through and then fails every write with
/// `BrokenPipe`, as a device unplugged in the middle of a transfer does: a fault-injection
/// wrapper around any transport (reads pass through unchanged).
#[derive(Debug)]
pub struct UnplugAfter<T> {
    inner: T,
    budget: usize,
}

impl<T: Transport> UnplugAfter<T> {
    /// Wraps `inner`, which goes away after `budget` bytes written.
    pub fn new(inner: T, budget: usize) -> Self {
        Self { inner, budget }
    }
}

impl<T: Transport> Read for UnplugAfter<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<T: Transport> Write for UnplugAfter<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = buf.len().min(self.budget);
        let written = self.inner.write(&buf[..n])?;
        self.budget -= written;
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Transport> Transport for UnplugAfter<T> {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.inner.set_timeout(timeout)
    }
    fn clear_input(&mut self) -> io::Result<()> {
        self.inner.clear_input()
    }
}

/// A transport that freezes in the middle of a transfer, as a device whose firmware stalls
/// does: once `after` bytes have been read through it, it neither reads nor writes for
/// `duration` (each read or write waits out its timeout and reports `TimedOut`, so the peer's
/// writes pile up in the link until they block), then works again. A fault-injection wrapper
/// around any transport.
#[derive(Debug)]
pub struct StallAfter<T> {
    inner: T,
    after: usize,
    duration: Duration,
    timeout: Duration,
    read: usize,
    stall_until: Option<Instant>,
}

impl<T: Transport> StallAfter<T> {
    /// Wraps `inner`, which stalls for `duration` once `after` bytes have been read.
    pub fn new(inner: T, after: usize, duration: Duration) -> Self {
        Self {
            inner,
            after,
            duration,
            timeout: Duration::from_millis(100),
            read: 0,
            stall_until: None,
        }
    }

    /// Whether the stall is on now; waits out one timeout (or the rest of the stall) if so.
    fn stalled(&self) -> bool {
        let Some(until) = self.stall_until else {
            return false;
        };
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(self.timeout));
        true
    }
}

impl<T: Transport> Read for StallAfter<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stalled() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "device stalled"));
        }
        let n = self.inner.read(buf)?;
        self.read += n;
        if self.stall_until.is_none() && self.read >= self.after {
            self.stall_until = Some(Instant::now() + self.duration);
        }
        Ok(n)
    }
}

impl<T: Transport> Write for StallAfter<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stalled() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "device stalled"));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Transport> Transport for StallAfter<T> {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeout = timeout;
        self.inner.set_timeout(timeout)
    }
    fn clear_input(&mut self) -> io::Result<()> {
        self.inner.clear_input()
    }
}

/// Puts a file descriptor (a serial port, a pseudo-terminal) in non-blocking mode, so that a
/// write writes what fits and never blocks past its poll timeout: `serialport` polls for room
/// with the port's timeout, then writes, and a blocking write of more bytes than fit would wait
/// for the peer forever.
#[cfg(unix)]
pub(crate) fn set_nonblocking(fd: std::os::unix::io::RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
