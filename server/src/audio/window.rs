//! Cutting a 16 kHz stream into the fixed-length windows the model sees.
//!
//! The rule is the original service's (and the parity fixtures'): window `k` covers samples
//! `[k·hop, k·hop + len)`, zero-padded past the end of the audio; windows start while
//! `k·hop < n`, there is always at least one, and a window holding fewer than `min_samples` real
//! samples is dropped unless it is the first. Windows are emitted as soon as they are complete, so
//! only `len + hop` samples are ever buffered.

use crate::error::{Error, Result};

/// Geometry of the windows, in samples at the model rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Samples per window (240 000 = 15 s at 16 kHz).
    pub len: usize,
    /// Samples between window starts (equal to `len` for back-to-back windows).
    pub hop: usize,
    /// A window with fewer real samples than this is dropped unless it is the only one.
    pub min_samples: usize,
}

impl WindowConfig {
    /// Builds the geometry from seconds at `sample_rate`.
    pub fn from_seconds(
        window_s: f64,
        hop_s: f64,
        min_final_s: f64,
        sample_rate: u32,
    ) -> Result<Self> {
        let to_samples = |s: f64| (s * sample_rate as f64).round() as usize;
        let cfg = Self {
            len: to_samples(window_s),
            hop: to_samples(hop_s),
            min_samples: to_samples(min_final_s),
        };
        if !(window_s.is_finite() && hop_s.is_finite() && min_final_s.is_finite())
            || cfg.len == 0
            || cfg.hop == 0
            || cfg.min_samples > cfg.len
        {
            return Err(Error::InvalidArgument(format!(
                "window {window_s} s, hop {hop_s} s, minimum final window {min_final_s} s: window and \
                 hop must be positive and the minimum no longer than the window"
            )));
        }
        Ok(cfg)
    }
}

/// One window of model-rate audio.
#[derive(Debug, Clone)]
pub struct Window {
    /// Position of the window in the file (0-based).
    pub index: usize,
    /// First sample of the window in the file.
    pub start: u64,
    /// Real (not padding) samples in the window.
    pub real_samples: usize,
    /// Exactly `len` samples, zero-padded past the end of the audio.
    pub samples: Vec<f32>,
}

/// Incremental windower: push samples, pop finished windows.
pub struct Windower {
    cfg: WindowConfig,
    /// Samples from `buf_start` onwards that may still belong to a future window.
    buf: Vec<f32>,
    buf_start: u64,
    next_index: usize,
    seen: u64,
    ready: std::collections::VecDeque<Window>,
    finished: bool,
}

impl Windower {
    /// Creates a windower; fails on a degenerate geometry.
    pub fn new(cfg: WindowConfig) -> Result<Self> {
        if cfg.len == 0 || cfg.hop == 0 || cfg.min_samples > cfg.len {
            return Err(Error::InvalidArgument(format!(
                "invalid window geometry {cfg:?}"
            )));
        }
        Ok(Self {
            cfg,
            buf: Vec::with_capacity(cfg.len + cfg.hop),
            buf_start: 0,
            next_index: 0,
            seen: 0,
            ready: Default::default(),
            finished: false,
        })
    }

    /// Samples pushed so far.
    pub fn samples_seen(&self) -> u64 {
        self.seen
    }

    /// Adds samples and queues every window they complete.
    pub fn push(&mut self, samples: &[f32]) {
        debug_assert!(!self.finished, "push after finish");
        self.seen += samples.len() as u64;
        let mut rest = samples;
        while !rest.is_empty() {
            let start = self.next_start();
            // Samples before the next window's start are never needed (hop > len).
            if self.buf_start < start && self.buf.is_empty() {
                let skip = ((start - self.buf_start) as usize).min(rest.len());
                rest = &rest[skip..];
                self.buf_start += skip as u64;
                continue;
            }
            let want = self.cfg.len - self.buf.len();
            let take = want.min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == self.cfg.len {
                self.emit_full();
            }
        }
    }

