//! The instruction set a hand-tuned CPU kernel runs with, chosen once at run time.
//!
//! Release builds target baseline x86-64 (SSE2) so one binary runs on any machine; the hot
//! kernels (convolution rows, the power spectrum, the mel product, the decibel conversion) check
//! here whether the CPU has AVX2 and FMA and, if so, run code compiled for them. Every such
//! kernel keeps a portable path, and its tests compare the two.

/// Which instruction set a kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 8-lane AVX2 with fused multiply-add (x86-64, checked at run time).
    Avx2Fma,
    /// Plain Rust loops; any CPU.
    Portable,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    /// `self`, unless it asks for more than this CPU has: a kernel handed [`Isa::Avx2Fma`] on a
    /// CPU without AVX2 must run portably rather than execute illegal instructions.
    pub fn supported(self) -> Self {
        match self {
            Isa::Avx2Fma if Isa::detect() == Isa::Avx2Fma => Isa::Avx2Fma,
            _ => Isa::Portable,
        }
    }
}
