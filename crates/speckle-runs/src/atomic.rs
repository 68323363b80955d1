//! Atomic file output: every file speckle writes (checkpoints, trainer states, metrics, plots,
//! sweep results, downloads, `.npy` outputs) goes to a temporary file in the target's folder,
//! is synced to disk, and is renamed over the target, so that a crash or an error leaves either
//! the old file or the new one, never a half-written one.
//!
//! Safety around that rule:
//!
//! * a target that exists and is not a regular file (a device node, a FIFO, a folder) is refused,
//!   never replaced; a symbolic link to a regular file is written through (its target is
//!   replaced, the link stays);
//! * [`refuse_same_file`] refuses an output that is one of the command's inputs;
//! * files get the ordinary permissions (`File::create`: 0666 masked by the umask);
//! * every temporary path is registered while it lives: [`install_signal_cleanup`] removes them
//!   on SIGINT, SIGTERM or SIGHUP before exiting with 128 + the signal (130, 143, 129);
//! * temporary files are named `.tmp-<pid>-...`: those of processes no longer running on this
//!   machine are removed (when an hour old, since a folder may be shared with other machines;
//!   at once in the folder of a run that holds its lock).
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
use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Prefix of every temporary file name: `.tmp-<pid>-`.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Age after which a temporary file of a process that is not running on this machine is
/// removed from a folder that is not locked (a folder shared with other machines may hold
/// their live temporary files, whose pids mean nothing here).
pub const STALE_AGE: Duration = Duration::from_secs(3600);

/// Passes of the signal handler over the registered paths, and the pause between them.
#[cfg(unix)]
const CLEANUP_PASSES: usize = 3;
#[cfg(unix)]
const CLEANUP_PAUSE: Duration = Duration::from_millis(25);

/// Temporary paths (files or folders) alive now, removed by the signal handler.
fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    static LIVE: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Registers a temporary path (file or folder) to be removed if the process is interrupted
/// (see [`install_signal_cleanup`]).
pub fn register_temp(path: &Path) {
    live().push(path.to_path_buf());
}

/// Forgets a path registered with [`register_temp`] (renamed into place, or removed).
pub fn unregister_temp(path: &Path) {
    let mut live = live();
    if let Some(i) = live.iter().rposition(|p| p == path) {
        live.swap_remove(i);
    }
}

/// The temporary paths registered now.
pub fn registered_temps() -> Vec<PathBuf> {
    live().clone()
}

fn remove_path(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Installs (once) a handler of SIGINT, SIGTERM and SIGHUP that removes every registered
/// temporary path and exits with 128 + the signal number (130, 143, 129). For commands that
/// write files; a command with its own graceful stop (the emulator) does not install it.
pub fn install_signal_cleanup() -> io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::Builder::new()
            .name("speckle-signal-cleanup".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    // Held until exit: no new temporary file can be registered meanwhile.
                    let live = live();
                    // Other threads keep running until the exit: a file registered but not yet
                    // created, or written into a temporary folder being removed, may appear
                    // after a pass. Later registrations first (files inside a folder before
                    // it), and again after a pause.
                    for pass in 0..CLEANUP_PASSES {
                        if pass > 0 {
                            std::thread::sleep(CLEANUP_PAUSE);
                        }
                        for p in live.iter().rev() {
                            remove_path(p);
                        }
                    }
                    std::process::exit(128 + sig);
                }
            })?;
    }
    let _ = INSTALLED.set(());
    Ok(())
}

/// The pid in a temporary name `.tmp-<pid>-...` (also `.checkpoint.tmp-<pid>`).
pub fn temp_owner(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(TEMP_PREFIX)
        .or_else(|| name.strip_prefix(".checkpoint.tmp-"))?;
    let digits = rest.split('-').next()?;
    digits.parse().ok()
}

/// Whether process `pid` runs on this machine; `true` when that cannot be known (no `/proc`).
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_dir = Path::new("/proc");
    !proc_dir.join("self").exists() || proc_dir.join(pid.to_string()).exists()
}

/// Removes the temporary files and folders in `dir` (names `.tmp-<pid>-...` and
/// `.checkpoint.tmp-<pid>`) of processes that are not running on this machine and that are at
/// least `min_age` old. Returns how many were removed. Errors are ignored: a stale file that
/// cannot be removed is left, and ignored.
pub fn remove_stale_temps(dir: &Path, min_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let old_enough = min_age.is_zero()
            || entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= min_age);
        if old_enough {
            remove_path(&entry.path());
            removed += 1;
        }
    }
    removed
}

/// Removes stale temporary files ([`remove_stale_temps`] with [`STALE_AGE`]) in `dir`, once
/// per folder and process.
fn sweep_stale_once(dir: &Path) {
    static SEEN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let first = SEEN
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .map(|mut seen| seen.insert(dir.to_path_buf()))
        .unwrap_or(false);
    if first {
        remove_stale_temps(dir, STALE_AGE);
    }
}

