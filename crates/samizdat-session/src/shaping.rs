//! Length and timing obfuscation inside the session, so it works on every transport: what a
//! watcher of the link sees is the session's encrypted frames (inside whatever the transport
//! adds), and these hide the sizes and the silences of what the session carries.
//!
//! - **Padding**: each flush of the output buffer is padded with a [`Message::Padding`] frame
//!   up to a multiple of [`Shaping::bucket`] bytes, so a 90-byte request and a 300-byte one
//!   leave as the same 512 bytes.
//! - **Chaff**: an established link sends a padding frame of random size (64 to 1024 bytes)
//!   at random times, on average every [`Shaping::chaff_every`], so silence on a link says
//!   nothing of what it is doing.
//! - **Budget**: padding and chaff together never exceed [`Shaping::allowance`] plus
//!   [`Shaping::budget_percent`] of the real bytes sent; past it the session sends the frames
//!   as they are. The first messages of a link (the most telling of what it does) are covered
//!   by the allowance; bulk transfers cost almost nothing (a flush of a megabyte gains at most
//!   a bucket).
//!
//! The receiver drops padding frames before anything above the session sees them. Timing
//! jitter needs a clock at the writer and lives in the runtime's writer task.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::{Duration, Instant};

/// How a session pads and adds chaff (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shaping {
    /// Padding and chaff allowed, in percent of the real bytes sent.
    pub budget_percent: u32,
    /// Padding and chaff allowed before real traffic has earned any, in bytes.
    pub allowance: u64,
    /// Each flush is padded up to a multiple of this many bytes (0: no padding).
    pub bucket: usize,
    /// Mean time between chaff frames on an established link (`None`: no chaff).
    pub chaff_every: Option<Duration>,
}

impl Shaping {
    /// No padding, no chaff.
    pub const OFF: Shaping =
        Shaping { budget_percent: 0, allowance: 0, bucket: 0, chaff_every: None };
}

impl Default for Shaping {
    /// 10 % overhead at most beyond a 16 KiB allowance, 512-byte buckets, chaff every 10 s
    /// on average.
    fn default() -> Self {
        Shaping {
            budget_percent: 10,
            allowance: 16 * 1024,
            bucket: 512,
            chaff_every: Some(Duration::from_secs(10)),
        }
    }
}

/// Smallest chaff frame, in bytes on the wire.
pub const MIN_CHAFF: usize = 64;
/// Largest chaff frame, in bytes on the wire.
pub const MAX_CHAFF: usize = 1024;

/// One session's padding state: what it may still spend, and when chaff is next due.
pub(crate) struct Shaper {
    config: Shaping,
    rng: ChaCha20Rng,
    real: u64,
    spent: u64,
    next_chaff: Option<Instant>,
}

impl Shaper {
    /// A shaper drawing its randomness from `seed` (a stream of its own, apart from the
    /// handshake's use of the same seed).
    pub(crate) fn new(config: Shaping, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        rng.set_stream(0x5368_6170_6572);
        Shaper { config, rng, real: 0, spent: 0, next_chaff: None }
    }

    /// The same settings, drawing from `seed` from now on.
    pub(crate) fn reseed(&mut self, seed: [u8; 32]) {
        *self = Shaper::new(self.config.clone(), seed);
    }

    /// Padding and chaff bytes that may still be sent.
    pub(crate) fn credit(&self) -> u64 {
        let earned = self.real.saturating_mul(u64::from(self.config.budget_percent)) / 100;
        self.config.allowance.saturating_add(earned).saturating_sub(self.spent)
    }

    /// Counts real bytes sent.
    pub(crate) fn sent_real(&mut self, n: usize) {
        self.real = self.real.saturating_add(n as u64);
    }

