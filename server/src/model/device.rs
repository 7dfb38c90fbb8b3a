//! Compute device selection (`--device cpu|cuda[:N]`).
//!
//! CUDA support is a cargo feature (`cuda`) because it needs the CUDA toolkit at build time; a
//! CPU-only build still understands the spelling and answers with a clear error instead of a
//! parse failure, so scripts written for GPU nodes fail loudly on the wrong binary.

use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// A parsed device request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The host CPU (uses this crate's CPU kernels).
    #[default]
    Cpu,
    /// CUDA device with this ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(Self::Cpu);
        }
        if s == "cuda" || s == "gpu" {
            return Ok(Self::Cuda(0));
        }
        if let Some(n) = s.strip_prefix("cuda:") {
            return n.parse().map(Self::Cuda).map_err(|_| {
                Error::InvalidArgument(format!(
                    "device '{s}': the ordinal after 'cuda:' must be a number"
                ))
            });
        }
        Err(Error::InvalidArgument(format!(
            "device '{s}': expected cpu, cuda or cuda:N"
        )))
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the candle device.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => open_cuda(n),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| Error::Device {
        device: format!("cuda:{ordinal}"),
        reason: e.to_string(),
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(Error::Device {
        device: format!("cuda:{ordinal}"),
        reason: "this binary was built without the `cuda` feature (cargo build --features cuda)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spellings() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("tpu".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn cpu_always_opens() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        let e = DeviceSpec::Cuda(0).open().unwrap_err();
        assert_eq!(e.code(), "device_unavailable");
        assert!(e.to_string().contains("--features cuda"));
    }
}
