//! Max-pooling over NCHW arrays, optionally with the ReLU before it fused
//! (`max(0, max(window)) = relu` then pool, so the cnn's ReLU costs no pass).
//!
//! The forward pass keeps, per output, which position of its window won
//! (one byte: windows are at most 15 × 15), so the backward pass is a
//! scatter of the output gradient without looking at the input again.
//! Padded positions never win; ties go to the first position in row-major
//! order, as in PyTorch (a NaN in a window may or may not win: training
//! stops on a non-finite loss anyway).

use crate::isa::{active, Isa};
use crate::shape::out_size;
use crate::transpose::every_other;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// Batch × channels.
    pub planes: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl PoolShape {
    pub fn out_h(&self) -> usize {
        out_size(
            self.in_h,
            2 * self.padding[0],
            self.kernel[0],
            self.stride[0],
        )
    }

    pub fn out_w(&self) -> usize {
        out_size(
            self.in_w,
            2 * self.padding[1],
            self.kernel[1],
            self.stride[1],
        )
    }

    pub fn output_len(&self) -> usize {
        self.planes * self.out_h() * self.out_w()
    }

    /// Whether these kernels compute this pooling.
    pub fn supported(&self) -> bool {
        let [kh, kw] = self.kernel;
        kh * kw <= 255
            && kh > 0
            && kw > 0
            && !self.stride.contains(&0)
            && self.padding[0] < kh
            && self.padding[1] < kw
            && self.in_h + 2 * self.padding[0] >= kh
            && self.in_w + 2 * self.padding[1] >= kw
    }
}

/// `y = maxpool(x)` (of `relu(x)` when `relu`); returns each output's winning
/// window position.
pub fn max_pool2d_forward(s: &PoolShape, x: &[f32], relu: bool, y: &mut [f32]) -> Vec<u8> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let ihw = s.in_h * s.in_w;
    assert_eq!(x.len(), s.planes * ihw);
    assert_eq!(y.len(), s.output_len());
    let mut arg = vec![0u8; y.len()];
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [ph, pw] = s.padding;
    y.par_chunks_mut(oh * ow)
        .zip(arg.par_chunks_mut(oh * ow))
        .enumerate()
        .for_each(|(p, (yo, ao))| {
            let xp = &x[p * ihw..(p + 1) * ihw];
            if kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 {
                // The sheet's CNNs: 2 × 2, stride 2, no padding, branch-free.
                for oy in 0..oh {
                    let r0 = &xp[2 * oy * s.in_w..(2 * oy + 1) * s.in_w];
                    let r1 = &xp[(2 * oy + 1) * s.in_w..(2 * oy + 2) * s.in_w];
                    let yo = &mut yo[oy * ow..(oy + 1) * ow];
                    let ao = &mut ao[oy * ow..(oy + 1) * ow];
                    for ox in 0..ow {
                        let (a, b, c, d) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                        // Ties keep the earlier position (strict >), as PyTorch.
                        let (top, ti) = if b > a { (b, 1u8) } else { (a, 0) };
                        let (bot, bi) = if d > c { (d, 3u8) } else { (c, 2) };
                        let (v, i) = if bot > top { (bot, bi) } else { (top, ti) };
                        yo[ox] = if relu { v.max(0.0) } else { v };
                        ao[ox] = i;
                    }
                }
                return;
            }
            let mut halves = Vec::new();
            for oy in 0..oh {
                let rows_inside = oy * sh >= ph && oy * sh + kh <= s.in_h + ph;
                // Stride-2 windows inside the image, a row at a time.
                let (lo, hi) = if rows_inside && sw == 2 {
                    let lo = pw.div_ceil(2).min(ow);
                    let hi = ((s.in_w + pw).saturating_sub(kw) / 2 + 1).clamp(lo, ow);
                    let rows = &xp[(oy * sh - ph) * s.in_w..][..kh * s.in_w];
                    let at = oy * ow;
                    let (yr, ar) = (&mut yo[at + lo..at + hi], &mut ao[at + lo..at + hi]);
                    stride2_row(rows, s.in_w, kw, pw, lo, relu, yr, ar, &mut halves);
                    (lo, hi)
                } else {
                    (0, 0)
                };
                for ox in (0..lo).chain(hi..ow) {
                    if rows_inside && ox * sw >= pw && ox * sw + kw <= s.in_w + pw {
                        // A window wholly inside the image (ResNet's 3 × 3
                        // stride-2 pool: all but its edge): no bounds to test.
                        // Selects rather than branches: which tap wins is
                        // data, and mispredicted branches cost more than
                        // the comparisons.
                        let at0 = (oy * sh - ph) * s.in_w + ox * sw - pw;
                        let (mut best, mut at) = (xp[at0], 0u8);
                        for ky in 0..kh {
                            let row = &xp[at0 + ky * s.in_w..][..kw];
                            for (kx, &v) in row.iter().enumerate() {
                                let wins = v > best;
                                at = select(wins, (ky * kw + kx) as u8, at);
                                best = if wins { v } else { best };
                            }
                        }
                        yo[oy * ow + ox] = if relu { best.max(0.0) } else { best };
                        ao[oy * ow + ox] = at;
                        continue;
                    }
                    let (mut best, mut at) = (f32::NEG_INFINITY, 0u8);
                    let mut found = false;
                    for ky in 0..kh {
                        let iy = (oy * sh + ky) as isize - ph as isize;
                        if iy < 0 || iy as usize >= s.in_h {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * sw + kx) as isize - pw as isize;
                            if ix < 0 || ix as usize >= s.in_w {
                                continue;
                            }
                            let v = xp[iy as usize * s.in_w + ix as usize];
                            if !found || v > best {
                                best = v;
                                at = (ky * kw + kx) as u8;
                                found = true;
                            }
                        }
                    }
                    yo[oy * ow + ox] = if relu { best.max(0.0) } else { best };
                    ao[oy * ow + ox] = at;
                }
            }
        });
    arg
}

