//! Copying up to eight rows of one matrix into the columns of another: a
//! block transpose, which is what packing an operand for the GEMM is when
//! its rows run along the wrong dimension (a row-major `A`, a transposed
//! `B`). Done one element at a time, every store of a packed panel lands on
//! another cache line; here eight rows by eight columns pass through
//! registers at once (AVX), so each store is a run of the panel's row. The
//! same for four phases of a run of groups of four (Winograd's 4 × 4 tiles).

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

/// `parts[r][j] = src[4j + r]` for `j < parts[r].len()` (all four equal):
/// the four phases of a run of groups of four, such as the columns `4tx + r`
/// of a row of 4 × 4 tiles. One pass of 4 × 4 transposes in registers where
/// element-by-element copying of ResNet34's 8 × 8 planes ran loops of two.
pub(crate) fn deinterleave4(src: &[f32], parts: [&mut [f32]; 4]) {
    let n = parts[0].len();
    assert!(parts.iter().all(|p| p.len() == n) && src.len() >= 4 * n);
    let [p0, p1, p2, p3] = parts;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if active() >= Isa::Avx2 {
        // SAFETY: the lengths were checked above; SSE is part of x86_64.
        done = unsafe { x86::deinterleave4(src, [p0, p1, p2, p3], n) };
    }
    for j in done..n {
        (p0[j], p1[j], p2[j], p3[j]) = (src[4 * j], src[4 * j + 1], src[4 * j + 2], src[4 * j + 3]);
    }
}

/// `dst[i] = src[2i]` for `i < dst.len()` (`src` holds at least
/// `2·dst.len() − 1` values): the columns a stride-2 convolution's tap
/// reads from an image row (ResNet's stem, its downsampling convolutions).
/// Element by element it was a scalar loop, a fifth of the stem's time.
pub(crate) fn every_other(src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    assert!(src.len() > 2 * (n - 1), "source too short");
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if active() >= Isa::Avx2 {
        // SAFETY: the length was checked above, and `active()` only returns
        // instruction sets the CPU has.
        done = unsafe { x86::every_other(src, dst) };
    }
    for (i, v) in dst.iter_mut().enumerate().skip(done) {
        *v = src[2 * i];
    }
}

