//! The machine's own ceilings, measured in-process, so `auralguard bench` can say how far each
//! stage is from what the hardware allows instead of quoting a figure from another machine.
//!
//! Two probes, each a fraction of a second:
//! * **FMA throughput**: independent chains of fused multiply-adds, 8 lanes wide with AVX2+FMA
//!   when the CPU has them (checked at run time, so one binary runs anywhere), else the widest
//!   vector code the compiler emits for plain `a * b + c`. Measured on one thread and on every
//!   rayon thread at once: single-threaded stages are compared with the first, the batched
//!   network with the second.
//! * **Copy bandwidth**: `copy_from_slice` between two 64 MiB buffers (well beyond any cache),
//!   reported as bytes copied per second; the yardstick for decoding, which turns bytes into
//!   samples.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

/// What the probes found.
#[derive(Debug, Clone, Serialize)]
pub struct Peaks {
    /// The instruction set the FMA probe used (`avx2+fma` or `portable`).
    pub simd: &'static str,
    /// f32 GFLOP/s of one thread (a fused multiply-add counts as two).
    pub gflops_one_thread: f64,
    /// f32 GFLOP/s of all rayon threads together.
    pub gflops_all_threads: f64,
    /// Threads the second figure used.
    pub threads: usize,
    /// GB/s copied by one thread, buffers far larger than the caches.
    pub copy_gb_per_s: f64,
}

/// Runs both probes (about half a second).
pub fn measure() -> Peaks {
    let (simd, one) = fma_gflops(Duration::from_millis(120));
    let threads = rayon::current_num_threads().max(1);
    let all: f64 = (0..threads)
        .into_par_iter()
        .map(|_| fma_gflops(Duration::from_millis(120)).1)
        .sum();
    Peaks {
        simd,
        gflops_one_thread: one,
        gflops_all_threads: all,
        threads,
        copy_gb_per_s: copy_gb_per_s(64 << 20, 4),
    }
}

/// Independent accumulators: enough to hide the FMA latency (4–5 cycles) on two ports.
const CHAINS: usize = 12;
/// Inner iterations between clock reads.
const BLOCK: usize = 1 << 16;

/// GFLOP/s of this thread running FMA chains for about `for_at_least`.
fn fma_gflops(for_at_least: Duration) -> (&'static str, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            let flops_per_block = (BLOCK * CHAINS * 8 * 2) as f64;
            let gf = timed(for_at_least, flops_per_block, || unsafe {
                avx2::fma_block()
            });
            return ("avx2+fma", gf);
        }
    }
    let flops_per_block = (BLOCK * CHAINS * 8 * 2) as f64;
    (
        "portable",
        timed(for_at_least, flops_per_block, portable_block),
    )
}

/// Runs `block` until `for_at_least` has passed; GFLOP/s given `flops` per call.
fn timed(for_at_least: Duration, flops: f64, mut block: impl FnMut() -> f32) -> f64 {
    std::hint::black_box(block()); // warm-up (frequency ramp, page-in)
    let t0 = Instant::now();
    let mut calls = 0u64;
    while t0.elapsed() < for_at_least {
        std::hint::black_box(block());
        calls += 1;
    }
    calls as f64 * flops / t0.elapsed().as_secs_f64() / 1e9
}

/// The same work as the AVX2 kernel in plain Rust: eight-lane arrays the compiler vectorises
/// with whatever the build targets (SSE2 on a default x86-64 build).
fn portable_block() -> f32 {
    let m = std::hint::black_box([0.999_f32; 8]);
    let a = std::hint::black_box([1e-3_f32; 8]);
    let mut acc = [[1.0_f32; 8]; CHAINS];
    for _ in 0..BLOCK {
        for chain in acc.iter_mut() {
            for l in 0..8 {
                chain[l] = chain[l] * m[l] + a[l];
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `BLOCK` rounds of `CHAINS` independent 8-lane FMAs; returns a value that depends on all.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_block() -> f32 {
        let m = _mm256_set1_ps(std::hint::black_box(0.999));
        let a = _mm256_set1_ps(std::hint::black_box(1e-3));
        let mut acc = [_mm256_set1_ps(1.0); super::CHAINS];
        for _ in 0..super::BLOCK {
            for chain in acc.iter_mut() {
                *chain = _mm256_fmadd_ps(*chain, m, a);
            }
        }
        let mut sum = _mm256_setzero_ps();
        for chain in acc {
            sum = _mm256_add_ps(sum, chain);
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        lanes.iter().sum()
    }
}

/// GB/s copying `bytes` from one buffer to another, best of `reps`.
fn copy_gb_per_s(bytes: usize, reps: usize) -> f64 {
    let n = bytes / 4;
    let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut dst = vec![0f32; n];
    dst.copy_from_slice(&src); // page both in
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    (n * 4) as f64 / best / 1e9
}

/// How a stage compares with its ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct Achieved {
    /// The rate the stage reached, in `unit`.
    pub rate: f64,
    /// `GFLOP/s` or `GB/s`.
    pub unit: &'static str,
    /// The ceiling for this stage in the same unit (one thread or all, as the stage runs).
    pub ceiling: f64,
}

impl Achieved {
    /// The stage's rate as a fraction of the ceiling.
    pub fn of_ceiling(&self) -> f64 {
        self.rate / self.ceiling
    }
}

/// Floating-point work of one real-input FFT of `n` points: the usual `2.5 n log2 n` estimate
/// (half of a complex FFT's `5 n log2 n`).
pub fn real_fft_flops(n: usize) -> f64 {
    2.5 * n as f64 * (n as f64).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_report_plausible_ceilings() {
        let p = measure();
        // Any CPU this runs on does more than 1 GFLOP/s per thread and copies over 1 GB/s;
        // none does 1000 GFLOP/s on one thread.
        assert!(
            p.gflops_one_thread > 1.0 && p.gflops_one_thread < 1000.0,
            "{p:?}"
        );
        assert!(p.gflops_all_threads >= p.gflops_one_thread * 0.5, "{p:?}");
        assert!(p.copy_gb_per_s > 1.0, "{p:?}");
        let a = Achieved {
            rate: 5.0,
            unit: "GFLOP/s",
            ceiling: 20.0,
        };
        assert!((a.of_ceiling() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn fft_work_follows_n_log_n() {
        assert_eq!(real_fft_flops(2048), 2.5 * 2048.0 * 11.0);
    }
}
