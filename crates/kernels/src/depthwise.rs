//! Depthwise convolutions (`groups == C`): too little work per output for
//! a matrix product, so direct loops. Along rows (the plane's columns
//! regrouped by stride phase, so that strided walks are contiguous) when
//! rows are long; across channels, eight at a time, when planes are small.

use crate::gemm::SendPtr;
use crate::isa::{active, Isa};
use crate::shape::{valid_columns, with_col, Conv2dShape};
use rayon::prelude::*;
use std::ops::Range;

/// Output rows shorter than this go across channels: along-row loops of a
/// few elements spend their time starting and ending.
const ROW_MIN: usize = 16;

/// Channels per vector in the across-channel kernel.
const LANES: usize = 8;

/// The forward pass eight channels at a time, for small planes: per image
/// and group of eight channels, the zero-padded input interleaved by channel
/// (`[y][x][lane]`), then each output pixel's eight values as one vector
/// of multiply-adds over the taps. Bias first, then the taps in the order
/// of the along-row loop, so both give the same bits.
fn forward_across_channels(
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let c = s.in_channels;
    let groups = c.div_ceil(LANES);
    let (oh, ow) = (s.out_h(), s.out_w());
    let wp = s.in_w + s.padding[1] + s.padding_end[1];
    let outp = SendPtr(out.as_mut_ptr());
    (0..s.batch * groups).into_par_iter().for_each(|task| {
        let (n, c0) = (task / groups, task % groups * LANES);
        let lanes = LANES.min(c - c0);
        let xin = padded_lanes(s, x, n, c0);
        let taps = tap_lanes(s, weight, c0);
        let start: [f32; LANES] = std::array::from_fn(|l| {
            if l < lanes {
                bias.map_or(0.0, |b| b[c0 + l])
            } else {
                0.0
            }
        });
        let mut acc_out = vec![[0f32; LANES]; oh * ow];
        let block = Pixels {
            xin: &xin,
            taps: &taps,
            start,
            kernel: s.kernel,
            stride: s.stride,
            wp,
        };
        for (oy, row) in acc_out.chunks_exact_mut(ow).enumerate() {
            let mut ox = 0;
            while ox < ow {
                ox += match ow - ox {
                    8.. => block.run::<8>(oy, ox, row),
                    4.. => block.run::<4>(oy, ox, row),
                    _ => block.run::<1>(oy, ox, row),
                };
            }
        }
        for l in 0..lanes {
            // SAFETY: plane (n, c0 + l) is written by this task only.
            let plane = unsafe {
                std::slice::from_raw_parts_mut(outp.get().add((n * c + c0 + l) * oh * ow), oh * ow)
            };
            for (d, a) in plane.iter_mut().zip(&acc_out) {
                *d = a[l];
            }
        }
    });
}

/// One image's interleaved padded input ([`padded_lanes`]) and kernels
/// ([`tap_lanes`]) for the across-channel forward pass.
struct Pixels<'a> {
    xin: &'a [[f32; LANES]],
    taps: &'a [[f32; LANES]],
    start: [f32; LANES],
    kernel: [usize; 2],
    stride: [usize; 2],
    wp: usize,
}