/// `dst[4j + r] = parts[r][j]`: the inverse of [`deinterleave4`].
pub(crate) fn interleave4(parts: [&[f32]; 4], dst: &mut [f32]) {
    let n = parts[0].len();
    assert!(parts.iter().all(|p| p.len() == n) && dst.len() >= 4 * n);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if active() >= Isa::Avx2 {
        // SAFETY: the lengths were checked above; SSE is part of x86_64.
        done = unsafe { x86::interleave4(parts, dst, n) };
    }
    for j in done..n {
        for (r, part) in parts.iter().enumerate() {
            dst[4 * j + r] = part[j];
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

    /// [`super::every_other`] of the first groups of eight whose loads stay
    /// inside `src`; returns how many values it did.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn every_other(src: &[f32], dst: &mut [f32]) -> usize {
        // A group at i loads src[2i .. 2i + 16): the last one must end
        // within the 2n − 1 values the caller guarantees.
        let full = (dst.len() - 1) / 8 * 8;
        let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
        for i in (0..full).step_by(8) {
            let (a, b) = (
                _mm256_loadu_ps(sp.add(2 * i)),
                _mm256_loadu_ps(sp.add(2 * i + 8)),
            );
            // Lanes a0 a2 b0 b2 | a4 a6 b4 b6, then the middle 64-bit pairs swapped.
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let even = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(even));
            _mm256_storeu_ps(dp.add(i), _mm256_castpd_ps(even));
        }
        full
    }

    /// [`super::deinterleave4`] of the first `n / 4 · 4` groups, as
    /// 4 × 4 transposes; returns how many groups it did.
    pub(super) unsafe fn deinterleave4(src: &[f32], parts: [&mut [f32]; 4], n: usize) -> usize {
        let full = n / 4 * 4;
        let sp = src.as_ptr();
        let [p0, p1, p2, p3] = parts.map(|p| p.as_mut_ptr());
        for j in (0..full).step_by(4) {
            let (mut a, mut b, mut c, mut d) = (
                _mm_loadu_ps(sp.add(4 * j)),
                _mm_loadu_ps(sp.add(4 * j + 4)),
                _mm_loadu_ps(sp.add(4 * j + 8)),
                _mm_loadu_ps(sp.add(4 * j + 12)),
            );
            _MM_TRANSPOSE4_PS(&mut a, &mut b, &mut c, &mut d);
            _mm_storeu_ps(p0.add(j), a);
            _mm_storeu_ps(p1.add(j), b);
            _mm_storeu_ps(p2.add(j), c);
            _mm_storeu_ps(p3.add(j), d);
        }
        full
    }

    /// [`super::interleave4`] of the first `n / 4 · 4` groups.
    pub(super) unsafe fn interleave4(parts: [&[f32]; 4], dst: &mut [f32], n: usize) -> usize {
        let full = n / 4 * 4;
        let dp = dst.as_mut_ptr();
        let [p0, p1, p2, p3] = parts.map(|p| p.as_ptr());
        for j in (0..full).step_by(4) {
            let (mut a, mut b, mut c, mut d) = (
                _mm_loadu_ps(p0.add(j)),
                _mm_loadu_ps(p1.add(j)),
                _mm_loadu_ps(p2.add(j)),
                _mm_loadu_ps(p3.add(j)),
            );
            _MM_TRANSPOSE4_PS(&mut a, &mut b, &mut c, &mut d);
            _mm_storeu_ps(dp.add(4 * j), a);
            _mm_storeu_ps(dp.add(4 * j + 4), b);
            _mm_storeu_ps(dp.add(4 * j + 8), c);
            _mm_storeu_ps(dp.add(4 * j + 12), d);
        }
        full
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
    use crate::isa::on_each_available;

    /// Every row count and a `k` with and without a tail of eight, into a
    /// destination whose other lanes must stay untouched, on every path.
    #[test]
    fn transposes_like_the_definition_on_every_path() {
        on_each_available(|isa| {
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
        });
    }

    /// Every length around the eight-value step, from a source of exactly
    /// `2n − 1` values (the last load must not run past it), on every path.
    #[test]
    fn takes_every_other_value_on_every_path() {
        on_each_available(|isa| {
            for n in [1, 7, 8, 9, 16, 17, 33, 64] {
                let src: Vec<f32> = (0..2 * n - 1).map(|v| v as f32).collect();
                let mut dst = vec![-1f32; n];
                every_other(&src, &mut dst);
                let want: Vec<f32> = (0..n).map(|i| (2 * i) as f32).collect();
                assert_eq!(dst, want, "{isa:?} n {n}");
            }
        });
    }

    /// Every length around the four-group step, both directions, on every
    /// path: each element lands where the definition puts it, and
    /// interleaving the phases back gives the source.
    #[test]
    fn interleaves_like_the_definition_on_every_path() {
        on_each_available(|isa| {
            for n in [0, 1, 3, 4, 5, 8, 13, 64] {
                let src: Vec<f32> = (0..4 * n + 3).map(|v| v as f32).collect();
                let mut parts = vec![vec![-1f32; n]; 4];
                let [a, b, c, d] = &mut parts[..] else {
                    unreachable!()
                };
                deinterleave4(&src, [a, b, c, d]);
                for (r, part) in parts.iter().enumerate() {
                    for (j, &v) in part.iter().enumerate() {
                        assert_eq!(v, src[4 * j + r], "{isa:?} n {n} phase {r} at {j}");
                    }
                }
                let mut back = vec![-1f32; 4 * n + 2];
                interleave4(std::array::from_fn(|r| &parts[r][..]), &mut back);
                assert_eq!(back[..4 * n], src[..4 * n], "{isa:?} n {n}");
                assert_eq!(back[4 * n..], [-1.0, -1.0], "{isa:?} n {n}: past the end");
            }
        });
    }
}
