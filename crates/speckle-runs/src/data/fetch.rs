//! `speckle data fetch`: downloads a data set from its usual public mirrors, verifies each file's
//! checksum and writes it atomically ([`crate::atomic`]: temporary file in the same directory,
//! synced, then renamed), so a failed or corrupted download never leaves a file that looks
//! complete.
//!
//! ```
//! use speckle_runs::data::fetch::{fetch, plan, sha256_hex, Checksum, FetchPlan, RemoteFile};
//! use speckle_runs::data::DatasetKind;
//!
//! assert_eq!(plan(DatasetKind::Mnist).files.len(), 4);
//! // A file already present with the right checksum is kept: nothing is downloaded.
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("a.bin"), b"data")?;
//! let mine = FetchPlan {
//!     mirrors: vec!["http://127.0.0.1:9/".into()],
//!     files: vec![RemoteFile { name: "a.bin".into(), checksum: Checksum::Sha256(sha256_hex(b"data")) }],
//!     unpack_cifar: false,
//! };
//! let mut log = Vec::new();
//! let files = fetch(&mine, dir.path(), None, &mut |line| log.push(line.to_string()))?;
//! assert_eq!(files, [dir.path().join("a.bin")]);
//! assert!(log[0].ends_with("present, checksum ok"), "{log:?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::dataset::DatasetKind;
use super::error::DataError;
use crate::atomic::AtomicFile;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The expected digest of a file, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checksum {
    /// SHA-256.
    Sha256(String),
    /// MD5 (only where the data set's publishers give no SHA-256).
    Md5(String),
}

impl Checksum {
    fn hasher(&self) -> Hasher {
        match self {
            Checksum::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Checksum::Md5(_) => Hasher::Md5(Md5::new()),
        }
    }
    fn expected(&self) -> &str {
        match self {
            Checksum::Sha256(h) | Checksum::Md5(h) => h,
        }
    }
    fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "SHA-256",
            Checksum::Md5(_) => "MD5",
        }
    }
}

enum Hasher {
    Sha256(Sha256),
    Md5(Md5),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Md5(h) => h.update(bytes),
        }
    }
    fn hex(self) -> String {
        let digest: Vec<u8> = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        };
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One file to download: its name on the mirror (and on disk) and its checksum.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    /// File name, appended to the mirror's base URL.
    pub name: String,
    /// Expected digest.
    pub checksum: Checksum,
}

/// What to download for a data set: base URLs tried in order, and the files.
#[derive(Debug, Clone)]
pub struct FetchPlan {
    /// Base URLs ending with `/`.
    pub mirrors: Vec<String>,
    /// Files to download from one of the mirrors.
    pub files: Vec<RemoteFile>,
    /// Whether the files are a CIFAR-10 tar.gz archive to unpack (its `.bin` batches).
    pub unpack_cifar: bool,
}

fn sha(name: &str, hex: &str) -> RemoteFile {
    RemoteFile {
        name: name.into(),
        checksum: Checksum::Sha256(hex.into()),
    }
}
fn md5(name: &str, hex: &str) -> RemoteFile {
    RemoteFile {
        name: name.into(),
        checksum: Checksum::Md5(hex.into()),
    }
}

/// The mirrors and checksums of a data set.
pub fn plan(kind: DatasetKind) -> FetchPlan {
    match kind {
        // Same SHA-256 sums as the copy bundled in data/mnist/SHA256SUMS.
        DatasetKind::Mnist => FetchPlan {
            mirrors: vec![
                "https://ossci-datasets.s3.amazonaws.com/mnist/".into(),
                "https://storage.googleapis.com/cvdf-datasets/mnist/".into(),
            ],
            files: vec![
                sha(
                    "train-images-idx3-ubyte.gz",
                    "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
                ),
                sha(
                    "train-labels-idx1-ubyte.gz",
                    "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
                ),
                sha(
                    "t10k-images-idx3-ubyte.gz",
                    "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
                ),
                sha(
                    "t10k-labels-idx1-ubyte.gz",
                    "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
                ),
            ],
            unpack_cifar: false,
        },
        // Zalando publishes MD5 sums only.
        DatasetKind::FashionMnist => FetchPlan {
            mirrors: vec!["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/".into()],
            files: vec![
                md5(
                    "train-images-idx3-ubyte.gz",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                md5(
                    "train-labels-idx1-ubyte.gz",
                    "25c81989df183df01b3e8a0aad5dffbe",
                ),
                md5(
                    "t10k-images-idx3-ubyte.gz",
                    "bef4ecab320f06d8554ea6380940ec79",
                ),
                md5(
                    "t10k-labels-idx1-ubyte.gz",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ],
            unpack_cifar: false,
        },
        DatasetKind::Cifar10 => FetchPlan {
            mirrors: vec!["https://www.cs.toronto.edu/~kriz/".into()],
            files: vec![sha(
                "cifar-10-binary.tar.gz",
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            )],
            unpack_cifar: true,
        },
    }
}

/// Digest of a file already on disk.
fn file_digest(path: &Path, checksum: &Checksum) -> Result<String, DataError> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = checksum.hasher();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.hex())
}

