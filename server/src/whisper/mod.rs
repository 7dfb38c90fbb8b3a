//! A pretrained Whisper encoder as the detector's front-end.
//!
//! A network trained from scratch on a few dozen voices learns those voices; an encoder trained
//! on hundreds of thousands of hours of speech has already seen what natural speech looks like
//! in every channel, and synthetic speech departs from it. The pieces: [`ct2`] reads the
//! CTranslate2 checkpoints that registry packages ship, [`convert`] renames them to the Hugging
//! Face layout, [`store`] imports, pins and loads them, [`mel`] and [`model`] run Whisper
//! itself, [`tokens`] transcribes (to prove an import right), and [`frontend`] turns a window
//! of audio into the per-layer summary a small head classifies.

pub mod convert;
pub mod ct2;
pub mod frontend;
pub mod mel;
pub mod model;
pub mod store;
pub mod tokens;

pub use frontend::WhisperFrontEnd;
