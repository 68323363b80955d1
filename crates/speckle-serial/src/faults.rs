//! Seeded link-fault injection for the emulator: `drop`, `flip`, `truncate`, `delay` and
//! `reset`, each with a rate per frame.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One kind of link fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// 1 to 8 bytes of the frame are lost, as in a UART overrun: the frame arrives damaged
    /// (possibly without its delimiter, merged with the next one), never lost whole.
    Drop,
    /// 1 to 3 bits of the frame are flipped.
    Flip,
    /// The frame is cut short (its delimiter kept half of the time).
    Truncate,
    /// The response is sent late (after [`FaultConfig::delay`]).
    Delay,
    /// The device restarts: it loses its session and configuration and announces the restart.
    Reset,
}

impl FaultKind {
    /// All kinds, in the order rates are drawn.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Drop,
        FaultKind::Flip,
        FaultKind::Truncate,
        FaultKind::Delay,
        FaultKind::Reset,
    ];

    /// The name used in fault specs.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Drop => "drop",
            FaultKind::Flip => "flip",
            FaultKind::Truncate => "truncate",
            FaultKind::Delay => "delay",
            FaultKind::Reset => "reset",
        }
    }
}

/// Fault rates, per frame, in `[0, 1]`, summing to at most 1 (a frame suffers at most one
/// fault). Parsed from `kind=rate` pairs: `drop=0.01,flip=0.01,truncate=0.01,delay=0.01,reset=0.001`,
/// plus an optional `delay_ms=N` (how late a delayed frame is, default 20).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Rate of [`FaultKind::Drop`].
    pub drop: f64,
    /// Rate of [`FaultKind::Flip`].
    pub flip: f64,
    /// Rate of [`FaultKind::Truncate`].
    pub truncate: f64,
    /// Rate of [`FaultKind::Delay`].
    pub delay: f64,
    /// Rate of [`FaultKind::Reset`] (drawn on frames the device receives).
    pub reset: f64,
    /// How late a delayed frame is.
    pub delay_duration: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self::none()
    }
}

/// A fault spec that does not parse or whose rates are out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpecError(String);

impl fmt::Display for FaultSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultSpecError {}

impl FaultConfig {
    /// No faults.
    pub fn none() -> Self {
        Self {
            drop: 0.0,
            flip: 0.0,
            truncate: 0.0,
            delay: 0.0,
            reset: 0.0,
            delay_duration: Duration::from_millis(20),
        }
    }

    /// The same `rate` for every kind but `reset`.
    pub fn uniform(rate: f64) -> Self {
        Self {
            drop: rate,
            flip: rate,
            truncate: rate,
            delay: rate,
            ..Self::none()
        }
    }

    /// The rate of one kind.
    pub fn rate(&self, kind: FaultKind) -> f64 {
        match kind {
            FaultKind::Drop => self.drop,
            FaultKind::Flip => self.flip,
            FaultKind::Truncate => self.truncate,
            FaultKind::Delay => self.delay,
            FaultKind::Reset => self.reset,
        }
    }

    /// Whether any rate is non-zero.
    pub fn is_active(&self) -> bool {
        FaultKind::ALL.iter().any(|&k| self.rate(k) > 0.0)
    }

    /// Checks every rate is in `[0, 1]` and that they sum to at most 1.
    pub fn check(&self) -> Result<(), FaultSpecError> {
        let mut sum = 0.0;
        for kind in FaultKind::ALL {
            let r = self.rate(kind);
            if !(0.0..=1.0).contains(&r) {
                return Err(FaultSpecError(format!(
                    "fault rate {}={r} is outside [0, 1]",
                    kind.name()
                )));
            }
            sum += r;
        }
        if sum > 1.0 + 1e-12 {
            return Err(FaultSpecError(format!(
                "fault rates add up to {sum}, above 1 (a frame suffers at most one fault)"
            )));
        }
        Ok(())
    }
}

impl FromStr for FaultConfig {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut cfg = FaultConfig::none();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(|| {
                FaultSpecError(format!(
                    "fault spec item '{item}' is not kind=rate (e.g. drop=0.01)"
                ))
            })?;
            let key = key.trim();
            let value = value.trim();
            if key == "delay_ms" {
                let ms: u64 = value.parse().map_err(|_| {
                    FaultSpecError(format!(
                        "delay_ms must be a whole number of milliseconds, got '{value}'"
                    ))
                })?;
                if ms > 60_000 {
                    return Err(FaultSpecError(format!(
                        "delay_ms={ms} is above the 60000 ms limit"
                    )));
                }
                cfg.delay_duration = Duration::from_millis(ms);
                continue;
            }
            let rate: f64 = value.parse().map_err(|_| {
                FaultSpecError(format!(
                    "fault rate for '{key}' must be a number, got '{value}'"
                ))
            })?;
            let slot = match key {
                "drop" => &mut cfg.drop,
                "flip" => &mut cfg.flip,
                "truncate" => &mut cfg.truncate,
                "delay" => &mut cfg.delay,
                "reset" => &mut cfg.reset,
                other => {
                    return Err(FaultSpecError(format!(
                        "unknown fault kind '{other}' (expected drop, flip, truncate, delay, reset or delay_ms)"
                    )))
                }
            };
            *slot = rate;
        }
        cfg.check()?;
        Ok(cfg)
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Frames that lost bytes.
    pub drop: u64,
    /// Frames with flipped bits.
    pub flip: u64,
    /// Frames cut short.
    pub truncate: u64,
    /// Frames sent late.
    pub delay: u64,
    /// Device restarts.
    pub reset: u64,
    /// Frames considered.
    pub frames: u64,
}