impl Pixels<'_> {
    /// Output pixels `ox .. ox + B` of row `oy`, eight channels each: `B`
    /// independent sums, so the multiply-adds overlap instead of each
    /// waiting for the last, and each tap loaded once for all `B`. Returns `B`.
    #[inline(always)]
    fn run<const B: usize>(&self, oy: usize, ox: usize, row: &mut [[f32; LANES]]) -> usize {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        assert!((oy * sh + kh - 1) * self.wp + (ox + B - 1) * sw + kw <= self.xin.len());
        assert!(ox + B <= row.len() && kh * kw <= self.taps.len());
        match active() {
            Isa::Portable => self.run_portable::<B>(oy, ox, row),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `active()` only returns instruction sets the CPU has
            // (AVX-512 machines have AVX2); the reads were bounded above.
            Isa::Avx2 | Isa::Avx512 => unsafe { x86::pixels::<B>(self, oy, ox, row) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => self.run_portable::<B>(oy, ox, row),
        }
        B
    }

    /// [`Pixels::run`] in plain Rust (LLVM keeps these sums on the stack).
    fn run_portable<const B: usize>(&self, oy: usize, ox: usize, row: &mut [[f32; LANES]]) {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        for (b, out) in row[ox..ox + B].iter_mut().enumerate() {
            let mut acc = self.start;
            for ky in 0..kh {
                let base = (oy * sh + ky) * self.wp + (ox + b) * sw;
                for kx in 0..kw {
                    let (v, t) = (&self.xin[base + kx], &self.taps[ky * kw + kx]);
                    for l in 0..LANES {
                        acc[l] = v[l].mul_add(t[l], acc[l]);
                    }
                }
            }
            *out = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Conv2dShape, Pixels, LANES};
    use std::arch::x86_64::*;

    /// [`Pixels::run`] with the `B` sums in ymm registers (the portable loop's
    /// order, each step fused): written over `[[f32; 8]; B]`, LLVM moved
    /// every lane through the stack one float at a time.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; the caller bounded every read and write.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn pixels<const B: usize>(
        p: &Pixels,
        oy: usize,
        ox: usize,
        row: &mut [[f32; LANES]],
    ) {
        let [kh, kw] = p.kernel;
        let [sh, sw] = p.stride;
        let (xin, taps) = (p.xin.as_ptr() as *const f32, p.taps.as_ptr() as *const f32);
        let mut acc = [_mm256_loadu_ps(p.start.as_ptr()); B];
        for ky in 0..kh {
            let base = (oy * sh + ky) * p.wp + ox * sw;
            for kx in 0..kw {
                let t = _mm256_loadu_ps(taps.add((ky * kw + kx) * LANES));
                for (b, a) in acc.iter_mut().enumerate() {
                    let v = _mm256_loadu_ps(xin.add((base + b * sw + kx) * LANES));
                    *a = _mm256_fmadd_ps(v, t, *a);
                }
            }
        }
        let out = row.as_mut_ptr().add(ox) as *mut f32;
        for (b, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.add(b * LANES), *a);
        }
    }

    /// One image's weight gradient for eight channels, added to `total`
    /// (`[ky·KW + kx][lane]`), from its interleaved padded input `xin` and
    /// output gradient `g` ([`super::padded_lanes`], [`super::output_lanes`]):
    /// per kernel row, the `KW` taps' sums in registers twice over (even and
    /// odd output columns), so consecutive multiply-adds do not wait on
    /// each other, each output gradient loaded once for all `KW` taps.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `xin` is the padded plane of `s`, `g` its
    /// output plane, `total` `kh · KW` vectors, `s.kernel[1] == KW`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weight_lanes<const KW: usize>(
        s: &Conv2dShape,
        xin: &[[f32; LANES]],
        g: &[[f32; LANES]],
        total: &mut [[f32; LANES]],
    ) {
        let (oh, ow) = (s.out_h(), s.out_w());
        let (sh, sw) = (s.stride[0], s.stride[1]);
        let wp = s.in_w + s.padding[1] + s.padding_end[1];
        let (x, g) = (xin.as_ptr() as *const f32, g.as_ptr() as *const f32);
        for ky in 0..s.kernel[0] {
            let mut even = [_mm256_setzero_ps(); KW];
            let mut odd = [_mm256_setzero_ps(); KW];
            for oy in 0..oh {
                let row = x.add((oy * sh + ky) * wp * LANES);
                let grow = g.add(oy * ow * LANES);
                let mut ox = 0;
                while ox + 2 <= ow {
                    let g0 = _mm256_loadu_ps(grow.add(ox * LANES));
                    let g1 = _mm256_loadu_ps(grow.add((ox + 1) * LANES));
                    let (x0, x1) = (row.add(ox * sw * LANES), row.add((ox + 1) * sw * LANES));
                    for kx in 0..KW {
                        even[kx] =
                            _mm256_fmadd_ps(_mm256_loadu_ps(x0.add(kx * LANES)), g0, even[kx]);
                        odd[kx] = _mm256_fmadd_ps(_mm256_loadu_ps(x1.add(kx * LANES)), g1, odd[kx]);
                    }
                    ox += 2;
                }
                if ox < ow {
                    let g0 = _mm256_loadu_ps(grow.add(ox * LANES));
                    let x0 = row.add(ox * sw * LANES);
                    for (kx, e) in even.iter_mut().enumerate() {
                        *e = _mm256_fmadd_ps(_mm256_loadu_ps(x0.add(kx * LANES)), g0, *e);
                    }
                }
            }
            for kx in 0..KW {
                let t = total[ky * KW + kx].as_mut_ptr();
                let sum = _mm256_add_ps(even[kx], odd[kx]);
                _mm256_storeu_ps(t, _mm256_add_ps(_mm256_loadu_ps(t), sum));
            }
        }
    }

    /// One plane's weight gradient (`sums[ky·KW + kx]`) from its
    /// [`super::padded_phases`] layout `buf` and output gradient `g`: per
    /// kernel row, the `KW` taps' sums in registers, two column blocks of
    /// eight apart so that consecutive multiply-adds do not wait on each
    /// other, the output gradient loaded once for all `KW` taps.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `buf` holds the padded layout of `s`, `g`
    /// its output plane, `sums` `kh · KW` floats, `s.kernel[1] == KW`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weight_rows<const KW: usize>(
        s: &Conv2dShape,
        buf: &[f32],
        g: &[f32],
        sums: &mut [f32],
    ) {
        let (hp, wq) = super::padded_phase_dims(s);
        let (oh, ow) = (s.out_h(), s.out_w());
        let (sh, sw) = (s.stride[0], s.stride[1]);
        let (pairs, singles) = (ow / 16 * 16, ow / 8 * 8);
        for ky in 0..s.kernel[0] {
            let mut even = [_mm256_setzero_ps(); KW];
            let mut odd = [_mm256_setzero_ps(); KW];
            let mut tail = [0f32; KW];
            for oy in 0..oh {
                let y = oy * sh + ky;
                let grow = g.as_ptr().add(oy * ow);
                let rows: [*const f32; KW] =
                    std::array::from_fn(|kx| buf.as_ptr().add(((kx % sw) * hp + y) * wq + kx / sw));
                for c0 in (0..pairs).step_by(16) {
                    let (g0, g1) = (
                        _mm256_loadu_ps(grow.add(c0)),
                        _mm256_loadu_ps(grow.add(c0 + 8)),
                    );
                    for kx in 0..KW {
                        even[kx] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[kx].add(c0)), g0, even[kx]);
                        odd[kx] =
                            _mm256_fmadd_ps(_mm256_loadu_ps(rows[kx].add(c0 + 8)), g1, odd[kx]);
                    }
                }
                if singles > pairs {
                    let g0 = _mm256_loadu_ps(grow.add(pairs));
                    for kx in 0..KW {
                        even[kx] =
                            _mm256_fmadd_ps(_mm256_loadu_ps(rows[kx].add(pairs)), g0, even[kx]);
                    }
                }
                for c in singles..ow {
                    for kx in 0..KW {
                        tail[kx] = (*rows[kx].add(c)).mul_add(*grow.add(c), tail[kx]);
                    }
                }
            }
            for kx in 0..KW {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(even[kx], odd[kx]));
                sums[ky * KW + kx] = lanes.iter().sum::<f32>() + tail[kx];
            }
        }
    }
}

