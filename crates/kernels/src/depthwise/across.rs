//! Depthwise convolutions across channels, eight at a time, for planes too
//! small for the along-row loops of [`super`] (EfficientNet-Lite0's last
//! stages: 8 × 8 and 4 × 4 at 128 pixels): each plane group interleaved by
//! channel (`[y][x][lane]`), so that one output pixel of eight channels is
//! one vector of multiply-adds over the taps.

use crate::gemm::SendPtr;
use crate::isa::{active, Isa};
use crate::shape::Conv2dShape;
use rayon::prelude::*;

/// Channels per vector in the across-channel kernel.
const LANES: usize = 8;

/// The forward pass eight channels at a time, for small planes: per image
/// and group of eight channels, the zero-padded input interleaved by channel
/// (`[y][x][lane]`), then each output pixel's eight values as one vector
/// of multiply-adds over the taps. Bias first, then the taps in the order
/// of the along-row loop, so both give the same bits.
pub(super) fn forward_across_channels(
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

/// The input gradient eight channels at a time, for small planes at
/// stride 2 (the adjoint of [`forward_across_channels`]; stride 1 is
/// [`super::flipped_adjoint`]): each output pixel's gradient is spread over the
/// taps into a zero-padded interleaved plane, whose interior is then
/// written back channel by channel.
pub(super) fn input_grad_across_channels(
    s: &Conv2dShape,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
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
pub(super) fn weight_grad_across_channels(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
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