/// The stride-2 windows of one output row that lie inside the image:
/// outputs `lo .. lo + y.len()` from the `kh` input rows in `rows` (each
/// `w` wide). Each input row is split into its even and odd columns, so a
/// tap's values for consecutive outputs are consecutive and the running
/// maximum and its tap go along the row a vector at a time, where the
/// window-by-window loop compared scalars. ResNet's 3 × 3 stride-2 pool over
/// the stem's output was 4.2 % of an evaluation step that way (AMD EPYC Zen 4).
#[allow(clippy::too_many_arguments)]
fn stride2_row(
    rows: &[f32],
    w: usize,
    kw: usize,
    pw: usize,
    lo: usize,
    relu: bool,
    y: &mut [f32],
    arg: &mut [u8],
    halves: &mut Vec<f32>,
) {
    let n = y.len();
    let kh = rows.len() / w;
    let half = w.div_ceil(2);
    // Whole groups of LANES outputs (a row of 31, ResNet's, is four); the
    // lanes past n read finite values from the slack and are dropped.
    let wide = n.next_multiple_of(LANES);
    // halves: [even, odd] columns of each row (plus slack for the last
    // group's reads), then the running maximum and its tap.
    let parts = 2 * kh * half + LANES;
    halves.resize(parts + 2 * wide, 0.0);
    let (split, rest) = halves.split_at_mut(parts);
    let (best, at) = rest.split_at_mut(wide);
    for (row, parts) in rows.chunks_exact(w).zip(split.chunks_exact_mut(2 * half)) {
        let (even, odd) = parts.split_at_mut(half);
        every_other(row, even);
        every_other(&row[1..], &mut odd[..w / 2]);
    }
    // Tap (ky, kx) reads input column 2·ox + kx − pw: the even or odd half
    // of row ky, from index ox + ⌊(kx − pw)/2⌋.
    let tap = |t: usize| {
        let (ky, kx) = (t / kw, t % kw);
        let d = kx as isize - pw as isize;
        let start = (lo as isize + d.div_euclid(2)) as usize;
        let part = ky * 2 * half + d.rem_euclid(2) as usize * half;
        &split[part + start..][..wide]
    };
    best.copy_from_slice(tap(0));
    at.fill(0.0);
    for t in 1..kh * kw {
        running_max(best, at, tap(t), t as f32);
    }
    for (o, &b) in y.iter_mut().zip(best.iter()) {
        *o = if relu { b.max(0.0) } else { b };
    }
    for (o, &a) in arg[..n].iter_mut().zip(at.iter()) {
        *o = a as u8;
    }
}

/// Outputs per group in [`stride2_row`].
const LANES: usize = 8;