/// The zero-padded input planes of image `n`, channels `c0 .. c0 + 8`,
/// interleaved by channel: `[y][x][lane]`, lanes past the last channel zero.
fn padded_lanes(s: &Conv2dShape, x: &[f32], n: usize, c0: usize) -> Vec<[f32; LANES]> {
    let (c, h, w) = (s.in_channels, s.in_h, s.in_w);
    let [pt, pl] = s.padding;
    let (hp, wp) = (h + pt + s.padding_end[0], w + pl + s.padding_end[1]);
    let mut xin = vec![[0f32; LANES]; hp * wp];
    for l in 0..LANES.min(c - c0) {
        let plane = &x[(n * c + c0 + l) * h * w..][..h * w];
        for (iy, row) in plane.chunks_exact(w).enumerate() {
            for (ix, &v) in row.iter().enumerate() {
                xin[(iy + pt) * wp + ix + pl][l] = v;
            }
        }
    }
    xin
}

/// The kernels of channels `c0 .. c0 + 8`, tap by tap: `[k][lane]`.
fn tap_lanes(s: &Conv2dShape, weight: &[f32], c0: usize) -> Vec<[f32; LANES]> {
    let kk = s.kernel[0] * s.kernel[1];
    let mut taps = vec![[0f32; LANES]; kk];
    for l in 0..LANES.min(s.in_channels - c0) {
        for (t, tap) in taps.iter_mut().enumerate() {
            tap[l] = weight[(c0 + l) * kk + t];
        }
    }
    taps
}