    /// Marks the end of the stream and queues the trailing (padded) windows.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        loop {
            let start = self.next_start();
            if start >= self.seen && self.next_index > 0 {
                break;
            }
            let real = self.seen.saturating_sub(start) as usize;
            if real < self.cfg.min_samples && self.next_index > 0 {
                break;
            }
            let mut samples = Vec::with_capacity(self.cfg.len);
            let from = (start.saturating_sub(self.buf_start) as usize).min(self.buf.len());
            samples.extend_from_slice(&self.buf[from..]);
            samples.resize(self.cfg.len, 0.0);
            self.ready.push_back(Window {
                index: self.next_index,
                start,
                real_samples: real.min(self.cfg.len),
                samples,
            });
            self.next_index += 1;
            if start + self.cfg.hop as u64 >= self.seen {
                break;
            }
        }
        self.buf.clear();
    }

    /// Next finished window, if any.
    pub fn pop(&mut self) -> Option<Window> {
        self.ready.pop_front()
    }

    fn next_start(&self) -> u64 {
        self.next_index as u64 * self.cfg.hop as u64
    }

    fn emit_full(&mut self) {
        let start = self.next_start();
        let samples = self.buf.clone();
        self.ready.push_back(Window {
            index: self.next_index,
            start,
            real_samples: self.cfg.len,
            samples,
        });
        self.next_index += 1;
        // Keep only the overlap with the next window.
        let next = self.next_start();
        let keep_from = (next - self.buf_start).min(self.buf.len() as u64) as usize;
        self.buf.drain(..keep_from);
        self.buf_start += keep_from as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(len: usize, hop: usize, min: usize) -> WindowConfig {
        WindowConfig {
            len,
            hop,
            min_samples: min,
        }
    }

    fn run(cfg: WindowConfig, n: usize, piece: usize) -> Vec<Window> {
        let x: Vec<f32> = (1..=n).map(|i| i as f32).collect();
        let mut w = Windower::new(cfg).unwrap();
        for c in x.chunks(piece.max(1)) {
            w.push(c);
        }
        w.finish();
        std::iter::from_fn(|| w.pop()).collect()
    }

    #[test]
    fn fixture_rule_for_back_to_back_windows() {
        // 538 455 samples (the long parity clip) → 3 windows, the last with 58 455 real samples.
        let ws = run(cfg(240_000, 240_000, 16_000), 538_455, 10_000);
        assert_eq!(ws.len(), 3);
        assert_eq!(ws[2].real_samples, 58_455);
        assert_eq!(ws[2].samples[58_454], 538_455.0);
        assert_eq!(ws[2].samples[58_455], 0.0);
        assert_eq!(ws[1].samples[0], 240_001.0);
    }

    #[test]
    fn short_tail_is_dropped_but_a_short_file_is_kept() {
        assert_eq!(run(cfg(100, 100, 10), 205, 7).len(), 2);
        assert_eq!(run(cfg(100, 100, 10), 210, 7).len(), 3);
        let only = run(cfg(100, 100, 10), 3, 7);
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].real_samples, 3);
        assert_eq!(&only[0].samples[..4], &[1.0, 2.0, 3.0, 0.0]);
    }

    #[test]
    fn exact_multiple_has_no_empty_tail() {
        assert_eq!(run(cfg(100, 100, 10), 300, 300).len(), 3);
    }

    #[test]
    fn overlapping_windows_start_every_hop() {
        let ws = run(cfg(100, 50, 10), 260, 13);
        let starts: Vec<u64> = ws.iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![0, 50, 100, 150, 200, 250]);
        for w in &ws {
            assert_eq!(w.samples[0], w.start as f32 + 1.0);
        }
        assert_eq!(ws[5].real_samples, 10);
    }

    #[test]
    fn gapped_windows_skip_samples() {
        let ws = run(cfg(10, 25, 1), 60, 4);
        let starts: Vec<u64> = ws.iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![0, 25, 50]);
        assert_eq!(ws[1].samples[0], 26.0);
    }

    #[test]
    fn chunking_is_irrelevant() {
        let a = run(cfg(100, 30, 5), 1000, 1000);
        let b = run(cfg(100, 30, 5), 1000, 3);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.samples, y.samples);
        }
    }

    #[test]
    fn empty_stream_yields_one_silent_window() {
        let ws = run(cfg(10, 10, 1), 0, 1);
        assert_eq!(ws.len(), 1);
        assert_eq!(ws[0].real_samples, 0);
    }
}
