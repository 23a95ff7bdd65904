//! Eight f64 lanes: one AVX-512 register, two AVX2 ones, or a plain array,
//! chosen at run time by `nabla_kernels::isa` (the machine this project
//! runs on changes between an AVX2-only EPYC and an AVX-512 Xeon, and
//! `NABLA_ISA=avx2` must be able to run the narrower path on the wider one).
//!
//! A kernel is a [`Kernel`]: its `run::<S>` is generic over the lane type
//! and `#[inline(always)]` down to the intrinsics, and [`dispatch`] calls it
//! from a function compiled for the chosen instruction set, so the whole
//! kernel is compiled for it. The layers keep blocks of these in registers;
//! written as plain arrays, LLVM turned the larger blocks back into scalar
//! code on the stack.

use nabla_kernels::isa::{self, Isa};

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Lanes per vector.
pub const LANES: usize = 8;

/// Eight f64 lanes and the block shapes that fit this instruction set's
/// registers.
pub trait Lanes: Copy {
    /// Output rows a product computes together, each times [`Lanes::COLS`]
    /// tiles of columns: every weight loaded is used for `COLS` tiles and
    /// every input tile for `ROWS` rows, so the loads keep up with the
    /// multiply-adds.
    const ROWS: usize;
    const COLS: usize;
    /// The weight gradient's blocks: rows of dz × rows of x.
    const GRAD_ROWS: usize;
    const GRAD_COLS: usize;
    /// Whether `f64::mul_add` is one instruction here (else a libm call, far
    /// slower than the unfused multiply and add).
    const FUSED: bool;

    fn splat(v: f64) -> Self;
    fn load(tile: &[f64; LANES]) -> Self;
    fn store(self, tile: &mut [f64; LANES]);
    /// self + a · b, fused.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// A dot product's accumulator: the products of a tile's lanes summed
    /// into one register, so a block of the weight gradient holds one
    /// register per entry (AVX2 folds its two halves into one).
    type Dot: Copy;
    fn dot_zero() -> Self::Dot;
    /// acc + a ⊙ b, folded into the accumulator's lanes.
    fn dot_mul_add(acc: Self::Dot, a: Self, b: Self) -> Self::Dot;
    /// Each accumulator's lanes summed, in registers: a transpose-and-add
    /// over groups of accumulators, where summing each on its own would
    /// chain dependent additions.
    fn dot_sums<const R: usize, const C: usize>(acc: &[[Self::Dot; C]; R]) -> [[f64; C]; R];

    /// a · b + c, fused where [`Lanes::FUSED`].
    #[inline(always)]
    fn fma(a: f64, b: f64, c: f64) -> f64 {
        if Self::FUSED {
            a.mul_add(b, c)
        } else {
            a * b + c
        }
    }
}

/// A kernel written once for every [`Lanes`] type.
pub trait Kernel {
    type Output;
    /// The kernel's body; implementations are `#[inline(always)]` (and so
    /// is everything they call) so that it is compiled inside [`dispatch`]'s
    /// per-instruction-set functions.
    fn run<S: Lanes>(self) -> Self::Output;
}