/// The output gradient planes of image `n`, channels `c0 .. c0 + 8`,
/// interleaved by channel: `[oy][ox][lane]`.
fn output_lanes(s: &Conv2dShape, dy: &[f32], n: usize, c0: usize) -> Vec<[f32; LANES]> {
    let ohw = s.out_h() * s.out_w();
    let mut g = vec![[0f32; LANES]; ohw];
    for l in 0..LANES.min(s.in_channels - c0) {
        let plane = &dy[(n * s.in_channels + c0 + l) * ohw..][..ohw];
        for (d, &v) in g.iter_mut().zip(plane) {
            d[l] = v;
        }
    }
    g
}

/// At stride 1 the input gradient is the forward pass over the output
/// gradient, with every kernel flipped and the padding `k − 1 − p` (when
/// that is not negative): the shape and kernels of that forward pass.
fn flipped_adjoint(s: &Conv2dShape, weight: &[f32]) -> Option<(Conv2dShape, Vec<f32>)> {
    let [kh, kw] = s.kernel;
    let fits = |p: usize, k: usize| p < k;
    let fit = fits(s.padding[0], kh)
        && fits(s.padding[1], kw)
        && fits(s.padding_end[0], kh)
        && fits(s.padding_end[1], kw);
    if s.stride != [1, 1] || !fit {
        return None;
    }
    let adjoint = Conv2dShape {
        in_h: s.out_h(),
        in_w: s.out_w(),
        padding: [kh - 1 - s.padding[0], kw - 1 - s.padding[1]],
        padding_end: [kh - 1 - s.padding_end[0], kw - 1 - s.padding_end[1]],
        ..*s
    };
    let flipped = weight
        .chunks_exact(kh * kw)
        .flat_map(|k| k.iter().rev())
        .copied()
        .collect();
    Some((adjoint, flipped))
}

/// The input gradient eight channels at a time, for small planes at
/// stride 2 (the adjoint of [`forward_across_channels`]; stride 1 is
/// [`flipped_adjoint`]): each output pixel's gradient is spread over the
/// taps into a zero-padded interleaved plane, whose interior is then
/// written back channel by channel.
fn input_grad_across_channels(s: &Conv2dShape, weight: &[f32], dy: &[f32], dx: &mut [f32]) {
    let c = s.in_channels;
    let groups = c.div_ceil(LANES);
    let (oh, ow) = (s.out_h(), s.out_w());
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [pt, pl] = s.padding;
    let (h, w) = (s.in_h, s.in_w);
    let (hp, wp) = (h + pt + s.padding_end[0], w + pl + s.padding_end[1]);
    let dxp = SendPtr(dx.as_mut_ptr());
    (0..s.batch * groups).into_par_iter().for_each(|task| {
        let (n, c0) = (task / groups, task % groups * LANES);
        let taps = tap_lanes(s, weight, c0);
        let g = output_lanes(s, dy, n, c0);
        let mut acc = vec![[0f32; LANES]; hp * wp];
        for oy in 0..oh {
            for ox in 0..ow {
                let v = g[oy * ow + ox];
                for ky in 0..kh {
                    let row = (oy * sh + ky) * wp + ox * sw;
                    for kx in 0..kw {
                        let (d, t) = (&mut acc[row + kx], &taps[ky * kw + kx]);
                        for l in 0..LANES {
                            d[l] = v[l].mul_add(t[l], d[l]);
                        }
                    }
                }
            }
        }
        for l in 0..LANES.min(c - c0) {
            // SAFETY: plane (n, c0 + l) is written by this task only.
            let plane = unsafe {
                std::slice::from_raw_parts_mut(dxp.get().add((n * c + c0 + l) * h * w), h * w)
            };
            for (iy, row) in plane.chunks_exact_mut(w).enumerate() {
                let src = &acc[(iy + pt) * wp + pl..][..w];
                for (d, a) in row.iter_mut().zip(src) {
                    *d = a[l];
                }
            }
        }
    });
}