/// A temporary file for `dest` ([`AtomicFile`], removed unless committed) and the file opened
/// on it for writing.
fn temp_file(dest: &Path) -> Result<(AtomicFile, File), DataError> {
    let tmp = AtomicFile::new(dest).map_err(|e| DataError::io(dest, e))?;
    let f = File::create(tmp.path()).map_err(|e| DataError::io(tmp.path(), e))?;
    Ok((tmp, f))
}

/// Closes `out`, then syncs its temporary file and renames it over `dest`.
fn commit(tmp: AtomicFile, out: File, dest: &Path) -> Result<(), DataError> {
    drop(out);
    tmp.commit().map_err(|e| DataError::io(dest, e))
}

/// Downloads `url` into `dest` (atomically), verifying the checksum on the way.
fn download(
    agent: &ureq::Agent,
    url: &str,
    file: &RemoteFile,
    dest: &Path,
) -> Result<(), DataError> {
    let response = agent
        .get(url)
        .call()
        .map_err(|e| DataError::Fetch(format!("downloading {url}: {e}")))?;
    let mut reader = response.into_body().into_reader();
    let (tmp, mut out) = temp_file(dest)?;
    let mut hasher = file.checksum.hasher();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| DataError::Fetch(format!("downloading {url}: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| DataError::io(tmp.path(), e))?;
    }
    let got = hasher.hex();
    if got != file.checksum.expected() {
        return Err(DataError::Fetch(format!(
            "checksum mismatch for {url}: {} expected {}, got {got} (file discarded)",
            file.checksum.algorithm(),
            file.checksum.expected()
        )));
    }
    commit(tmp, out, dest)
}

/// Unpacks the `.bin` batches of the CIFAR-10 binary archive into `dir`.
fn unpack_cifar(archive: &Path, dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let f = std::fs::File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let bad = |e: std::io::Error| DataError::format(archive, format!("cannot unpack: {e}"));
    let mut written = Vec::new();
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        // Only the flat batch files, never a path from the archive: nothing escapes `dir`.
        if !name.ends_with(".bin") {
            continue;
        }
        let dest = dir.join(&name);
        let (tmp, mut out) = temp_file(&dest)?;
        std::io::copy(&mut entry, &mut out).map_err(bad)?;
        commit(tmp, out, &dest)?;
        written.push(dest);
    }
    if written.is_empty() {
        return Err(DataError::format(
            archive,
            "no .bin batch files in the archive",
        ));
    }
    Ok(written)
}

/// Downloads every file of `plan` into `dir` (created if needed), from `mirror` if given, else
/// from the plan's mirrors in order. Files already present with the right checksum are kept.
/// `log` receives one line per file.
pub fn fetch(
    plan: &FetchPlan,
    dir: &Path,
    mirror: Option<&str>,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<PathBuf>, DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .build()
        .into();
    let mirrors: Vec<String> = match mirror {
        Some(m) if m.ends_with('/') => vec![m.to_string()],
        Some(m) => vec![format!("{m}/")],
        None => plan.mirrors.clone(),
    };
    let mut done = Vec::new();
    for file in &plan.files {
        let dest = dir.join(&file.name);
        if dest.is_file() && file_digest(&dest, &file.checksum)? == file.checksum.expected() {
            log(&format!("{}: present, checksum ok", dest.display()));
            done.push(dest);
            continue;
        }
        let mut errors = Vec::new();
        for base in &mirrors {
            let url = format!("{base}{}", file.name);
            log(&format!("downloading {url}"));
            match download(&agent, &url, file, &dest) {
                Ok(()) => {
                    errors.clear();
                    break;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(DataError::Fetch(errors.join("; ")));
        }
        log(&format!(
            "{}: {} ok",
            dest.display(),
            file.checksum.algorithm()
        ));
        done.push(dest);
    }
    if plan.unpack_cifar {
        let mut bins = Vec::new();
        for archive in &done {
            bins.extend(unpack_cifar(archive, dir)?);
        }
        log(&format!(
            "unpacked {} batch files into {}",
            bins.len(),
            dir.display()
        ));
        done.extend(bins);
    }
    Ok(done)
}

/// Hex digest of bytes (SHA-256), for building fetch plans of test fixtures.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Hasher::Sha256(Sha256::new());
    h.update(bytes);
    h.hex()
}
