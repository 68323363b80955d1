//! SIGINT and SIGTERM remove the temporary files of an interrupted write and exit with 130 and
//! 143: the test runs itself as a child that holds a temporary file, and signals it.
#![cfg(target_os = "linux")]

use speckle_runs::atomic::{install_signal_cleanup, AtomicFile};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "SPECKLE_SIGNAL_CLEANUP_CHILD";

/// In the child: a temporary file for the target, written, then a long wait for the signal.
fn child(target: PathBuf) -> ! {
    install_signal_cleanup().unwrap();
    let file = AtomicFile::new(&target).unwrap();
    std::fs::write(file.path(), b"half-written").unwrap();
    println!("ready {}", file.path().display());
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
    std::process::exit(0)
}

fn interrupt(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.npy");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &target)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let tmp = loop {
        let line = lines.next().expect("the child says ready").unwrap();
        // After the harness's "test the_child ... " on the same line.
        if let Some(i) = line.find("ready ") {
            break PathBuf::from(&line[i + "ready ".len()..]);
        }
    };
    assert!(tmp.exists());
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(code), "{status}");
    assert!(!tmp.exists(), "{} was left", tmp.display());
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_child() {
    if let Some(target) = std::env::var_os(CHILD_ENV) {
        child(PathBuf::from(target));
    }
}

#[test]
fn sigterm_removes_temporary_files_and_exits_143() {
    interrupt("-TERM", 143);
}

#[test]
fn sigint_removes_temporary_files_and_exits_130() {
    interrupt("-INT", 130);
}