/// The weight gradient eight channels at a time, for small planes: per
/// group of channels, image by image in order, each tap's products summed
/// over the plane in eight lanes, then added to the group's gradient — so
/// the result does not depend on the number of threads.
fn weight_grad_across_channels(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let wp = s.in_w + s.padding[1] + s.padding_end[1];
    let kk = kh * kw;
    dw.par_chunks_mut(LANES * kk)
        .enumerate()
        .for_each(|(group, out)| {
            let c0 = group * LANES;
            let mut total = vec![[0f32; LANES]; kk];
            for n in 0..s.batch {
                let xin = padded_lanes(s, x, n, c0);
                let g = output_lanes(s, dy, n, c0);
                if weight_lanes_in_registers(s, &xin, &g, &mut total) {
                    continue;
                }
                for (k, sum) in total.iter_mut().enumerate() {
                    let (ky, kx) = (k / kw, k % kw);
                    let mut acc = [0f32; LANES];
                    for oy in 0..oh {
                        let row = (oy * sh + ky) * wp + kx;
                        for ox in 0..ow {
                            let (v, d) = (&xin[row + ox * sw], &g[oy * ow + ox]);
                            for l in 0..LANES {
                                acc[l] = v[l].mul_add(d[l], acc[l]);
                            }
                        }
                    }
                    for l in 0..LANES {
                        sum[l] += acc[l];
                    }
                }
            }
            for (l, kernel) in out.chunks_exact_mut(kk).enumerate() {
                for (k, d) in kernel.iter_mut().enumerate() {
                    *d = total[k][l];
                }
            }
        });
}

/// One image's share of [`weight_grad_across_channels`] with each kernel
/// row's sums in registers ([`x86::weight_lanes`]), where the CPU has AVX2
/// and the kernel is 3, 5 or 7 wide: added to `total`; `false` (nothing
/// added) otherwise, for the tap-by-tap loop.
fn weight_lanes_in_registers(
    s: &Conv2dShape,
    xin: &[[f32; LANES]],
    g: &[[f32; LANES]],
    total: &mut [[f32; LANES]],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        type Lanes = unsafe fn(&Conv2dShape, &[[f32; LANES]], &[[f32; LANES]], &mut [[f32; LANES]]);
        let lanes: Lanes = match (active(), s.kernel[1]) {
            (Isa::Portable, _) => return false,
            (_, 3) => x86::weight_lanes::<3>,
            (_, 5) => x86::weight_lanes::<5>,
            (_, 7) => x86::weight_lanes::<7>,
            _ => return false,
        };
        let wp = s.in_w + s.padding[1] + s.padding_end[1];
        let hp = s.in_h + s.padding[0] + s.padding_end[0];
        assert!(xin.len() == hp * wp && g.len() == s.out_h() * s.out_w());
        assert!(total.len() == s.kernel[0] * s.kernel[1]);
        // SAFETY: `active()` only returns instruction sets the CPU has
        // (AVX-512 machines have AVX2); the lengths were checked above.
        unsafe { lanes(s, xin, g, total) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (s, xin, g, total);
        false
    }
}

/// Runs `f(plane index, output plane)` over every (image, channel) plane in parallel.
fn planes_mut(data: &mut [f32], plane: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    data.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(p, d)| f(p, d));
}

/// A plane's columns regrouped by `ix mod stride` (phase by phase, each
/// phase row `in_w.div_ceil(stride)` wide, zero past the edge), so that a
/// strided walk along a row is a contiguous one that the compiler
/// vectorises. For stride 1 the plane is used as it is.
fn deinterleave(s: &Conv2dShape, plane: &[f32], out: &mut [f32]) {
    let (st, w) = (s.stride[1], s.in_w);
    let wp = w.div_ceil(st);
    for phase in 0..st {
        for iy in 0..s.in_h {
            let row = &plane[iy * w..(iy + 1) * w];
            let dst = &mut out[(phase * s.in_h + iy) * wp..(phase * s.in_h + iy + 1) * wp];
            let n = gather_every(row.get(phase..).unwrap_or(&[]), st, dst);
            dst[n..].fill(0.0);
        }
    }
}

