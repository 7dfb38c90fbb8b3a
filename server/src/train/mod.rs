//! Training and evaluation: CSV datasets in, model packages and metrics out.
//!
//! * [`dataset`] — the labelled CSV (`filename,label[,split][,source]`).
//! * [`features`] — every clip through the server's own front-end, cached on disk.
//! * [`trainer`] — Adam on class-weighted cross-entropy, early stopping, seeded.
//! * [`rng`] — the one seeded random stream training draws from.
//! * [`protocol`] — leave-one-speaker/generator/family-out folds: the out-of-domain numbers.
//! * [`metrics`] — accuracy, precision/recall/F1, ROC-AUC, EER, per-source breakdown.
//! * [`plots`] — ROC, DET, score histogram and training curves as SVG.

pub mod dataset;
pub mod features;
pub mod metrics;
pub mod plots;
pub mod protocol;
pub mod rng;
pub mod trainer;
