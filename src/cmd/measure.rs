//! What `speckle bench` and its suite share: the timed loop around a device or projector, and
//! seeded random inputs.
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use speckle::hal::DeviceCounters;

/// What [`measure`] measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    /// From the start of the setup (opening the backend) to the end of the warm-up call.
    pub setup_s: f64,
    /// Timed calls.
    pub calls: u64,
    /// Wall time of the timed calls, seconds.
    pub wall_s: f64,
    /// The device counters just before the timed calls.
    pub before: DeviceCounters,
    /// The device counters just after them.
    pub after: DeviceCounters,
}

impl Measured {
    /// Device frames shown by the timed calls.
    pub fn frames(&self) -> u64 {
        self.after.frames.saturating_sub(self.before.frames)
    }

    /// Device time of those frames at the configured frame rate, seconds.
    pub fn device_time_s(&self) -> f64 {
        (self.after.device_time_s - self.before.device_time_s).max(0.0)
    }
}

/// Makes one untimed warm-up `call` on `target` (the end of a setup that began at `setup`),
/// then times the call ([`timed`]).
pub fn measure<T: ?Sized>(
    target: &mut T,
    setup: Instant,
    seconds: f64,
    counters: impl Fn(&T) -> DeviceCounters,
    mut call: impl FnMut(&mut T) -> anyhow::Result<()>,
) -> anyhow::Result<Measured> {
    call(target)?;
    let setup_s = setup.elapsed().as_secs_f64();
    timed(target, setup_s, seconds, counters, call)
}

/// Repeats `call` on `target` until `seconds` have passed (at least once), reading `counters`
/// around the calls; `setup_s` is what the setup (and warm-up) took.
pub fn timed<T: ?Sized>(
    target: &mut T,
    setup_s: f64,
    seconds: f64,
    counters: impl Fn(&T) -> DeviceCounters,
    mut call: impl FnMut(&mut T) -> anyhow::Result<()>,
) -> anyhow::Result<Measured> {
    let before = counters(target);
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut calls = 0u64;
    loop {
        call(target)?;
        calls += 1;
        if start.elapsed() >= budget {
            break;
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    Ok(Measured {
        setup_s,
        calls,
        wall_s,
        before,
        after: counters(target),
    })
}

/// Random 0/1 inputs, seeded.
pub fn random_binary(rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows * cols).map(|_| rng.random_range(0..2u8)).collect()
}

/// Random signed inputs in [-1, 1), seeded.
pub fn random_signed(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows * cols)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect()
}
