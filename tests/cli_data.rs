//! `speckle data fetch` against a local HTTP server on 127.0.0.1 serving the repository's own
//! MNIST files (so the real checksums apply), then a corrupted copy.

#[path = "common/http.rs"]
mod http;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn mnist_files() -> HashMap<String, Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    .iter()
    .map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap()))
    .collect()
}

fn fetch(dir: &Path, url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_speckle"))
        .args([
            "data",
            "fetch",
            "mnist",
            "--dir",
            dir.to_str().unwrap(),
            "--mirror",
            url,
        ])
        .output()
        .unwrap()
}

#[test]
fn fetch_mnist_from_a_local_mirror() {
    let files = mnist_files();
    let url = format!("{}/", http::serve(files.clone()).0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    let o = fetch(&dir, &url);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes, "{name}");
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 files verified"));
}

#[test]
fn fetch_refuses_a_corrupted_file() {
    let mut files = mnist_files();
    files.get_mut("t10k-labels-idx1-ubyte.gz").unwrap()[100] ^= 0xff;
    let url = format!("{}/", http::serve(files).0);
    let tmp = tempfile::tempdir().unwrap();
    let o = fetch(tmp.path(), &url);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    let last = e.trim_end().lines().last().unwrap_or("");
    assert!(
        last.contains("checksum mismatch") && last.contains("t10k-labels-idx1-ubyte.gz"),
        "{e}"
    );
    assert!(!tmp.path().join("t10k-labels-idx1-ubyte.gz").exists());
    // No temporary file left behind either.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().starts_with('.')),
        "{left:?}"
    );

    let o = Command::new(env!("CARGO_BIN_EXE_speckle"))
        .args(["data", "fetch", "svhn"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("svhn"));
}