    /// Real bytes and padding bytes sent so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.real, self.spent)
    }

    /// The size (on the wire) of the padding frame that takes a flush of `len` bytes to the
    /// next bucket boundary, if the budget allows it; `min_frame` is the smallest frame the
    /// session can make, `max_frame` the largest.
    pub(crate) fn pad_for(
        &mut self,
        len: usize,
        min_frame: usize,
        max_frame: usize,
    ) -> Option<usize> {
        let bucket = self.config.bucket;
        if bucket == 0 || len == 0 {
            return None;
        }
        let target = (len + min_frame).div_ceil(bucket) * bucket;
        let pad = target - len;
        (pad <= max_frame && pad as u64 <= self.credit()).then(|| {
            self.spent += pad as u64;
            pad
        })
    }

    /// When chaff is next due.
    pub(crate) fn next_chaff(&self) -> Option<Instant> {
        self.next_chaff
    }

    /// Starts the chaff clock (once the link is up).
    pub(crate) fn start(&mut self, now: Instant) {
        if self.next_chaff.is_none() {
            self.schedule(now);
        }
    }

    fn schedule(&mut self, now: Instant) {
        // Uniform over half to one and a half times the mean: bounded, and no rhythm.
        self.next_chaff = self.config.chaff_every.map(|mean| {
            let ms = u64::try_from(mean.as_millis()).unwrap_or(u64::MAX).max(2);
            now + Duration::from_millis(ms / 2 + self.rng.next_u64() % ms)
        });
    }

    /// The size of a chaff frame to send now, if chaff is due and the budget allows it (the
    /// next one is scheduled either way).
    pub(crate) fn chaff_due(&mut self, now: Instant) -> Option<usize> {
        if self.next_chaff.is_none_or(|t| now < t) {
            return None;
        }
        self.schedule(now);
        let size = MIN_CHAFF + (self.rng.next_u64() % (MAX_CHAFF - MIN_CHAFF + 1) as u64) as usize;
        (size as u64 <= self.credit()).then(|| {
            self.spent += size as u64;
            size
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use super::*;

    #[test]
    fn padding_reaches_bucket_boundaries_within_the_budget() {
        let config = Shaping { allowance: 2000, ..Shaping::default() };
        let mut s = Shaper::new(config, [1; 32]);
        assert_eq!(s.pad_for(0, 40, 60_000), None, "nothing to pad");
        // 100 bytes + a frame of at least 40 → 512.
        assert_eq!(s.pad_for(100, 40, 60_000), Some(412));
        // Too close to the boundary for a frame: the next one.
        assert_eq!(s.pad_for(500, 40, 60_000), Some(524));
        assert_eq!(s.credit(), 2000 - 412 - 524);
        // The allowance spent, nothing more until real bytes earn it.
        assert_eq!(s.pad_for(100, 40, 60_000), Some(412));
        assert_eq!(s.pad_for(100, 40, 60_000), Some(412));
        assert_eq!(s.pad_for(100, 40, 60_000), None);
        s.sent_real(100_000);
        assert_eq!(s.credit(), 2000 + 10_000 - 3 * 412 - 524);
        assert_eq!(s.pad_for(100_000, 40, 60_000), Some(352));
        assert_eq!(s.pad_for(100, 40, 100), None, "larger than a frame can be");
        assert_eq!(s.totals(), (100_000, 3 * 412 + 524 + 352));
        let mut off = Shaper::new(Shaping::OFF, [1; 32]);
        assert_eq!(off.pad_for(100, 40, 60_000), None);
        assert_eq!(off.credit(), 0);
    }

    #[test]
    fn chaff_comes_at_bounded_random_times_and_stops_with_the_budget() {
        let every = Duration::from_secs(10);
        let config = Shaping { allowance: 4096, chaff_every: Some(every), ..Shaping::default() };
        let mut s = Shaper::new(config, [2; 32]);
        let t0 = Instant::now();
        assert_eq!(s.chaff_due(t0), None, "not started");
        s.start(t0);
        let first = s.next_chaff().unwrap();
        assert!(first >= t0 + every / 2 && first < t0 + every * 3 / 2);
        s.start(t0 + every);
        assert_eq!(s.next_chaff(), Some(first), "started once");
        assert_eq!(s.chaff_due(first - Duration::from_millis(1)), None);
        let mut now = first;
        let mut sizes = Vec::new();
        while let Some(n) = s.chaff_due(now) {
            assert!((MIN_CHAFF..=MAX_CHAFF).contains(&n));
            sizes.push(n);
            now = s.next_chaff().unwrap();
        }
        assert!(!sizes.is_empty() && sizes.iter().sum::<usize>() <= 4096, "{sizes:?}");
        // Past the budget chaff is still scheduled, but not sent.
        assert!(s.next_chaff().unwrap() > now);
        let mut none = Shaper::new(Shaping::OFF, [2; 32]);
        none.start(t0);
        assert_eq!(none.next_chaff(), None);
        // Different seeds, different times.
        let mut other = Shaper::new(config_with(every), [3; 32]);
        other.start(t0);
        assert_ne!(other.next_chaff(), Some(first));
    }

    fn config_with(every: Duration) -> Shaping {
        Shaping { chaff_every: Some(every), ..Shaping::default() }
    }
}