/// Runs `kernel` with the lanes of the instruction set in use
/// ([`isa::active`]: the widest the CPU has, or a narrower one forced by
/// `NABLA_ISA`; in this crate's tests, the one [`tests::on`] forces).
pub fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(test)]
    let chosen = tests::FORCED.get().unwrap_or_else(isa::active);
    #[cfg(not(test))]
    let chosen = isa::active();
    match chosen {
        // SAFETY: `active` never returns an instruction set this CPU lacks.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { run_avx512(kernel) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_avx2(kernel) },
        _ => kernel.run::<Portable>(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Avx512>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Avx2>()
}

/// One AVX-512 register. Only made inside [`run_avx512`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx512(__m512d);

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx512 {
    /// With 32 registers 5 × 4 tile accumulators, the 4 input tiles and a
    /// weight fit.
    const ROWS: usize = 5;
    const COLS: usize = 4;
    const GRAD_ROWS: usize = 5;
    const GRAD_COLS: usize = 4;
    type Dot = Self;
    const FUSED: bool = true;

    // SAFETY (every block here): values of this type exist only in code
    // reached through `run_avx512`, which the CPU has (see `dispatch`), and
    // loads and stores touch exactly the 8 lanes of a tile.
    #[inline(always)]
    fn splat(v: f64) -> Self {
        Self(unsafe { _mm512_set1_pd(v) })
    }
    #[inline(always)]
    fn load(tile: &[f64; LANES]) -> Self {
        Self(unsafe { _mm512_loadu_pd(tile.as_ptr()) })
    }
    #[inline(always)]
    fn store(self, tile: &mut [f64; LANES]) {
        unsafe { _mm512_storeu_pd(tile.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        Self(unsafe { _mm512_fmadd_pd(a.0, b.0, self.0) })
    }
    #[inline(always)]
    fn dot_zero() -> Self {
        Self::splat(0.0)
    }
    #[inline(always)]
    fn dot_mul_add(acc: Self, a: Self, b: Self) -> Self {
        acc.mul_add(a, b)
    }
    #[inline(always)]
    fn dot_sums<const R: usize, const C: usize>(acc: &[[Self; C]; R]) -> [[f64; C]; R] {
        let mut out = [[0.0; C]; R];
        for g in (0..R * C).step_by(LANES) {
            let v: [Self; LANES] = std::array::from_fn(|q| entry(acc, g + q, Self::splat(0.0)));
            scatter(&mut out, g, &eight_sums(&v));
        }
        out
    }
}

/// `[Σ v[0], …, Σ v[7]]` by a transpose-and-add tree, 14 shuffles and 7
/// additions for all eight.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn eight_sums(v: &[Avx512; LANES]) -> [f64; LANES] {
    let mut out = [0.0; LANES];
    // SAFETY: `Avx512` values exist only where the CPU has AVX-512.
    unsafe {
        // 128-bit block b of pair(x, y) holds x's and y's sums of lanes 2b, 2b + 1.
        let pair = |x: Avx512, y: Avx512| {
            _mm512_add_pd(_mm512_unpacklo_pd(x.0, y.0), _mm512_unpackhi_pd(x.0, y.0))
        };
        // Adds blocks 0 + 1 and 2 + 3 of each of a and b.
        let fold = |a: __m512d, b: __m512d| {
            _mm512_add_pd(
                _mm512_shuffle_f64x2::<0b10_00_10_00>(a, b),
                _mm512_shuffle_f64x2::<0b11_01_11_01>(a, b),
            )
        };
        let sums = fold(
            fold(pair(v[0], v[1]), pair(v[2], v[3])),
            fold(pair(v[4], v[5]), pair(v[6], v[7])),
        );
        _mm512_storeu_pd(out.as_mut_ptr(), sums);
    }
    out
}

/// Two AVX2 registers. Only made inside [`run_avx2`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx2(__m256d, __m256d);

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    /// With 16 registers, two per tile, only 5 × 1 accumulators.
    const ROWS: usize = 5;
    const COLS: usize = 1;
    /// One register per entry, 10 accumulators: the fastest epoch of the
    /// shapes from 1 × 4 to 5 × 2 (`nabla bench mlp`: 5 × 2 21.2 ms,
    /// 2 × 4 22.1 ms, 2 × 2 22.6 ms, 4 × 3 23.3 ms).
    const GRAD_ROWS: usize = 5;
    const GRAD_COLS: usize = 2;
    type Dot = __m256d;
    const FUSED: bool = true;

    // SAFETY (every block here): values of this type exist only in code
    // reached through `run_avx2`, which the CPU has (see `dispatch`), and
    // loads and stores touch exactly the 8 lanes of a tile.
    #[inline(always)]
    fn splat(v: f64) -> Self {
        unsafe { Self(_mm256_set1_pd(v), _mm256_set1_pd(v)) }
    }
    #[inline(always)]
    fn load(tile: &[f64; LANES]) -> Self {
        unsafe {
            Self(
                _mm256_loadu_pd(tile.as_ptr()),
                _mm256_loadu_pd(tile.as_ptr().add(4)),
            )
        }
    }
    #[inline(always)]
    fn store(self, tile: &mut [f64; LANES]) {
        unsafe {
            _mm256_storeu_pd(tile.as_mut_ptr(), self.0);
            _mm256_storeu_pd(tile.as_mut_ptr().add(4), self.1);
        }
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        unsafe {
            Self(
                _mm256_fmadd_pd(a.0, b.0, self.0),
                _mm256_fmadd_pd(a.1, b.1, self.1),
            )
        }
    }
    #[inline(always)]
    fn dot_zero() -> __m256d {
        unsafe { _mm256_setzero_pd() }
    }
    #[inline(always)]
    fn dot_mul_add(acc: __m256d, a: Self, b: Self) -> __m256d {
        unsafe { _mm256_fmadd_pd(a.1, b.1, _mm256_fmadd_pd(a.0, b.0, acc)) }
    }
    /// Horizontal pair sums and a swap of 128-bit halves, four
    /// accumulators at a time.
    #[inline(always)]
    fn dot_sums<const R: usize, const C: usize>(acc: &[[__m256d; C]; R]) -> [[f64; C]; R] {
        let mut out = [[0.0; C]; R];
        for g in (0..R * C).step_by(4) {
            let mut four = [0.0; 4];
            unsafe {
                let v = |q: usize| entry(acc, g + q, _mm256_setzero_pd());
                let lo = _mm256_hadd_pd(v(0), v(1));
                let hi = _mm256_hadd_pd(v(2), v(3));
                let sums = _mm256_add_pd(
                    _mm256_permute2f128_pd::<0x20>(lo, hi),
                    _mm256_permute2f128_pd::<0x31>(lo, hi),
                );
                _mm256_storeu_pd(four.as_mut_ptr(), sums);
            }
            scatter(&mut out, g, &four);
        }
        out
    }
}

/// A plain array, for CPUs without AVX2 (and the scalar functions).
#[derive(Clone, Copy)]
pub struct Portable([f64; LANES]);

impl Lanes for Portable {
    const ROWS: usize = 5;
    const COLS: usize = 1;
    const GRAD_ROWS: usize = 2;
    const GRAD_COLS: usize = 2;
    type Dot = Self;
    const FUSED: bool = cfg!(target_feature = "fma");

    #[inline(always)]
    fn splat(v: f64) -> Self {
        Self([v; LANES])
    }
    #[inline(always)]
    fn load(tile: &[f64; LANES]) -> Self {
        Self(*tile)
    }
    #[inline(always)]
    fn store(self, tile: &mut [f64; LANES]) {
        *tile = self.0;
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        Self(std::array::from_fn(|t| {
            Self::fma(a.0[t], b.0[t], self.0[t])
        }))
    }
    #[inline(always)]
    fn dot_zero() -> Self {
        Self::splat(0.0)
    }
    #[inline(always)]
    fn dot_mul_add(acc: Self, a: Self, b: Self) -> Self {
        acc.mul_add(a, b)
    }
    #[inline(always)]
    fn dot_sums<const R: usize, const C: usize>(acc: &[[Self; C]; R]) -> [[f64; C]; R] {
        acc.map(|row| row.map(|v| v.0.iter().sum()))
    }
}

/// Entry `e` of R × C accumulators in row-major order, `zero` past the end
/// (indices are constants once a block's loops are unrolled).
#[inline(always)]
fn entry<D: Copy, const R: usize, const C: usize>(acc: &[[D; C]; R], e: usize, zero: D) -> D {
    if e < R * C {
        acc[e / C][e % C]
    } else {
        zero
    }
}

/// `sums` into entries `g, g + 1, …` of `out`, row-major, up to its end.
#[inline(always)]
fn scatter<const R: usize, const C: usize>(out: &mut [[f64; C]; R], g: usize, sums: &[f64]) {
    for (e, &v) in (g..R * C).zip(sums) {
        out[e / C][e % C] = v;
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Per thread, unlike `isa::set_override`, so a test that forces a
        /// path leaves the tests running beside it on theirs (the kernels
        /// here are single-threaded).
        pub static FORCED: Cell<Option<Isa>> = const { Cell::new(None) };
    }

    /// `f` with every kernel on this thread using `isa`.
    pub fn on<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
        FORCED.set(Some(isa));
        let out = f();
        FORCED.set(None);
        out
    }

    struct MultiplyAddSum;

    impl Kernel for MultiplyAddSum {
        type Output = ([[f64; 3]; 3], [f64; LANES]);
        #[inline(always)]
        fn run<S: Lanes>(self) -> Self::Output {
            let tiles: [[f64; LANES]; 9] =
                std::array::from_fn(|q| std::array::from_fn(|t| (1 << t) as f64 * (q + 1) as f64));
            let v = tiles.map(|t| S::load(&t));
            let mut out = [0.0; LANES];
            S::splat(1.0)
                .mul_add(v[1], S::splat(0.5))
                .mul_add(v[0], S::splat(1.0))
                .store(&mut out);
            // Nine accumulators: past one group of four (AVX2) and of eight.
            let twos = S::splat(2.0);
            let dots: [[S::Dot; 3]; 3] = std::array::from_fn(|r| {
                std::array::from_fn(|c| S::dot_mul_add(S::dot_zero(), v[3 * r + c], twos))
            });
            (S::dot_sums(&dots), out)
        }
    }

    /// Every instruction set this CPU has, each forced in turn.
    #[test]
    fn lanes_multiply_add_and_sum_on_every_instruction_set() {
        for isa in Isa::available() {
            let (sums, out) = on(isa, || dispatch(MultiplyAddSum));
            let want: [[f64; 3]; 3] =
                std::array::from_fn(|r| std::array::from_fn(|c| 510.0 * (3 * r + c + 1) as f64));
            assert_eq!(sums, want, "{}", isa.name());
            let want: [f64; LANES] = std::array::from_fn(|t| 1.0 + (1 << t) as f64 * 2.0);
            assert_eq!(out, want, "{}", isa.name());
        }
    }
}
