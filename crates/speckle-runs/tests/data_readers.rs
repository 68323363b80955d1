//! Data readers: round trips of generated IDX and CIFAR files, and one-line errors naming the
//! file for truncated, mislabeled or malformed files.

use speckle_runs::data::{self, read_cifar_batch, read_idx_images, read_idx_labels, DatasetKind};
use std::io::Write;
use std::path::Path;

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        v.extend(d.to_be_bytes());
    }
    v.extend((0..n * rows * cols).map(|i| (i % 256) as u8));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend((labels.len() as u32).to_be_bytes());
    v.extend(labels);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn assert_one_line_naming(err: impl std::fmt::Display, path: &Path, what: &str) {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "multi-line error: {msg}");
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name the file: {msg}"
    );
    assert!(
        msg.contains(what),
        "error {msg:?} does not mention {what:?}"
    );
}

#[test]
fn idx_round_trip_raw_and_gz() {
    let dir = tempfile::tempdir().unwrap();
    let raw = write(dir.path(), "a-images", &idx_images(3, 2, 2));
    let zipped = write(dir.path(), "b-images.gz", &gz(&idx_images(3, 2, 2)));
    let a = read_idx_images(&raw).unwrap();
    let b = read_idx_images(&zipped).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.dim(), (3, 4));
    assert_eq!(a[[1, 1]], 5.0 / 255.0);
    let l = write(dir.path(), "l.gz", &gz(&idx_labels(&[0, 9, 3])));
    assert_eq!(read_idx_labels(&l, 10).unwrap(), vec![0, 9, 3]);
}

#[test]
fn idx_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut short = idx_images(3, 2, 2);
    short.truncate(short.len() - 1);
    let p = write(dir.path(), "short-images", &short);
    assert_one_line_naming(read_idx_images(&p).unwrap_err(), &p, "truncated");

    let p = write(dir.path(), "short-images.gz", &gz(&short));
    assert_one_line_naming(read_idx_images(&p).unwrap_err(), &p, "truncated");

    // A gzip stream cut in the middle.
    let full = gz(&idx_images(50, 28, 28));
    let p = write(dir.path(), "cut.gz", &full[..full.len() / 2]);
    assert_one_line_naming(read_idx_images(&p).unwrap_err(), &p, "");

    let p = write(dir.path(), "labels", &idx_labels(&[1, 2, 10]));
    assert_one_line_naming(read_idx_labels(&p, 10).unwrap_err(), &p, "out of range");

    let p = write(dir.path(), "swapped", &idx_labels(&[1, 2]));
    assert_one_line_naming(read_idx_images(&p).unwrap_err(), &p, "magic");

    let p = write(dir.path(), "tiny", &[0, 0]);
    assert_one_line_naming(read_idx_labels(&p, 10).unwrap_err(), &p, "truncated");

    let p = dir.path().join("absent");
    assert_one_line_naming(read_idx_labels(&p, 10).unwrap_err(), &p, "");
}

