//! Progress display for `share` and `fetch`: the text of each frame (pure, tested) and the
//! bar that shows it on a terminal.
//!
//! A frame is only drawn once the total is known (before that a spinner says what is being
//! waited for, never "0 B / 0 B"); the rate counts only the bytes moved by this run (bytes
//! resumed from an earlier attempt would make it spike) and is shown once there is a second
//! of data to measure. The bar fills the terminal's width. Nothing is drawn when stderr is not
//! a terminal or with `--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

/// Shortest time over which a rate is shown.
const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);

/// `n` bytes in binary units, e.g. `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// A duration as `1h02m`, `3m05s` or `12s`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// `done` as a percentage of `total` (100 for an empty total).
pub fn percent(done: u64, total: u64) -> f64 {
    if total == 0 { 100.0 } else { done.min(total) as f64 * 100.0 / total as f64 }
}

/// Measures the rate of the bytes this run moved, excluding those it started with.
#[derive(Debug, Clone)]
pub struct Meter {
    started: Instant,
    /// Bytes already done when this run started (resumed).
    base: u64,
}

impl Meter {
    /// A meter started at `now`, with `resumed` bytes already done.
    pub fn new(now: Instant, resumed: u64) -> Self {
        Meter { started: now, base: resumed }
    }

    /// Bytes per second moved by this run, once there is enough time to measure.
    pub fn rate(&self, now: Instant, done: u64) -> Option<f64> {
        let elapsed = now.checked_duration_since(self.started)?;
        if elapsed < MIN_RATE_WINDOW {
            return None;
        }
        Some(done.saturating_sub(self.base) as f64 / elapsed.as_secs_f64())
    }
}

/// The text after the bar: `12.0 MiB / 64.0 MiB (18%) 3.2 MiB/s eta 16s`.
pub fn frame_text(done: u64, total: u64, rate: Option<f64>) -> String {
    let mut s = format!(
        "{} / {} ({:.0}%)",
        human_bytes(done.min(total)),
        human_bytes(total),
        percent(done, total).floor()
    );
    if let Some(r) = rate.filter(|r| *r >= 1.0) {
        s.push_str(&format!(" {}/s", human_bytes(r as u64)));
        let left = total.saturating_sub(done);
        s.push_str(&format!(" eta {}", human_duration((left as f64 / r).ceil() as u64)));
    }
    s
}

/// The bar of one operation: a spinner until the total is known, then a bar.
pub struct Bar {
    bar: ProgressBar,
    meter: Option<Meter>,
    prefix: &'static str,
}

impl Bar {
    /// A bar labelled `prefix`, showing `waiting` until the first frame; hidden with `json`
    /// or when stderr is not a terminal.
    pub fn new(prefix: &'static str, waiting: &str, json: bool) -> Self {
        let target = if json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        // Set up hidden, so that the first frame drawn is a complete one.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {msg}") {
            bar.set_style(style);
        }
        bar.set_prefix(prefix);
        bar.set_message(waiting.to_owned());
        bar.set_draw_target(target);
        bar.enable_steady_tick(Duration::from_millis(120));
        Bar { bar, meter: None, prefix }
    }

    /// Shows that `done` of `total` bytes are done, `resumed` of them by an earlier run.
    pub fn update(&mut self, done: u64, total: Option<u64>, resumed: u64) {
        let Some(total) = total else { return };
        let now = Instant::now();
        let first = self.meter.is_none();
        let meter = self.meter.get_or_insert_with(|| Meter::new(now, resumed));
        let rate = meter.rate(now, done);
        if first {
            self.bar.disable_steady_tick();
        }
        self.bar.set_length(total);
        self.bar.set_position(done.min(total));
        self.bar.set_message(frame_text(done, total, rate));
        if first {
            // Switch to the bar only now that its length, position and text are right.
            if let Ok(style) = ProgressStyle::with_template("{prefix} [{wide_bar}] {msg}") {
                self.bar.set_style(style.progress_chars("=> "));
            }
            self.bar.set_prefix(self.prefix);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bytes_and_durations_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(185), "3m05s");
        assert_eq!(human_duration(3720), "1h02m");
    }

    #[test]
    fn rate_excludes_resumed_bytes_and_waits_for_a_second() {
        let t0 = Instant::now();
        let m = Meter::new(t0, 50 << 20);
        // Right after the start there is no rate: no spike from the resumed 50 MiB.
        assert_eq!(m.rate(t0, 50 << 20), None);
        assert_eq!(m.rate(t0 + Duration::from_millis(900), 51 << 20), None);
        let r = m.rate(t0 + Duration::from_secs(2), 54 << 20).unwrap();
        assert!((r - (2 << 20) as f64).abs() < 1.0, "{r}");
        // Before the meter started: none.
        assert_eq!(Meter::new(t0 + Duration::from_secs(5), 0).rate(t0, 1), None);
    }

    #[test]
    fn frames_show_totals_percent_rate_and_eta() {
        assert_eq!(frame_text(0, 64 << 20, None), "0 B / 64.0 MiB (0%)");
        assert_eq!(
            frame_text(16 << 20, 64 << 20, Some((4 << 20) as f64)),
            "16.0 MiB / 64.0 MiB (25%) 4.0 MiB/s eta 12s"
        );
        // Never above the total, never a zero rate's infinite eta.
        assert_eq!(frame_text(70, 64, Some(0.0)), "64 B / 64 B (100%)");
        assert_eq!(percent(0, 0), 100.0);
        assert_eq!(percent(1, 3).floor(), 33.0);
    }

    #[test]
    fn a_hidden_bar_accepts_updates() {
        let mut b = Bar::new("fetching", "looking for peers", true);
        b.update(0, None, 0);
        assert!(b.meter.is_none(), "no frame before the total is known");
        b.update(10, Some(100), 10);
        b.update(20, Some(100), 10);
        assert_eq!(b.bar.position(), 20);
        assert_eq!(b.bar.length(), Some(100));
        b.finish();
    }
}