/// The adjoint of [`deinterleave`]: the phases written back as columns,
/// at stride 2 both phases of a row at once (LLVM interleaves them in
/// registers; one phase at a time is a store per column).
fn interleave(s: &Conv2dShape, phases: &[f32], plane: &mut [f32]) {
    let (st, w) = (s.stride[1], s.in_w);
    let wp = w.div_ceil(st);
    for (iy, row) in plane.chunks_exact_mut(w).enumerate() {
        let phase_row = |phase: usize| &phases[(phase * s.in_h + iy) * wp..][..wp];
        if st == 2 && w >= 2 {
            let pairs = w / 2;
            let (even, odd) = (&phase_row(0)[..pairs], &phase_row(1)[..pairs]);
            let both = &mut row[..2 * pairs];
            for j in 0..pairs {
                both[2 * j] = even[j];
                both[2 * j + 1] = odd[j];
            }
            if w % 2 == 1 {
                row[w - 1] = phase_row(0)[pairs];
            }
            continue;
        }
        for phase in 0..st.min(w) {
            for (d, &v) in row[phase..].iter_mut().step_by(st).zip(phase_row(phase)) {
                *d = v;
            }
        }
    }
}

/// `dst[j] = src[j·st]` for as many `j` as both have; returns how many.
/// Stride 2 (every strided layer here) as its own loop, which LLVM turns
/// into vector shuffles; a run-time stride stays one load at a time.
fn gather_every(src: &[f32], st: usize, dst: &mut [f32]) -> usize {
    let n = dst.len().min(src.len().div_ceil(st));
    if st == 2 {
        let pairs = n.min(src.len() / 2);
        let (s2, d2) = (&src[..2 * pairs], &mut dst[..pairs]);
        for j in 0..pairs {
            d2[j] = s2[2 * j];
        }
        if pairs < n {
            dst[pairs] = src[2 * pairs];
        }
    } else {
        for (d, &v) in dst[..n].iter_mut().zip(src.iter().step_by(st)) {
            *d = v;
        }
    }
    n
}

/// For tap `kx`, the phase and the start in a phase row of output column
/// `lo`: input column `ox·sw + kx − pw` is `sw·(ox + off) + phase`.
fn tap(s: &Conv2dShape, kx: usize, lo: usize) -> (usize, usize) {
    let (sw, pw) = (s.stride[1] as isize, s.padding[1] as isize);
    let q = kx as isize - pw;
    (
        q.rem_euclid(sw) as usize,
        (lo as isize + q.div_euclid(sw)) as usize,
    )
}

/// Runs `f(rows, row width)` with the plane's rows arranged for [`tap`]:
/// the plane itself at stride 1, its phases otherwise.
fn with_phases<R>(s: &Conv2dShape, plane: &[f32], f: impl FnOnce(&[f32], usize) -> R) -> R {
    if s.stride[1] == 1 {
        return f(plane, s.in_w);
    }
    let wp = s.in_w.div_ceil(s.stride[1]);
    with_col(s.stride[1] * s.in_h * wp, |buf| {
        deinterleave(s, plane, buf);
        f(buf, wp)
    })
}

/// Every tap of a depthwise kernel over one plane, tap by tap (k = ky·kw +
/// kx) and output row by output row, skipping rows outside the input:
/// `f(k, out, start)`, where output positions `out` (a range in the output
/// plane) line up with `rows[start .. start + out.len()]` of the
/// [`with_phases`] layout whose rows are `wp` wide.
fn for_each_tap(s: &Conv2dShape, wp: usize, mut f: impl FnMut(usize, Range<usize>, usize)) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let [kh, kw] = s.kernel;
    let (sh, ph) = (s.stride[0], s.padding[0]);
    for ky in 0..kh {
        for kx in 0..kw {
            let (lo, hi) = valid_columns(s, kx, ow);
            if lo == hi {
                continue;
            }
            let (phase, x0) = tap(s, kx, lo);
            for oy in 0..oh {
                let iy = (oy * sh + ky) as isize - ph as isize;
                if iy < 0 || iy as usize >= s.in_h {
                    continue;
                }
                let start = (phase * s.in_h + iy as usize) * wp + x0;
                f(ky * kw + kx, oy * ow + lo..oy * ow + hi, start);
            }
        }
    }
}

