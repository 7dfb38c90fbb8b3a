//! AuralGuard: detects AI-generated (deepfake) speech.
//!
//! The library is the whole detector; the `auralguard` binary is a thin CLI over it.
//!
//! ```text
//! file/bytes ─▶ audio (decode, mono, 16 kHz, 15 s windows) ─▶ features (librosa log-mel)
//!            ─▶ model (CNN in candle, batched) ─▶ verdict (per window + overall)
//! ```
//!
//! * [`audio`] — symphonia decoding, rubato resampling, windowing.
//! * [`features`] — the log-mel front-end, equal to librosa's.
//! * [`model`] — model packages (manifest + safetensors), architectures, Keras import, devices.
//! * [`train`] — datasets, cached features, the training loop, evaluation metrics and plots.
//! * [`pipeline`] — the [`pipeline::Detector`] that ties them together with batching.
//! * [`verdict`] — the result types every front-end (CLI, HTTP) serialises.
//! * [`api`] — the HTTP server (`auralguard serve`).
//! * [`large_blocks`] — the server's global allocator: freed large blocks kept for reuse.
//! * [`bench`] and [`roofline`] — per-stage timings against same-run baselines and the
//!   machine's measured ceilings.

pub mod api;
pub mod audio;
pub mod batcher;
pub mod bench;
pub mod digest;
pub mod error;
pub mod features;
pub mod isa;
pub mod large_blocks;
pub mod model;
pub mod pipeline;
pub mod roofline;
pub mod store;
pub mod train;
pub mod verdict;
pub mod whisper;

pub use error::{Error, Result};
