//! A gzip bomb (a small file that inflates to far more than its header announces) is inflated
//! no further than the header's size: its own test binary, so that the peak memory measured is
//! this test's alone.
#![cfg(target_os = "linux")]

use std::io::Write;

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn decompression_is_bounded_by_the_announced_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-images-idx3-ubyte.gz");
    // A valid header for 10 images of 28 × 28, then 1 GiB of zeros: about 1 MB compressed.
    let file = std::fs::File::create(&path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(&[0, 0, 8, 3]).unwrap();
    for d in [10u32, 28, 28] {
        gz.write_all(&d.to_be_bytes()).unwrap();
    }
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap();
    drop(zeros);
    assert!(std::fs::metadata(&path).unwrap().len() < 8 << 20);
    let before = peak_rss();
    let e = speckle_runs::data::read_idx_images(&path)
        .unwrap_err()
        .to_string();
    let grew = peak_rss().saturating_sub(before);
    assert!(e.contains("trailing bytes") && !e.contains('\n'), "{e}");
    assert!(grew < 64 << 20, "reading the bomb took {grew} more bytes");
}
