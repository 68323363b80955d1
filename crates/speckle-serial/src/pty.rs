//! A pseudo-terminal that stands in for a device's serial port (unix only), and the loop that
//! `speckle emulate` runs on it.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serialport::{SerialPort, TTYPort};
use speckle_hal::{Error, ErrorKind};

/// A pseudo-terminal pair whose device end is reachable through a symlink. The emulator
/// serves on [`port`](Self::port); hosts open the symlink like a serial port. Dropping it
/// removes the symlink.
pub struct PtyLink {
    master: TTYPort,
    // Held open so that the master never sees a hang-up between two host sessions.
    _device_end: TTYPort,
    link: PathBuf,
    device_path: PathBuf,
}

impl PtyLink {
    /// Creates a pseudo-terminal and the symlink `link` to its device end. An existing `link`
    /// is replaced only if it is a dangling symlink, left by an emulator that was killed (a
    /// pseudo-terminal's device node goes away with its emulator). A link to a live
    /// pseudo-terminal belongs to a running emulator and is refused, as is anything else there.
    pub fn create(link: &Path) -> Result<Self, Error> {
        if let Ok(meta) = std::fs::symlink_metadata(link) {
            let dangling = meta.file_type().is_symlink() && std::fs::metadata(link).is_err();
            if !dangling {
                let shown = link.display();
                let message = match std::fs::read_link(link) {
                    Ok(target) if target.starts_with("/dev/pts") => format!(
                        "{shown} is in use: it links to the live pseudo-terminal {} (another \
                         speckle emulate is serving it); stop that one or use another path",
                        target.display()
                    ),
                    Ok(target) => format!(
                        "{shown} already exists (a link to {}); refusing to replace it",
                        target.display()
                    ),
                    Err(_) => format!("{shown} already exists; refusing to replace it"),
                };
                return Err(Error::new(ErrorKind::InvalidInput, message));
            }
            std::fs::remove_file(link).map_err(|e| {
                Error::with_source(
                    ErrorKind::Io,
                    format!("cannot remove stale link {}", link.display()),
                    e,
                )
            })?;
        }
        let (master, device_end) = TTYPort::pair()
            .map_err(|e| Error::with_source(ErrorKind::Io, "cannot create a pseudo-terminal", e))?;
        // Non-blocking, so that a write to a host that stopped reading waits at most the
        // port's timeout and the emulator can notice a stop request.
        crate::transport::set_nonblocking(std::os::unix::io::AsRawFd::as_raw_fd(&master)).map_err(
            |e| Error::with_source(ErrorKind::Io, "cannot set up the pseudo-terminal", e),
        )?;
        let device_path =
            PathBuf::from(device_end.name().ok_or_else(|| {
                Error::new(ErrorKind::Io, "the pseudo-terminal has no device path")
            })?);
        std::os::unix::fs::symlink(&device_path, link).map_err(|e| {
            Error::with_source(
                ErrorKind::Io,
                format!(
                    "cannot create the link {} → {}",
                    link.display(),
                    device_path.display()
                ),
                e,
            )
        })?;
        Ok(Self {
            master,
            _device_end: device_end,
            link: link.to_path_buf(),
            device_path,
        })
    }

    /// The emulator's end.
    pub fn port(&mut self) -> &mut TTYPort {
        &mut self.master
    }

    /// The symlink hosts open.
    pub fn link(&self) -> &Path {
        &self.link
    }

    /// The pseudo-terminal device the link points to (e.g. `/dev/pts/3`).
    pub fn device_path(&self) -> &Path {
        &self.device_path
    }
}

impl Drop for PtyLink {
    fn drop(&mut self) {
        // Remove the link only if it is still ours.
        if std::fs::read_link(&self.link).is_ok_and(|t| t == self.device_path) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

/// A flag set by SIGINT or SIGTERM (registered once per call).
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, Error> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).map_err(|e| {
            Error::with_source(ErrorKind::Io, "cannot install the signal handler", e)
        })?;
    }
    Ok(flag)
}
