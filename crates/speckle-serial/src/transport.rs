//! Byte transports: anything `Read + Write` with a read timeout. A serial port is one; the
//! in-memory [`memory_link`] is another, for tests and benchmarks.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A byte stream to or from a device. `read` waits at most the timeout last set and then
/// returns an error of kind `TimedOut` or `WouldBlock`; `Ok(0)` means the peer is gone.
pub trait Transport: Read + Write {
    /// Sets how long the next reads (and writes, where they can block) wait.
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