#[test]
fn mnist_dir_count_mismatch_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train-images-idx3-ubyte.gz", &gz(&idx_images(4, 28, 28)));
    let labels = write(d, "train-labels-idx1-ubyte", &idx_labels(&[1, 2, 3]));
    write(d, "t10k-images-idx3-ubyte", &idx_images(2, 28, 28));
    write(d, "t10k-labels-idx1-ubyte", &idx_labels(&[4, 5]));
    let err = data::load(DatasetKind::Mnist, d).unwrap_err();
    assert_one_line_naming(err, &labels, "3 labels");
    write(d, "train-labels-idx1-ubyte", &idx_labels(&[1, 2, 3, 4]));
    let splits = data::load(DatasetKind::Mnist, d).unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (4, 2));
    assert_eq!(splits.test.labels, vec![4, 5]);
    std::fs::remove_file(d.join("t10k-labels-idx1-ubyte")).unwrap();
    let msg = data::load(DatasetKind::Mnist, d).unwrap_err().to_string();
    assert!(
        msg.contains("t10k-labels-idx1-ubyte") && msg.contains("speckle data fetch"),
        "{msg}"
    );
    let msg = data::load(DatasetKind::Mnist, &d.join("nope"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nope") && !msg.contains('\n'), "{msg}");
}

#[test]
fn cifar_round_trip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |label: u8, fill: u8| {
        let mut v = vec![label];
        v.extend(std::iter::repeat_n(fill, 3072));
        v
    };
    let mut bytes = rec(3, 255);
    bytes.extend(rec(9, 0));
    let p = write(dir.path(), "test_batch.bin", &bytes);
    let (x, y) = read_cifar_batch(&p).unwrap();
    assert_eq!(x.dim(), (2, 3072));
    assert_eq!(y, vec![3, 9]);
    assert_eq!(x[[0, 100]], 1.0);
    let p = write(dir.path(), "cut.bin", &bytes[..bytes.len() - 10]);
    assert_one_line_naming(read_cifar_batch(&p).unwrap_err(), &p, "truncated");
    let mut bad = rec(10, 1);
    bad.extend(rec(1, 1));
    let p = write(dir.path(), "bad.bin", &bad);
    assert_one_line_naming(read_cifar_batch(&p).unwrap_err(), &p, "out of range");
    for i in 1..=5 {
        write(dir.path(), &format!("data_batch_{i}.bin"), &rec(i, i));
    }
    let splits = data::load(DatasetKind::Cifar10, dir.path()).unwrap();
    assert_eq!(splits.train.labels, vec![1, 2, 3, 4, 5]);
    assert_eq!(splits.test.len(), 2);
}

#[test]
fn bundled_mnist_reads_and_standardizes() {
    // The repository carries MNIST; reading it whole takes well under a second.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let mut s = data::load(DatasetKind::Mnist, &dir).unwrap();
    assert_eq!(
        (s.train.len(), s.test.len(), s.train.input_dim()),
        (60_000, 10_000, 784)
    );
    assert_eq!(&s.train.labels[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&s.test.labels[..3], &[7, 2, 1]);
    let (mean, std) = s.train.pixel_stats();
    // The well-known MNIST statistics 0.1307 and 0.3081.
    assert!(
        (mean - 0.1307).abs() < 1e-3 && (std - 0.3081).abs() < 1e-3,
        "{mean} {std}"
    );
    s.train.standardize(mean, std);
    let (m2, s2) = s.train.pixel_stats();
    assert!(m2.abs() < 1e-4 && (s2 - 1.0).abs() < 1e-4, "{m2} {s2}");
}

#[test]
fn images_of_another_shape_are_found_when_loading() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train-images-idx3-ubyte", &idx_images(4, 28, 28));
    write(d, "train-labels-idx1-ubyte", &idx_labels(&[1, 2, 3, 4]));
    let test_images = write(d, "t10k-images-idx3-ubyte", &idx_images(2, 27, 28));
    write(d, "t10k-labels-idx1-ubyte", &idx_labels(&[4, 5]));
    let err = data::load(DatasetKind::Mnist, d).unwrap_err();
    assert_one_line_naming(
        err,
        &test_images,
        "27 × 28 images, but mnist images are 28 × 28",
    );
}

#[test]
fn an_idx_header_beyond_memory_is_refused_without_reading_the_data() {
    let dir = tempfile::tempdir().unwrap();
    // 2^32 − 1 images of 65535 × 65535 pixels announced, none present.
    let mut v = vec![0, 0, 8, 3];
    for d in [u32::MAX, 65_535, 65_535] {
        v.extend(d.to_be_bytes());
    }
    let p = write(dir.path(), "huge-images.gz", &gz(&v));
    assert_one_line_naming(read_idx_images(&p).unwrap_err(), &p, "memory limit");
}
