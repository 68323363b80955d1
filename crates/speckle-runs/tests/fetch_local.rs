//! `fetch` against a tiny HTTP server on 127.0.0.1 serving fixture files made here: a good
//! download, a checksum mismatch (no file left behind), a 404, and skipping valid files.

#[path = "../../../tests/common/http.rs"]
mod http;

use http::serve;
use speckle_runs::data::fetch::{self, Checksum, FetchPlan, RemoteFile};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

fn plan(files: &[(&str, &[u8])]) -> FetchPlan {
    FetchPlan {
        mirrors: vec!["http://127.0.0.1:9/unused/".into()],
        files: files
            .iter()
            .map(|(n, b)| RemoteFile {
                name: n.to_string(),
                checksum: Checksum::Sha256(fetch::sha256_hex(b)),
            })
            .collect(),
        unpack_cifar: false,
    }
}

#[test]
fn fetch_verifies_and_writes_atomically() {
    let a: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b = b"labels".to_vec();
    let mut served = HashMap::new();
    served.insert("a.gz".to_string(), a.clone());
    served.insert("b.gz".to_string(), b.clone());
    let (url, hits) = serve(served);
    let dir = tempfile::tempdir().unwrap();
    let good = plan(&[("a.gz", &a), ("b.gz", &b)]);
    let mut log = Vec::new();
    let files = fetch::fetch(&good, dir.path(), Some(&url), &mut |l| {
        log.push(l.to_string())
    })
    .unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(std::fs::read(dir.path().join("a.gz")).unwrap(), a);
    assert_eq!(std::fs::read(dir.path().join("b.gz")).unwrap(), b);
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Present and valid: nothing downloaded again.
    fetch::fetch(&good, dir.path(), Some(&url), &mut |_| {}).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Checksum mismatch: an error naming the URL, and no file written.
    let wrong = plan(&[("c.gz", b"something else")]);
    let mut wrong = wrong;
    wrong.files[0].name = "a.gz".into();
    let other = tempfile::tempdir().unwrap();
    let err = fetch::fetch(&wrong, other.path(), Some(&url), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains("a.gz"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    assert_eq!(
        std::fs::read_dir(other.path()).unwrap().count(),
        0,
        "left a file behind"
    );

    // Missing on the server.
    let missing = plan(&[("nope.gz", b"x")]);
    let err = fetch::fetch(&missing, other.path(), Some(&url), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.gz") && err.contains("404"), "{err}");
    assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
}

#[test]
fn shipped_plans_have_well_formed_checksums() {
    use speckle_runs::data::DatasetKind;
    for kind in [
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Cifar10,
    ] {
        let p = fetch::plan(kind);
        assert!(!p.mirrors.is_empty() && p.mirrors.iter().all(|m| m.ends_with('/')));
        for f in &p.files {
            let (hex, len) = match &f.checksum {
                Checksum::Sha256(h) => (h, 64),
                Checksum::Md5(h) => (h, 32),
                _ => unreachable!(),
            };
            assert_eq!(hex.len(), len, "{}", f.name);
            assert!(hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
    }
    // The MNIST sums are those of the bundled copy.
    let sums = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/mnist/SHA256SUMS"
    ))
    .unwrap();
    for f in fetch::plan(DatasetKind::Mnist).files {
        let Checksum::Sha256(h) = &f.checksum else {
            panic!()
        };
        assert!(sums.contains(&format!("{h}  {}", f.name)), "{}", f.name);
    }
}
