//! Eight f64 lanes: one AVX-512 register, two AVX ones, or a plain array,
//! chosen by the instruction sets the build targets (the workspace builds
//! with `target-cpu=native`). The layers' kernels keep blocks of these in
//! registers; written as plain arrays, LLVM turned the larger blocks back
//! into scalar code on the stack.

#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
use std::arch::x86_64::*;

/// Lanes per [`F64x8`].
pub const LANES: usize = 8;

#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[derive(Clone, Copy)]
pub struct F64x8(__m512d);

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx",
    not(target_feature = "avx512f")
))]
#[derive(Clone, Copy)]
pub struct F64x8(__m256d, __m256d);

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
#[derive(Clone, Copy)]
pub struct F64x8([f64; LANES]);

#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
impl F64x8 {
    #[inline(always)]
    pub fn splat(v: f64) -> Self {
        // SAFETY (every block here): the build enables AVX-512F (the cfg
        // above), and loads and stores touch exactly the 8 lanes of a tile.
        Self(unsafe { _mm512_set1_pd(v) })
    }
    #[inline(always)]
    pub fn load(tile: &[f64; LANES]) -> Self {
        Self(unsafe { _mm512_loadu_pd(tile.as_ptr()) })
    }
    #[inline(always)]
    pub fn store(self, tile: &mut [f64; LANES]) {
        unsafe { _mm512_storeu_pd(tile.as_mut_ptr(), self.0) }
    }
    /// self + a · b, fused.
    #[inline(always)]
    pub fn mul_add(self, a: Self, b: Self) -> Self {
        Self(unsafe { _mm512_fmadd_pd(a.0, b.0, self.0) })
    }
    #[inline(always)]
    pub fn add(self, other: Self) -> Self {
        Self(unsafe { _mm512_add_pd(self.0, other.0) })
    }
    /// `[Σ v[0], …, Σ v[7]]`: a transpose-and-add tree, 14 shuffles and 7
    /// additions for all eight, where summing each register on its own
    /// would chain 7 dependent additions per register.
    #[inline(always)]
    pub fn lane_sums(v: &[Self; LANES]) -> [f64; LANES] {
        let mut out = [0.0; LANES];
        unsafe {
            // 128-bit block b of pair(x, y) holds x's and y's sums of lanes 2b, 2b + 1.
            let pair = |x: Self, y: Self| {
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
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx",
    not(target_feature = "avx512f")
))]
impl F64x8 {
    #[inline(always)]
    pub fn splat(v: f64) -> Self {
        // SAFETY (every block here): the build enables AVX (the cfg above),
        // and loads and stores touch exactly the 8 lanes of a tile.
        unsafe { Self(_mm256_set1_pd(v), _mm256_set1_pd(v)) }
    }
    #[inline(always)]
    pub fn load(tile: &[f64; LANES]) -> Self {
        unsafe {
            Self(
                _mm256_loadu_pd(tile.as_ptr()),
                _mm256_loadu_pd(tile.as_ptr().add(4)),
            )
        }
    }
    #[inline(always)]
    pub fn store(self, tile: &mut [f64; LANES]) {
        unsafe {
            _mm256_storeu_pd(tile.as_mut_ptr(), self.0);
            _mm256_storeu_pd(tile.as_mut_ptr().add(4), self.1);
        }
    }
    /// self + a · b, fused where the CPU has FMA.
    #[inline(always)]
    pub fn mul_add(self, a: Self, b: Self) -> Self {
        #[cfg(target_feature = "fma")]
        unsafe {
            Self(
                _mm256_fmadd_pd(a.0, b.0, self.0),
                _mm256_fmadd_pd(a.1, b.1, self.1),
            )
        }
        #[cfg(not(target_feature = "fma"))]
        unsafe {
            Self(
                _mm256_add_pd(_mm256_mul_pd(a.0, b.0), self.0),
                _mm256_add_pd(_mm256_mul_pd(a.1, b.1), self.1),
            )
        }
    }
    #[inline(always)]
    pub fn add(self, other: Self) -> Self {
        unsafe {
            Self(
                _mm256_add_pd(self.0, other.0),
                _mm256_add_pd(self.1, other.1),
            )
        }
    }
    /// `[Σ v[0], …, Σ v[7]]`: each register's halves added, then
    /// horizontal pair sums and a swap of 128-bit halves, four at a time.
    #[inline(always)]
    pub fn lane_sums(v: &[Self; LANES]) -> [f64; LANES] {
        let mut out = [0.0; LANES];
        unsafe {
            let half = |q: usize| _mm256_add_pd(v[q].0, v[q].1);
            let four = |q: usize| {
                let lo = _mm256_hadd_pd(half(q), half(q + 1));
                let hi = _mm256_hadd_pd(half(q + 2), half(q + 3));
                _mm256_add_pd(
                    _mm256_permute2f128_pd::<0x20>(lo, hi),
                    _mm256_permute2f128_pd::<0x31>(lo, hi),
                )
            };
            _mm256_storeu_pd(out.as_mut_ptr(), four(0));
            _mm256_storeu_pd(out.as_mut_ptr().add(4), four(4));
        }
        out
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
impl F64x8 {
    #[inline(always)]
    pub fn splat(v: f64) -> Self {
        Self([v; LANES])
    }
    #[inline(always)]
    pub fn load(tile: &[f64; LANES]) -> Self {
        Self(*tile)
    }
    #[inline(always)]
    pub fn store(self, tile: &mut [f64; LANES]) {
        *tile = self.0;
    }
    /// self + a · b (fused where the CPU has FMA; a software fma would be far slower).
    #[inline(always)]
    pub fn mul_add(self, a: Self, b: Self) -> Self {
        Self(std::array::from_fn(|t| {
            if cfg!(target_feature = "fma") {
                a.0[t].mul_add(b.0[t], self.0[t])
            } else {
                a.0[t] * b.0[t] + self.0[t]
            }
        }))
    }
    #[inline(always)]
    pub fn add(self, other: Self) -> Self {
        Self(std::array::from_fn(|t| self.0[t] + other.0[t]))
    }
    /// `[Σ v[0], …, Σ v[7]]`.
    #[inline(always)]
    pub fn lane_sums(v: &[Self; LANES]) -> [f64; LANES] {
        v.map(|x| x.0.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_multiply_add_and_sum() {
        let tiles: [[f64; LANES]; LANES] =
            std::array::from_fn(|q| std::array::from_fn(|t| (1 << t) as f64 * (q + 1) as f64));
        let v = tiles.map(|t| F64x8::load(&t));
        let want: [f64; LANES] = std::array::from_fn(|q| 255.0 * (q + 1) as f64);
        assert_eq!(F64x8::lane_sums(&v), want);
        let mut out = [0.0; LANES];
        F64x8::splat(1.0)
            .mul_add(v[1], F64x8::splat(0.5))
            .add(v[0])
            .store(&mut out);
        assert_eq!(out, std::array::from_fn(|t| 1.0 + (1 << t) as f64 * 2.0));
    }
}
