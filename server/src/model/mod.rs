//! Models: packages on disk, architectures, CPU kernels, devices and Keras import.
//!
//! * [`manifest`] — `auralguard.json`, strict and validated.
//! * [`package`] — load/save a package folder; [`package::LoadedModel`] is a ready network.
//! * [`arch`] — architectures by name ([`arch::lookup`]), the [`arch::Classifier`] trait.
//! * [`ops`] — channels-last CPU convolution and pooling as candle custom ops.
//! * [`device`] — `cpu` / `cuda[:N]`.
//! * [`registry`] — `models:/` URIs: resolve through MLflow, download into the local cache.
//! * [`keras`] + [`import`] — read the original service's `.h5`/`.keras` and write a package.

pub mod arch;
pub mod device;
pub mod import;
pub mod keras;
pub mod manifest;
pub mod ops;
pub mod package;
pub mod registry;

pub use device::DeviceSpec;
pub use manifest::{Aggregation, Manifest};
pub use package::{LoadedModel, ModelPackage};
pub use registry::{FetchedModel, ModelRegistry, ModelSource};