/// Whether `a` and `b` name the same existing file (same device and inode on Unix).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// Refuses an output that is the same file as an input (`speckle transform --input x.npy
/// --output x.npy`): the input would be replaced by the result.
pub fn refuse_same_file(input: &Path, output: &Path) -> io::Result<()> {
    if same_file(input, output) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "output {} is the input file {}; refusing to overwrite an input",
                output.display(),
                input.display()
            ),
        ));
    }
    Ok(())
}

/// The file a write to `target` replaces: `target` itself, or the file a symbolic link points
/// to (written through). Refuses what is not a regular file and dangling links.
fn resolve_target(target: &Path) -> io::Result<PathBuf> {
    let refuse = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} {what}; refusing to replace it", target.display()),
        )
    };
    let Ok(link) = std::fs::symlink_metadata(target) else {
        return Ok(target.to_path_buf());
    };
    if !link.file_type().is_symlink() {
        return if link.is_file() {
            Ok(target.to_path_buf())
        } else {
            Err(refuse("exists and is not a regular file"))
        };
    }
    match std::fs::metadata(target) {
        Ok(m) if m.is_file() => std::fs::canonicalize(target),
        Ok(_) => Err(refuse("exists and is not a regular file")),
        Err(_) => Err(refuse("is a symbolic link to nothing")),
    }
}

/// A temporary file next to its target that replaces the target on [`AtomicFile::commit`] and
/// is removed if dropped uncommitted (or if the process is interrupted, once
/// [`install_signal_cleanup`] ran). Its name ends with the target's name, so that writers
/// that pick a format from the extension (the PNG encoder) see the same extension.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Prepares a temporary path for `target`. Refuses a target that exists and is not a
    /// regular file (a device node, a FIFO, a folder), which a rename would replace; a symbolic
    /// link to a regular file is written through.
    pub fn new(target: &Path) -> io::Result<AtomicFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let target = resolve_target(target)?;
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
        sweep_stale_once(dir);
        // Unique among the threads of this process (the counter) and among processes of several
        // machines that share the folder (the process id, also read by stale-file removal, and
        // 64 random bits).
        let random = RandomState::new().build_hasher().finish();
        let mut tmp_name = std::ffi::OsString::from(format!(
            "{TEMP_PREFIX}{}-{random:016x}-{}-",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        tmp_name.push(name);
        let tmp = dir.join(tmp_name);
        register_temp(&tmp);
        Ok(AtomicFile {
            tmp,
            target,
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
        unregister_temp(&self.tmp);
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
            unregister_temp(&self.tmp);
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

    #[cfg(unix)]
    #[test]
    fn links_are_written_through_and_dangling_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        let dangling = dir.path().join("dangling.txt");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let e = write_atomic(&dangling, b"x").unwrap_err();
        assert!(e.to_string().contains("symbolic link to nothing"), "{e}");
        assert!(std::fs::symlink_metadata(&dangling).is_ok());
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn the_same_file_is_recognised_under_another_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.npy");
        std::fs::write(&a, b"x").unwrap();
        let e = refuse_same_file(&a, &dir.path().join(".").join("a.npy")).unwrap_err();
        assert!(
            e.to_string().contains("refusing to overwrite an input"),
            "{e}"
        );
        refuse_same_file(&a, &dir.path().join("b.npy")).unwrap();
    }

    #[test]
    fn temporary_files_are_registered_while_they_live() {
        let dir = tempfile::tempdir().unwrap();
        let file = AtomicFile::new(&dir.path().join("t.txt")).unwrap();
        let tmp = file.path().to_path_buf();
        assert!(registered_temps().contains(&tmp));
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_owner(name), Some(std::process::id()));
        drop(file);
        assert!(!registered_temps().contains(&tmp));
    }

    #[test]
    fn stale_temporary_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // Pids stop at 2^22 on Linux: this one never runs.
        let dead = dir.path().join(".tmp-999999999-0123456789abcdef-out.npy");
        let dead_dir = dir.path().join(".checkpoint.tmp-999999999");
        let mine = dir
            .path()
            .join(format!(".tmp-{}-0-out.npy", std::process::id()));
        let other = dir.path().join(".tmpfoo");
        std::fs::write(&dead, b"x").unwrap();
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("run.json"), b"{}").unwrap();
        std::fs::write(&mine, b"x").unwrap();
        std::fs::write(&other, b"x").unwrap();
        // Fresh: kept in a folder others may share.
        assert_eq!(remove_stale_temps(dir.path(), STALE_AGE), 0);
        if Path::new("/proc/self").exists() {
            // An hour old: removed; in a locked folder (no age), at once.
            let old = std::time::SystemTime::now() - 2 * STALE_AGE;
            File::options()
                .write(true)
                .open(&dead)
                .unwrap()
                .set_modified(old)
                .unwrap();
            assert_eq!(remove_stale_temps(dir.path(), STALE_AGE), 1);
            assert!(!dead.exists());
            assert_eq!(remove_stale_temps(dir.path(), Duration::ZERO), 1);
            assert!(!dead_dir.exists());
        }
        assert!(mine.exists() && other.exists());
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
