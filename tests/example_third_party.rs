//! Builds and runs `examples/third_party_device.rs` (its `demo`), so the example in the
//! "Plugging in your hardware" guide keeps working.
#[allow(dead_code)]
#[path = "../examples/third_party_device.rs"]
mod example;

use speckle_hal::{ErrorKind, OpticalDevice, PackedFrames};

#[test]
fn third_party_device_projects_through_the_optical_projector() {
    let y = example::demo().unwrap();
    assert_eq!(y.len(), 2 * 24);
    assert!(y.iter().all(|v| v.is_finite()));
    assert!(y.iter().any(|&v| v != 0.0));
    // Deterministic device, deterministic projection.
    assert_eq!(example::demo().unwrap(), y);
}

#[test]
fn third_party_device_rejects_bad_input_without_panicking() {
    assert_eq!(
        example::AcmeDevice::open("nope").err().unwrap().kind(),
        ErrorKind::Link
    );
    let mut dev = example::AcmeDevice::open("ACME-0001").unwrap();
    let frames = PackedFrames::new(&[0u8; 4], 1, 32).unwrap();
    let err = dev.transform(&frames, &mut [0.0; 96]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DimensionMismatch);
}
