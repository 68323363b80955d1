//! `speckle data fetch` against a local HTTP server on 127.0.0.1 serving the repository's own
//! MNIST files (so the real checksums apply), then a corrupted copy.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let name = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .rsplit('/')
                .next()
                .unwrap_or("");
            let _ = match files.get(name) {
                Some(body) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(body)),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    format!("http://{addr}/mirror/")
}

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
    let url = serve(files.clone());
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
    let url = serve(files);
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