/// Where `v > best` (ties keep the earlier tap, as PyTorch): `best = v`,
/// `at = code`. Lengths are whole groups of [`LANES`].
fn running_max(best: &mut [f32], at: &mut [f32], v: &[f32], code: f32) {
    let n = best.len();
    assert!(n.is_multiple_of(LANES) && at.len() == n && v.len() == n);
    #[cfg(target_arch = "x86_64")]
    if active() >= Isa::Avx2 {
        // SAFETY: the lengths were checked above; `active()` only returns
        // instruction sets the CPU has. (Written as a plain loop, the
        // compiler branched on every comparison.)
        return unsafe { x86::running_max(best, at, v, code) };
    }
    for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(v) {
        if v > *b {
            (*b, *a) = (v, code);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::running_max`] eight lanes at a time: a compare and two blends.
    ///
    /// # Safety
    /// The CPU has AVX2; all three slices hold the same whole number of groups of 8.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn running_max(best: &mut [f32], at: &mut [f32], v: &[f32], code: f32) {
        let c = _mm256_set1_ps(code);
        let (bp, ap, vp) = (best.as_mut_ptr(), at.as_mut_ptr(), v.as_ptr());
        for i in (0..best.len()).step_by(8) {
            let (b, a, x) = (
                _mm256_loadu_ps(bp.add(i)),
                _mm256_loadu_ps(ap.add(i)),
                _mm256_loadu_ps(vp.add(i)),
            );
            // Ordered: a NaN never wins, as `v > best` in the portable loop.
            let wins = _mm256_cmp_ps::<_CMP_GT_OQ>(x, b);
            _mm256_storeu_ps(bp.add(i), _mm256_blendv_ps(b, x, wins));
            _mm256_storeu_ps(ap.add(i), _mm256_blendv_ps(a, c, wins));
        }
    }
}

/// `if wins { a } else { b }` as arithmetic, which compiles to no branch.
#[inline(always)]
fn select(wins: bool, a: u8, b: u8) -> u8 {
    let mask = (wins as u8).wrapping_neg();
    (a & mask) | (b & !mask)
}

/// `dx` from `dy`, the outputs `y` and the winners of [`max_pool2d_forward`].
pub fn max_pool2d_backward(
    s: &PoolShape,
    dy: &[f32],
    y: &[f32],
    arg: &[u8],
    relu: bool,
    dx: &mut [f32],
) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let ihw = s.in_h * s.in_w;
    assert_eq!(dx.len(), s.planes * ihw);
    assert_eq!(dy.len(), s.output_len());
    let [kw, sh, sw] = [s.kernel[1], s.stride[0], s.stride[1]];
    let [ph, pw] = s.padding;
    dx.par_chunks_mut(ihw).enumerate().for_each(|(p, d)| {
        d.fill(0.0);
        let r = p * oh * ow..(p + 1) * oh * ow;
        for (i, ((&g, &yv), &a)) in dy[r.clone()]
            .iter()
            .zip(&y[r.clone()])
            .zip(&arg[r])
            .enumerate()
        {
            // relu'(0) = 0: a window whose maximum was not positive passes nothing.
            if relu && yv <= 0.0 {
                continue;
            }
            let (oy, ox) = (i / ow, i % ow);
            let (ky, kx) = (a as usize / kw, a as usize % kw);
            let iy = oy * sh + ky - ph;
            let ix = ox * sw + kx - pw;
            d[iy * s.in_w + ix] += g;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut st = seed.wrapping_add(0x9E3779B97F4A7C15);
        (0..n)
            .map(|_| {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                ((st >> 40) % 97) as f32 / 10.0 - 4.0
            })
            .collect()
    }

    /// Pooling and its gradient by the definition.
    fn reference(s: &PoolShape, x: &[f32], relu: bool, dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (oh, ow) = (s.out_h(), s.out_w());
        let mut y = vec![0f32; s.output_len()];
        let mut dx = vec![0f32; x.len()];
        for p in 0..s.planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best: Option<(f32, usize)> = None;
                    for ky in 0..s.kernel[0] {
                        for kx in 0..s.kernel[1] {
                            let iy = (oy * s.stride[0] + ky) as isize - s.padding[0] as isize;
                            let ix = (ox * s.stride[1] + kx) as isize - s.padding[1] as isize;
                            if iy >= 0
                                && ix >= 0
                                && (iy as usize) < s.in_h
                                && (ix as usize) < s.in_w
                            {
                                let i = (p * s.in_h + iy as usize) * s.in_w + ix as usize;
                                if best.is_none_or(|(b, _)| x[i] > b) {
                                    best = Some((x[i], i));
                                }
                            }
                        }
                    }
                    let (v, i) = best.unwrap();
                    let o = (p * oh + oy) * ow + ox;
                    y[o] = if relu { v.max(0.0) } else { v };
                    if !relu || v > 0.0 {
                        dx[i] += dy[o];
                    }
                }
            }
        }
        (y, dx)
    }

    #[test]
    fn pooling_and_its_gradient_match_the_definition() {
        for (h, w, k, st, p) in [
            (8, 8, 2, 2, 0),
            (7, 9, 2, 2, 0),
            (9, 8, 3, 2, 1),
            // Stride 2 over odd widths and wider windows.
            (9, 11, 3, 2, 1),
            (10, 13, 5, 2, 2),
            (7, 12, 3, 2, 0),
            // ResNet's stem pool over rows long enough for whole groups.
            (11, 70, 3, 2, 1),
            (9, 41, 4, 2, 1),
            (5, 6, 3, 1, 1),
            (6, 6, 3, 3, 0),
        ] {
            let s = PoolShape {
                planes: 3,
                in_h: h,
                in_w: w,
                kernel: [k, k],
                stride: [st, st],
                padding: [p, p],
            };
            assert!(s.supported());
            // Each instruction set's path (the stride-2 rows' running maximum).
            crate::isa::on_each_available(|isa| {
                for relu in [false, true] {
                    let x = values(3 * h * w, (h * w + k) as u64);
                    let dy = values(s.output_len(), 9);
                    let (want_y, want_dx) = reference(&s, &x, relu, &dy);
                    let mut y = vec![f32::NAN; s.output_len()];
                    let arg = max_pool2d_forward(&s, &x, relu, &mut y);
                    assert_eq!(y, want_y, "{s:?} relu={relu} {isa:?}");
                    let mut dx = vec![f32::NAN; x.len()];
                    max_pool2d_backward(&s, &dy, &y, &arg, relu, &mut dx);
                    assert_eq!(dx, want_dx, "{s:?} relu={relu} {isa:?}");
                }
            });
        }
    }
}
