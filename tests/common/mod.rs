//! Helpers shared by the CLI integration tests: run the `speckle` binary, write `.npy`
//! fixtures, and check the error contract (exit ≠ 0, one-line message, no output file).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The result of one `speckle` run.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both streams unless the run succeeded.
    pub fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "speckle failed: {}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts the error contract: non-zero exit, a single line on stderr that contains
    /// `needle` (case-insensitive). Returns that line.
    pub fn fails_with(self, needle: &str) -> String {
        assert!(
            !self.status.success(),
            "expected failure mentioning {needle:?}, got success; stdout: {}",
            self.stdout
        );
        let msg = self.stderr.trim_end();
        assert_eq!(
            msg.lines().count(),
            1,
            "error message is not one line: {msg:?}"
        );
        assert!(
            msg.to_lowercase().contains(&needle.to_lowercase()),
            "error {msg:?} does not mention {needle:?}"
        );
        msg.to_string()
    }
}

/// Runs `speckle ARGS` in the package root (so `configs/...` paths resolve).
pub fn speckle<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_speckle"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the speckle binary runs");
    Run {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A path in `dir` as a string argument.
pub fn arg(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// Names of the entries of `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The embedded LightOn-like preset's TOML, for fixtures that edit it.
pub fn lighton_toml() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/devices/lighton.toml"),
    )
    .unwrap()
}

/// A deterministic 0/1 pattern, `rows × cols`, with both values in every row.
pub fn binary_pattern(rows: usize, cols: usize) -> ndarray::Array2<u8> {
    ndarray::Array2::from_shape_fn((rows, cols), |(r, c)| {
        (((r * 7 + c * 3) ^ (r + c)) % 3 == 0) as u8
    })
}

/// A deterministic signed float pattern in [-1, 1], `rows × cols`.
pub fn float_pattern(rows: usize, cols: usize) -> ndarray::Array2<f32> {
    ndarray::Array2::from_shape_fn((rows, cols), |(r, c)| {
        ((r * 31 + c * 17) as f32 * 0.37).sin()
    })
}

/// The numpy dtype descriptor in a `.npy` file's header.
pub fn npy_descr(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned();
    let start = header.find("'descr': '").expect("descr key") + "'descr': '".len();
    header[start..start + header[start..].find('\'').unwrap()].to_string()
}
