//! The machine's fused multiply-add peak, measured: the ceiling the kernels'
//! GFLOP/s are reported against.
//!
//! Each thread of the rayon pool runs a loop of independent FMAs on
//! registers only — twelve chains with AVX2 (all sixteen ymm registers would
//! spill the two constants), twenty-four with AVX-512, more than the FMA
//! latency times the two FMA ports — so nothing but the FMA units limits it.

use crate::isa::{active, Isa};
use rayon::prelude::*;
use std::time::Instant;

/// Rounds the peak is measured in; the fastest counts.
const ROUNDS: u32 = 5;

/// FMA throughput of the whole pool in GFLOP/s (one FMA = 2 FLOP), with the
/// active instruction set, over about `seconds`: the best of [`ROUNDS`]
/// rounds, as the layers' times are the best of theirs. A ceiling can only
/// be lowered by a round that shared the cores (a shared machine's steal
/// time once made one 0.5 s measurement read too low, and layers above
/// 100 % of it).
pub fn fma_peak_gflops(seconds: f64) -> f64 {
    let threads = rayon::current_num_threads();
    let isa = active();
    // Calibrate the iteration count on one thread, then run all at once.
    let mut iters = 1u64 << 16;
    loop {
        let t = Instant::now();
        std::hint::black_box(spin(isa, iters));
        let dt = t.elapsed().as_secs_f64();
        if dt > 0.05 {
            iters = ((iters as f64) * seconds / f64::from(ROUNDS) / dt).max(1.0) as u64;
            break;
        }
        iters *= 4;
    }
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let flops: f64 = (0..threads)
                .into_par_iter()
                .map(|_| std::hint::black_box(spin(isa, iters)))
                .sum();
            flops / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Runs `iters` rounds of independent vector FMAs and returns the FLOPs done.
fn spin(isa: Isa, iters: u64) -> f64 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `active()` only returns instruction sets the CPU has.
        Isa::Avx512 => unsafe { x86::spin_avx512(iters) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::spin_avx2(iters) },
        _ => {
            let mut acc = [1.0f32; 16];
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = a.mul_add(0.999_999, 1e-7);
                }
            }
            std::hint::black_box(acc);
            iters as f64 * 16.0 * 2.0
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn spin_avx2(iters: u64) -> f64 {
        let m = _mm256_set1_ps(0.999_999);
        let c = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        std::hint::black_box(acc);
        iters as f64 * 12.0 * 8.0 * 2.0
    }

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn spin_avx512(iters: u64) -> f64 {
        let m = _mm512_set1_ps(0.999_999);
        let c = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); 24];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        std::hint::black_box(acc);
        iters as f64 * 24.0 * 16.0 * 2.0
    }
}
