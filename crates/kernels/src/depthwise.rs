//! Depthwise convolutions (`groups == C`): too little work per output for
//! a matrix product, so direct loops. Along rows (the plane's columns
//! regrouped by stride phase, so that strided walks are contiguous) when
//! rows are long; across channels, eight at a time, when planes are small.

use crate::gemm::SendPtr;
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
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
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
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = start;
                for ky in 0..kh {
                    let row = (oy * sh + ky) * wp + ox * sw;
                    for kx in 0..kw {
                        let (v, t) = (&xin[row + kx], &taps[ky * kw + kx]);
                        for l in 0..LANES {
                            acc[l] = v[l].mul_add(t[l], acc[l]);
                        }
                    }
                }
                acc_out[oy * ow + ox] = acc;
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

/// The input gradient eight channels at a time, for small planes (the
/// adjoint of [`forward_across_channels`]). At stride 1 it is that forward
/// pass itself over the output gradient, with every kernel flipped and the
/// padding `k − 1 − p`; otherwise each output pixel's gradient is spread
/// over the taps into a zero-padded interleaved plane, whose interior is
/// then written back channel by channel.
fn input_grad_across_channels(s: &Conv2dShape, weight: &[f32], dy: &[f32], dx: &mut [f32]) {
    let [kh, kw] = s.kernel;
    let fits = |p: usize, k: usize| p < k;
    if s.stride == [1, 1]
        && fits(s.padding[0], kh)
        && fits(s.padding[1], kw)
        && fits(s.padding_end[0], kh)
        && fits(s.padding_end[1], kw)
    {
        let adjoint = Conv2dShape {
            in_h: s.out_h(),
            in_w: s.out_w(),
            padding: [kh - 1 - s.padding[0], kw - 1 - s.padding[1]],
            padding_end: [kh - 1 - s.padding_end[0], kw - 1 - s.padding_end[1]],
            ..*s
        };
        let flipped: Vec<f32> = weight
            .chunks_exact(kh * kw)
            .flat_map(|k| k.iter().rev())
            .copied()
            .collect();
        return forward_across_channels(&adjoint, dy, &flipped, None, dx);
    }
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
            for (j, d) in dst.iter_mut().enumerate() {
                *d = row.get(j * st + phase).copied().unwrap_or(0.0);
            }
        }
    }
}

/// The adjoint of [`deinterleave`]: the phases written back as columns.
fn interleave(s: &Conv2dShape, phases: &[f32], plane: &mut [f32]) {
    let (st, w) = (s.stride[1], s.in_w);
    let wp = w.div_ceil(st);
    for phase in 0..st.min(w) {
        for iy in 0..s.in_h {
            let src = &phases[(phase * s.in_h + iy) * wp..];
            let row = &mut plane[iy * w..(iy + 1) * w];
            for (j, ix) in (phase..w).step_by(st).enumerate() {
                row[ix] = src[j];
            }
        }
    }
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
    planes_mut(out, s.out_h() * s.out_w(), |p, o| {
        let ch = p % c;
        let wk = &weight[ch * kk..(ch + 1) * kk];
        o.fill(bias.map_or(0.0, |b| b[ch]));
        with_phases(s, &x[p * ihw..(p + 1) * ihw], |rows, wp| {
            for_each_tap(s, wp, |k, cols, start| {
                let src = &rows[start..start + cols.len()];
                o[cols]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, v)| *d = v.mul_add(wk[k], *d));
            });
        });
    });
}

pub(crate) fn depthwise_input_grad(s: &Conv2dShape, weight: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert_eq!(dx.len(), s.input_len());
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
            sums.fill(0.0);
            with_phases(s, &x[p * ihw..(p + 1) * ihw], |rows, wp| {
                for_each_tap(s, wp, |k, cols, start| {
                    sums[k] += dot(&rows[start..start + cols.len()], &g[cols]);
                });
            });
            out.iter_mut().zip(&sums).for_each(|(o, v)| *o += v);
        }
    });
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
