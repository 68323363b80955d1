//! # speckle-serial
//!
//! Physical hardware support for speckle: [`SerialDevice`], an
//! [`OpticalDevice`](speckle_hal::OpticalDevice) that drives a device over a serial link with
//! the speckle protocol (`firmware-interface/PROTOCOL.md`), and [`Emulator`], the device side of
//! the protocol, which serves any `OpticalDevice` (the simulated OPU behind
//! `speckle emulate`) over any [`Transport`], with seeded fault injection.
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use speckle_hal::{pack_bits, OpticalDevice, PackedFrames};
//! use speckle_serial::{memory_link, Emulator, EmulatorOptions, SerialDevice, SerialOptions, ToyDevice};
//!
//! let (host_end, mut device_end) = memory_link();
//! let server = std::thread::spawn(move || {
//!     let factory = |s: &speckle_serial::DeviceSettings| {
//!         Ok(ToyDevice::new(s.input_dim, s.output_dim, 42, Some(8)))
//!     };
//!     let mut emulator = Emulator::new(factory, EmulatorOptions::default());
//!     emulator.serve(&mut device_end, &AtomicBool::new(false)).unwrap();
//! });
//!
//! let options = SerialOptions { dims: Some((16, 4)), ..SerialOptions::default() };
//! let mut device = SerialDevice::new(host_end, options).unwrap();
//! assert_eq!((device.info().input_dim, device.info().output_dim), (16, 4));
//!
//! let mut packed = Vec::new();
//! pack_bits(&[1; 32], 2, 16, &mut packed).unwrap();
//! let mut camera = vec![0.0f32; 2 * 4];
//! device.transform(&PackedFrames::new(&packed, 2, 16).unwrap(), &mut camera).unwrap();
//!
//! // The same frames on the same device in-process give the same counts, bit for bit.
//! let mut local = ToyDevice::new(16, 4, 42, Some(8));
//! let mut expected = vec![0.0f32; 8];
//! local.transform(&PackedFrames::new(&packed, 2, 16).unwrap(), &mut expected).unwrap();
//! assert_eq!(camera, expected);
//!
//! drop(device); // closes the link; the emulator returns
//! server.join().unwrap();
//! ```

/// Baud rate used when a `serial:PATH` spec gives none (ignored by pseudo-terminals and USB
/// CDC-ACM devices, which run at bus speed).
pub const DEFAULT_BAUD: u32 = 921_600;

mod bench;
mod device;
mod emulator;
mod faults;
#[cfg(unix)]
pub mod pty;
mod transport;

pub use bench::{bench_in_memory, bench_link, LinkBenchReport};
pub use device::{LinkStats, SerialDevice, SerialOptions};
pub use emulator::{
    capabilities_of, DeviceSettings, Emulator, EmulatorOptions, EmulatorStats, ToyDevice,
};
pub use faults::{FaultConfig, FaultCounts, FaultInjector, FaultKind, FaultSpecError};
pub use transport::{memory_link, MemoryPort, StallAfter, Transport, UnplugAfter};