/// Draws faults from a [`FaultConfig`] with a seeded ChaCha8 stream and damages frames.
#[derive(Debug, Clone)]
pub struct FaultInjector {
    config: FaultConfig,
    rng: ChaCha8Rng,
    counts: FaultCounts,
}

impl FaultInjector {
    /// An injector drawing from `seed`.
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            counts: FaultCounts::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }

    /// Draws the fault (if any) for the next frame; `reset` is only drawn when `allow_reset`.
    pub fn draw(&mut self, allow_reset: bool) -> Option<FaultKind> {
        if !self.config.is_active() {
            return None;
        }
        self.counts.frames += 1;
        let u: f64 = self.rng.random();
        let mut acc = 0.0;
        for kind in FaultKind::ALL {
            acc += self.config.rate(kind);
            if u < acc {
                if kind == FaultKind::Reset && !allow_reset {
                    return None;
                }
                match kind {
                    FaultKind::Drop => self.counts.drop += 1,
                    FaultKind::Flip => self.counts.flip += 1,
                    FaultKind::Truncate => self.counts.truncate += 1,
                    FaultKind::Delay => self.counts.delay += 1,
                    FaultKind::Reset => self.counts.reset += 1,
                }
                return Some(kind);
            }
        }
        None
    }

    /// Damages `frame` (its bytes, with the trailing delimiter when `has_delimiter`) according
    /// to a `Drop`, `Flip` or `Truncate` fault; other kinds leave it alone.
    pub fn damage(&mut self, kind: FaultKind, frame: &mut Vec<u8>, has_delimiter: bool) {
        if frame.is_empty() {
            return;
        }
        match kind {
            FaultKind::Drop => {
                let n = self.rng.random_range(1..=8usize).min(frame.len());
                let at = self.rng.random_range(0..=frame.len() - n);
                frame.drain(at..at + n);
            }
            FaultKind::Flip => {
                let flips = self.rng.random_range(1..=3);
                for _ in 0..flips {
                    // Never the delimiter: a flipped delimiter is a drop.
                    let body = frame.len() - usize::from(has_delimiter);
                    if body == 0 {
                        break;
                    }
                    let at = self.rng.random_range(0..body);
                    frame[at] ^= 1 << self.rng.random_range(0..8);
                }
            }
            FaultKind::Truncate => {
                let body = frame.len() - usize::from(has_delimiter);
                let keep = self.rng.random_range(0..body.max(1));
                let keep_delimiter = has_delimiter && self.rng.random_bool(0.5);
                frame.truncate(keep);
                if keep_delimiter {
                    frame.push(0);
                }
            }
            FaultKind::Delay | FaultKind::Reset => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_rejects_bad_ones() {
        let cfg: FaultConfig =
            "drop=0.01, flip=0.02,truncate=0.03,delay=0.04,reset=0.001,delay_ms=5"
                .parse()
                .unwrap();
        assert_eq!(cfg.flip, 0.02);
        assert_eq!(cfg.delay_duration, Duration::from_millis(5));
        assert!("".parse::<FaultConfig>().unwrap() == FaultConfig::none());
        for (bad, needle) in [
            ("drop", "not kind=rate"),
            ("drip=0.1", "unknown fault kind 'drip'"),
            ("drop=x", "must be a number"),
            ("drop=1.5", "outside [0, 1]"),
            ("drop=0.6,flip=0.6", "add up to"),
            ("drop=NaN", "outside"),
            ("delay_ms=-1", "whole number"),
        ] {
            let e = bad.parse::<FaultConfig>().unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    /// `drop` loses bytes of a frame, not the frame: 1 to 8 bytes go, the rest keep their order.
    #[test]
    fn drop_loses_1_to_8_bytes_not_the_frame() {
        let frame: Vec<u8> = (1..=40).chain([0]).collect();
        let mut inj = FaultInjector::new(FaultConfig::none(), 3);
        let mut lost_delimiter = 0;
        for _ in 0..2000 {
            let mut f = frame.clone();
            inj.damage(FaultKind::Drop, &mut f, true);
            assert!((frame.len() - 8..frame.len()).contains(&f.len()), "{f:?}");
            let mut rest = frame.iter();
            assert!(
                f.iter().all(|b| rest.any(|x| x == b)),
                "not a subsequence: {f:?}"
            );
            lost_delimiter += usize::from(f.last() != Some(&0));
        }
        // The delimiter is among the lost bytes now and then (the frame then merges).
        assert!((1..500).contains(&lost_delimiter), "{lost_delimiter}");
    }

    #[test]
    fn draws_at_the_configured_rates() {
        let mut inj = FaultInjector::new(FaultConfig::uniform(0.05), 7);
        for _ in 0..20_000 {
            inj.draw(true);
        }
        let c = inj.counts();
        // Binomial(20000, 0.05): mean 1000, sd ≈ 31; allow 5 sd.
        for n in [c.drop, c.flip, c.truncate, c.delay] {
            assert!((845..=1155).contains(&n), "{c:?}");
        }
        assert_eq!(c.reset, 0);
    }
}