pub(crate) fn depthwise_forward(
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    if s.out_w() < ROW_MIN {
        return forward_across_channels(s, x, weight, bias, out);
    }
    let kk = s.kernel[0] * s.kernel[1];
    let c = s.in_channels;
    let ihw = s.in_h * s.in_w;
    let (hp, wq) = padded_phase_dims(s);
    let ow = s.out_w();
    planes_mut(out, s.out_h() * ow, |p, o| {
        let ch = p % c;
        let wk = &weight[ch * kk..(ch + 1) * kk];
        let b = bias.map_or(0.0, |b| b[ch]);
        with_col(s.stride[1] * hp * wq, |buf| {
            padded_phases(s, &x[p * ihw..(p + 1) * ihw], buf);
            let rows = PlaneRows {
                buf,
                wk,
                bias: b,
                kernel: s.kernel,
                stride: s.stride,
                hp,
                wq,
            };
            for (oy, row) in o.chunks_exact_mut(ow).enumerate() {
                // The widest block that fits, then narrower ones.
                let mut c0 = 0;
                while c0 < ow {
                    c0 += match ow - c0 {
                        64.. => rows.run::<64>(oy, c0, row),
                        32.. => rows.run::<32>(oy, c0, row),
                        16.. => rows.run::<16>(oy, c0, row),
                        8.. => rows.run::<8>(oy, c0, row),
                        _ => rows.run::<1>(oy, c0, row),
                    };
                }
            }
        });
    });
}

/// Rows and phase-row width of [`padded_phases`]' layout.
fn padded_phase_dims(s: &Conv2dShape) -> (usize, usize) {
    let hp = s.in_h + s.padding[0] + s.padding_end[0];
    let wpad = s.in_w + s.padding[1] + s.padding_end[1];
    (hp, wpad.div_ceil(s.stride[1]))
}

/// The zero-padded plane with its columns regrouped by stride phase:
/// padded column `q·sw + phase` of padded row `y` at `[phase][y][q]`, so
/// tap `kx` of output column `ox` is `[kx mod sw][y][ox + kx / sw]` and a
/// run of output columns reads a contiguous run — no edge cases left.
fn padded_phases(s: &Conv2dShape, plane: &[f32], buf: &mut [f32]) {
    let (hp, wq) = padded_phase_dims(s);
    let (sw, [pt, pl]) = (s.stride[1], s.padding);
    buf.fill(0.0);
    for (iy, row) in plane.chunks_exact(s.in_w).enumerate() {
        if sw == 1 {
            buf[(iy + pt) * wq + pl..][..s.in_w].copy_from_slice(row);
            continue;
        }
        for phase in 0..sw {
            // The first phase column at or right of the left padding.
            let q0 = pl.saturating_sub(phase).div_ceil(sw);
            let Some(src) = row.get(q0 * sw + phase - pl..) else {
                continue;
            };
            gather_every(
                src,
                sw,
                &mut buf[(phase * hp + iy + pt) * wq + q0..][..wq - q0],
            );
        }
    }
}

/// One plane's [`padded_phases`] layout (`hp` rows of `wq` per phase) and
/// kernel, for the along-row forward pass.
struct PlaneRows<'a> {
    buf: &'a [f32],
    wk: &'a [f32],
    bias: f32,
    kernel: [usize; 2],
    stride: [usize; 2],
    hp: usize,
    wq: usize,
}

impl PlaneRows<'_> {
    /// Output columns `c0 .. c0 + W` of output row `oy`: `W` sums held in
    /// registers over every tap (bias first, then the taps in order, as the
    /// across-channel kernel adds them), each tap one broadcast weight and
    /// `W` loads — rather than a pass over the output row per tap. Returns `W`.
    #[inline(always)]
    fn run<const W: usize>(&self, oy: usize, c0: usize, row: &mut [f32]) -> usize {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let mut acc = [self.bias; W];
        for ky in 0..kh {
            let y = oy * sh + ky;
            for kx in 0..kw {
                let src = &self.buf[((kx % sw) * self.hp + y) * self.wq + kx / sw + c0..][..W];
                let w = self.wk[ky * kw + kx];
                for j in 0..W {
                    acc[j] = src[j].mul_add(w, acc[j]);
                }
            }
        }
        row[c0..c0 + W].copy_from_slice(&acc);
        W
    }
}

