//! Copying up to eight rows of one matrix into the columns of another: a
//! block transpose, which is what packing an operand for the GEMM is when
//! its rows run along the wrong dimension (a row-major `A`, a transposed
//! `B`). Done one element at a time, every store of a packed panel lands on
//! another cache line; here eight rows by eight columns pass through
//! registers at once (AVX), so each store is a run of the panel's row.

use crate::isa::{active, Isa};

/// `dst[kk * ld_dst + i] = src[i * ld_src + kk]` for `i < rows` (1 to 8)
/// and `kk < k`.
pub(crate) fn transpose_rows(
    src: &[f32],
    ld_src: usize,
    rows: usize,
    k: usize,
    dst: &mut [f32],
    ld_dst: usize,
) {
    assert!((1..=8).contains(&rows), "{rows} rows: 1 to 8 go at once");
    if k == 0 {
        return;
    }
    assert!((rows - 1) * ld_src + k <= src.len(), "source too short");
    assert!(
        (k - 1) * ld_dst + rows <= dst.len(),
        "destination too short"
    );
    #[cfg(target_arch = "x86_64")]
    if active() >= Isa::Avx2 {
        // SAFETY: the bounds were checked above, and AVX is part of both
        // instruction sets `active()` only returns when the CPU has them.
        return unsafe { x86::transpose_rows(src, ld_src, rows, k, dst, ld_dst) };
    }
    one_by_one(src, ld_src, rows, 0..k, dst, ld_dst);
}

/// [`transpose_rows`] for the columns `cols`, element by element.
fn one_by_one(
    src: &[f32],
    ld_src: usize,
    rows: usize,
    cols: std::ops::Range<usize>,
    dst: &mut [f32],
    ld_dst: usize,
) {
    for kk in cols {
        for i in 0..rows {
            dst[kk * ld_dst + i] = src[i * ld_src + kk];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// See [`super::transpose_rows`]; bounds checked by the caller.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose_rows(
        src: &[f32],
        ld_src: usize,
        rows: usize,
        k: usize,
        dst: &mut [f32],
        ld_dst: usize,
    ) {
        let full = k / 8 * 8;
        let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
        // Rows past `rows` read the last one again; their lanes are not stored.
        let row: [*const f32; 8] = std::array::from_fn(|i| sp.add(i.min(rows - 1) * ld_src));
        for k0 in (0..full).step_by(8) {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(row[i].add(k0)));
            // Pairs of rows interleaved, then pairs of pairs: each 128-bit
            // half holds four rows of one column; then the halves are joined.
            let lo = |a, b| _mm256_unpacklo_ps(a, b);
            let hi = |a, b| _mm256_unpackhi_ps(a, b);
            let t = [
                lo(r[0], r[1]),
                hi(r[0], r[1]),
                lo(r[2], r[3]),
                hi(r[2], r[3]),
                lo(r[4], r[5]),
                hi(r[4], r[5]),
                lo(r[6], r[7]),
                hi(r[6], r[7]),
            ];
            let q = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            for c in 0..4 {
                let first = _mm256_permute2f128_ps::<0x20>(q[c], q[4 + c]);
                let second = _mm256_permute2f128_ps::<0x31>(q[c], q[4 + c]);
                store_lanes(dp.add((k0 + c) * ld_dst), first, rows);
                store_lanes(dp.add((k0 + 4 + c) * ld_dst), second, rows);
            }
        }
        super::one_by_one(src, ld_src, rows, full..k, dst, ld_dst);
    }

    /// Stores the first `n` (1 to 8) lanes of `v` at `p`: whole 128-, 64-
    /// and 32-bit pieces (AMD's masked stores are microcoded).
    #[inline(always)]
    unsafe fn store_lanes(p: *mut f32, v: __m256, n: usize) {
        if n == 8 {
            return _mm256_storeu_ps(p, v);
        }
        let (mut p, mut part, mut n) = (p, _mm256_castps256_ps128(v), n);
        if n >= 4 {
            _mm_storeu_ps(p, part);
            (p, part, n) = (p.add(4), _mm256_extractf128_ps::<1>(v), n - 4);
        }
        if n >= 2 {
            _mm_store_sd(p as *mut f64, _mm_castps_pd(part));
            (p, part, n) = (p.add(2), _mm_movehl_ps(part, part), n - 2);
        }
        if n == 1 {
            _mm_store_ss(p, part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::set_override;

    /// Every row count and a `k` with and without a tail of eight, into a
    /// destination whose other lanes must stay untouched, on every path.
    #[test]
    fn transposes_like_the_definition_on_every_path() {
        for isa in Isa::available() {
            set_override(Some(isa));
            for rows in 1..=8 {
                for k in [1, 7, 8, 19, 32] {
                    let (ld_src, ld_dst) = (k + 3, 12);
                    let src: Vec<f32> = (0..rows * ld_src).map(|v| v as f32).collect();
                    let mut dst = vec![-1f32; k * ld_dst];
                    transpose_rows(&src, ld_src, rows, k, &mut dst, ld_dst);
                    for kk in 0..k {
                        for i in 0..ld_dst {
                            let want = if i < rows { src[i * ld_src + kk] } else { -1.0 };
                            assert_eq!(
                                dst[kk * ld_dst + i],
                                want,
                                "{isa:?} rows {rows} k {k} at ({kk}, {i})"
                            );
                        }
                    }
                }
            }
        }
        set_override(None);
    }
}
