//! Atomic file output: every file speckle writes (checkpoints, trainer states, metrics, plots,
//! sweep results, downloads, `.npy` outputs) goes to a temporary file in the target's folder,
//! is synced to disk, and is renamed over the target, so that a crash or an error leaves either
//! the old file or the new one, never a half-written one.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("out.txt");
//! speckle_runs::atomic::write_atomic(&path, b"first")?;
//! speckle_runs::atomic::write_atomic_with(&path, |w| {
//!     use std::io::Write;
//!     w.write_all(b"second")
//! })?;
//! assert_eq!(std::fs::read(&path)?, b"second");
//! // A failed write leaves the previous contents and no temporary file.
//! let failed = speckle_runs::atomic::write_atomic_with(&path, |_| Err(std::io::Error::other("boom")));
//! assert!(failed.is_err());
//! assert_eq!(std::fs::read(&path)?, b"second");
//! assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
//! // Written once: a second writer finds the file there and leaves it.
//! let manifest = dir.path().join("manifest.json");
//! assert!(speckle_runs::atomic::create_once(&manifest, b"mine")?);
//! assert!(!speckle_runs::atomic::create_once(&manifest, b"theirs")?);
//! assert_eq!(std::fs::read(&manifest)?, b"mine");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary file next to its target that replaces the target on [`AtomicFile::commit`] and
/// is removed if dropped uncommitted. Its name ends with the target's name, so that writers
/// that pick a format from the extension (the PNG encoder) see the same extension.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Prepares a temporary path for `target`. Refuses a target that exists and is not a
    /// regular file (a device node, a FIFO, a folder), which a rename would replace.
    pub fn new(target: &Path) -> io::Result<AtomicFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        if let Ok(meta) = std::fs::metadata(target) {
            if !meta.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} exists and is not a regular file; refusing to replace it",
                        target.display()
                    ),
                ));
            }
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("output path {} names no file", target.display()),
            )
        })?;
        // Unique among the threads of this process (the counter) and among processes of several
        // machines that share the folder (the process id and 64 random bits).
        let random = RandomState::new().build_hasher().finish();
        let mut tmp_name = std::ffi::OsString::from(format!(
            ".tmp-{}-{random:016x}-{}-",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        tmp_name.push(name);
        Ok(AtomicFile {
            tmp: dir.join(tmp_name),
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// The temporary path, for writers that open files themselves.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs the temporary file and renames it over the target.
    pub fn commit(mut self) -> io::Result<()> {
        File::open(&self.tmp)?.sync_all()?;
        std::fs::rename(&self.tmp, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `path` atomically with `write`, which gets a buffered writer on the temporary file.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let file = AtomicFile::new(path)?;
    let mut w = BufWriter::new(File::create(file.path())?);
    write(&mut w)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    file.commit()
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes `bytes` to `path` unless `path` exists, atomically even when several processes (of
/// several machines sharing the folder) try at once: each links its own complete, synced copy
/// into place and only the first succeeds. Returns whether this call wrote the file. On a file
/// system without hard links the last writer wins, still atomically.
pub fn create_once(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let file = AtomicFile::new(path)?;
    {
        let mut f = File::create(file.path())?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    match std::fs::hard_link(file.path(), path) {
        // Dropping `file` removes the temporary name; the linked one stays.
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => file.commit().map(|()| true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_replace_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        #[cfg(unix)]
        {
            let null = Path::new("/dev/null");
            let e = write_atomic(null, b"x").unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
            assert!(!std::fs::metadata(null).unwrap().is_file());
        }
    }

    #[test]
    fn files_get_the_ordinary_permissions() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.txt");
            write_atomic(&path, b"x").unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            // File::create asks for 0666, masked by the umask: never the 0600 of a temp file
            // unless the umask says so.
            let umask = {
                let probe = dir.path().join("probe");
                File::create(&probe).unwrap();
                0o666 & !(std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777)
            };
            assert_eq!(mode, 0o666 & !umask);
        }
    }
}
