//! Exclusive use of a folder by one process: `DIR/.lock`, locked with `flock(2)` for as long as
//! the [`DirLock`] lives. The kernel releases the lock when the process ends, however it ends
//! (`kill -9` included), so a lock is never stale; the file itself stays (empty but for the pid
//! of the last holder) and is ignored by every check of a folder's contents. On a file system
//! without locks (`ENOLCK`, some network file systems) the folder is used unlocked.
//!
//! ```
//! use speckle_runs::lock::DirLock;
//!
//! let dir = tempfile::tempdir()?;
//! let held = DirLock::acquire(dir.path())?;
//! // A second holder, in this process or another, is refused at once.
//! let e = DirLock::acquire(dir.path()).unwrap_err();
//! assert!(e.to_string().contains("is in use by another speckle process"), "{e}");
//! drop(held);
//! DirLock::acquire(dir.path())?;
//! # Ok::<(), std::io::Error>(())
//! ```
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file in a locked folder.
pub const LOCK_FILE: &str = ".lock";

/// A held lock on a folder; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (which must exist), or fails at once with an error of kind `WouldBlock`
    /// naming the holder's pid when another process (or another `DirLock` of this one) holds it.
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot lock {}: {e}", dir.display())))?;
        if !try_lock(&file)? {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let pid = holder.trim();
            let who = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is in use by another speckle process{who}; wait for it to finish or stop it",
                    dir.display()
                ),
            ));
        }
        // The holder's pid, for the message above (the lock does not depend on it).
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<bool> {
    use rustix::fs::{flock, FlockOperation};
    use rustix::io::Errno;
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == Errno::WOULDBLOCK => Ok(false),
        // A file system without locks (some network file systems): the folder is used unlocked,
        // as before locks existed, rather than refused.
        Err(e) if e == Errno::NOLCK || e == Errno::OPNOTSUPP || e == Errno::NOSYS => Ok(true),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Without `flock(2)` folders are not locked.
#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<bool> {
    Ok(true)
}