pub(crate) fn depthwise_input_grad(s: &Conv2dShape, weight: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert_eq!(dx.len(), s.input_len());
    if let Some((adjoint, flipped)) = flipped_adjoint(s, weight) {
        return depthwise_forward(&adjoint, dy, &flipped, None, dx);
    }
    if s.out_w() < ROW_MIN {
        return input_grad_across_channels(s, weight, dy, dx);
    }
    let ohw = s.out_h() * s.out_w();
    let kk = s.kernel[0] * s.kernel[1];
    let c = s.in_channels;
    let wp = s.in_w.div_ceil(s.stride[1]);
    planes_mut(dx, s.in_h * s.in_w, |p, d| {
        let ch = p % c;
        let g = &dy[p * ohw..(p + 1) * ohw];
        let wk = &weight[ch * kk..(ch + 1) * kk];
        // Accumulate in the phase layout, then write the columns back.
        let accumulate = |rows: &mut [f32]| {
            rows.fill(0.0);
            for_each_tap(s, wp, |k, cols, start| {
                rows[start..start + cols.len()]
                    .iter_mut()
                    .zip(&g[cols])
                    .for_each(|(d, v)| *d = v.mul_add(wk[k], *d));
            });
        };
        if s.stride[1] == 1 {
            accumulate(d);
        } else {
            with_col(s.stride[1] * s.in_h * wp, |buf| {
                accumulate(buf);
                interleave(s, buf, d);
            });
        }
    });
}

pub(crate) fn depthwise_weight_grad(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    assert_eq!(dw.len(), s.weight_len());
    if s.out_w() < ROW_MIN {
        return weight_grad_across_channels(s, x, dy, dw);
    }
    let ohw = s.out_h() * s.out_w();
    let c = s.in_channels;
    let ihw = s.in_h * s.in_w;
    let kk = s.kernel[0] * s.kernel[1];
    // One kh·kw gradient per channel: per image each tap's sum over the
    // rows, then added to the channel's gradient, image by image in order.
    let dwp = SendPtr(dw.as_mut_ptr());
    (0..c).into_par_iter().for_each(|ch| {
        // SAFETY: channel `ch` owns dw[ch·kk .. (ch+1)·kk], disjoint across tasks.
        let out = unsafe { std::slice::from_raw_parts_mut(dwp.get().add(ch * kk), kk) };
        out.fill(0.0);
        let mut sums = vec![0f32; kk];
        for n in 0..s.batch {
            let p = n * c + ch;
            let g = &dy[p * ohw..(p + 1) * ohw];
            let plane = &x[p * ihw..(p + 1) * ihw];
            sums.fill(0.0);
            if !weight_grad_in_registers(s, plane, g, &mut sums) {
                with_phases(s, plane, |rows, wp| {
                    for_each_tap(s, wp, |k, cols, start| {
                        sums[k] += dot(&rows[start..start + cols.len()], &g[cols]);
                    });
                });
            }
            out.iter_mut().zip(&sums).for_each(|(o, v)| *o += v);
        }
    });
}

/// One plane's weight gradient with each kernel row's sums held in
/// registers over the whole plane ([`x86::weight_rows`]), where the CPU
/// has AVX2 and the kernel is 3, 5 or 7 wide; `false` (nothing written)
/// otherwise, for the tap-by-tap dot products.
fn weight_grad_in_registers(s: &Conv2dShape, plane: &[f32], g: &[f32], sums: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        type Rows = unsafe fn(&Conv2dShape, &[f32], &[f32], &mut [f32]);
        let rows: Rows = match (active(), s.kernel[1]) {
            (Isa::Portable, _) => return false,
            (_, 3) => x86::weight_rows::<3>,
            (_, 5) => x86::weight_rows::<5>,
            (_, 7) => x86::weight_rows::<7>,
            _ => return false,
        };
        let (hp, wq) = padded_phase_dims(s);
        assert!(g.len() == s.out_h() * s.out_w() && sums.len() == s.kernel[0] * s.kernel[1]);
        with_col(s.stride[1] * hp * wq, |buf| {
            padded_phases(s, plane, buf);
            // SAFETY: `active()` only returns instruction sets the CPU has
            // (AVX-512 machines have AVX2); `buf` is the padded layout of `s`.
            unsafe { rows(s, buf, g, sums) }
        });
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (s, plane, g, sums);
        false
    }
}

/// A dot product in eight lanes, so the compiler vectorises it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}
