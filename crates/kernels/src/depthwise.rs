//! Depthwise convolutions (`groups == C`): too little work per output for
//! a matrix product, so direct loops. Along rows (the plane's columns
//! regrouped by stride phase, so that strided walks are contiguous) when
//! rows are long; across channels, eight at a time, when planes are small.

use crate::gemm::SendPtr;
use crate::isa::{active, Isa};
use crate::shape::{valid_columns, with_col, Conv2dShape};
use rayon::prelude::*;
use std::ops::Range;

mod across;

use across::{forward_across_channels, input_grad_across_channels, weight_grad_across_channels};

/// Output rows shorter than this go across channels: along-row loops of a
/// few elements spend their time starting and ending.
const ROW_MIN: usize = 16;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Conv2dShape;
    use std::arch::x86_64::*;
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
