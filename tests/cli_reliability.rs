//! Issue 15, "no hang, no abort, no clobbered file, no silent nonsense", at the command line:
//! one test per case of the error contract in `docs/errors.md` (sizes, outputs, runs,
//! nonsense, messages). Sizes are refused before anything is allocated, so these tests allocate
//! nothing large.
mod common;

use common::{arg, speckle};
use ndarray::Array2;
use ndarray_npy::write_npy;

/// Asserts that no `: `-separated clause of an error line appears twice ("X: X").
fn each_clause_once(line: &str) {
    let body = line.strip_prefix("error: ").unwrap_or(line);
    let clauses: Vec<&str> = body.split(": ").collect();
    for (i, c) in clauses.iter().enumerate() {
        assert!(
            !clauses[i + 1..].contains(c),
            "clause {c:?} appears twice in {line:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

#[test]
fn a_missing_file_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = arg(dir.path(), "missing.toml");
    let device = format!("sim:{missing}");
    let x = arg(dir.path(), "x.npy");
    write_npy(&x, &Array2::<u8>::zeros((2, 8))).unwrap();
    let y = arg(dir.path(), "y.npy");
    for args in [
        vec![
            "transform",
            "--device",
            &device,
            "--set",
            "camera.bits=8",
            "--input",
            &x,
            "--output",
            &y,
        ],
        vec![
            "transform",
            "--device",
            &device,
            "--input",
            &x,
            "--output",
            &y,
        ],
        vec!["train", "--config", &missing],
    ] {
        let line = speckle(&args).fails_with("missing.toml");
        assert_eq!(
            line.matches("No such file or directory").count(),
            1,
            "{line}"
        );
        each_clause_once(&line);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_port_that_is_not_a_terminal_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let x = arg(dir.path(), "x.npy");
    write_npy(&x, &Array2::<u8>::zeros((2, 8))).unwrap();
    let y = arg(dir.path(), "y.npy");
    let line = speckle([
        "transform",
        "--device",
        "serial:/dev/null",
        "--input",
        &x,
        "--output",
        &y,
    ])
    .fails_with("/dev/null");
    each_clause_once(&line);
}
