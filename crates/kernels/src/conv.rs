//! 2-D convolution over NCHW `f32` arrays: forward, input gradient and
//! weight (and bias) gradient, in the llm.c shape — plain slices in, plain
//! slices out. (Over 600 lines with its tests: the dispatch between the
//! methods below, and the tests that hold every method to one definition.)
//!
//! Dense convolutions (`groups == 1`) are matrix products of the lowered
//! ("im2col") matrix, a `(C·kh·kw) × (OH·OW)` matrix of receptive fields:
//! `out = W · col`, `dW += dY · colᵀ`, packed straight from the image
//! ([`crate::lower`]). A stride-1 convolution's input gradient is the
//! forward pass of its adjoint convolution (taps flipped, channels swapped);
//! strided ones scatter `Wᵀ · dY` back (`col2im`). Small planes are lowered
//! several images side by side, so that each product has enough columns.
//! 3 × 3 stride-1 convolutions with enough channels and tiles go through
//! Winograd's minimal filtering instead ([`crate::winograd`]: F(4 × 4, 3 × 3)
//! with enough tiles, else F(2 × 2, 3 × 3)): forward, input and weight
//! gradients. A 1 × 1 stride-1 convolution needs no lowering.
//! Depthwise convolutions (`groups == C`) are direct loops
//! ([`crate::depthwise`]).
//!
//! Images are spread over the rayon pool; with fewer images than threads the
//! matrix products themselves are split instead. The weight gradient is
//! summed over fixed chunks of images in a fixed order, so it is the same
//! bit for bit whatever the number of threads.

use crate::depthwise::{depthwise_forward, depthwise_input_grad, depthwise_weight_grad};
use crate::gemm::{gemm, gemm_nt_small, gemm_par, MatRef, PackB};
use crate::lower::Lowered;
use crate::shape::{valid_columns, with_col};
pub use crate::shape::{Conv2dShape, Unsupported};
use crate::winograd::{self, Kernels};
use rayon::prelude::*;
use std::cell::RefCell;

/// Images per partial weight gradient when each image is its own product.
const CHUNK: usize = 4;

/// Columns a matrix product should have at least (see
/// [`Conv2dShape::images_per_product`]).
const MIN_COLUMNS: usize = 512;

/// What only the dispatch below needs to know of a shape.
impl Conv2dShape {
    /// Images lowered side by side into one matrix product. ResNet34's
    /// last stages have 8 × 8 and 4 × 4 planes: one product per image
    /// would have 64 or 16 columns and repack the whole weight for them.
    fn images_per_product(&self) -> usize {
        MIN_COLUMNS
            .div_ceil(self.out_h() * self.out_w())
            .clamp(1, self.batch.max(1))
    }

    /// Whether groups of `per` images are spread over the pool (else each
    /// product is split over it).
    fn split_images(&self, per: usize) -> bool {
        self.batch.div_ceil(per) >= rayon::current_num_threads()
    }
}

/// Lays one image's receptive fields out as rows `(c, ky, kx)` × columns
/// `(oy, ox)`: the lowered matrix, stored (for the small-gradient dot
/// kernel, which reads it whole).
fn im2col(s: &Conv2dShape, x: &[f32], col: &mut [f32]) {
    let lowered = Lowered::new(s, x, 1);
    let ohw = s.out_h() * s.out_w();
    for (r, row) in col.chunks_exact_mut(ohw).take(s.patch()).enumerate() {
        lowered.segment(r, 0, row);
    }
}

/// Adds the lowered matrix back onto the image: the adjoint of [`im2col`];
/// over the pool by input channel when `par` (each channel's plane gathers
/// its own rows of `col`).
fn col2im(s: &Conv2dShape, col: &[f32], ld: usize, dx: &mut [f32], par: bool) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [ph, pw] = s.padding;
    for_each_chunk(dx, s.in_h * s.in_w, par, |c, plane| {
        plane.fill(0.0);
        for ky in 0..kh {
            for kx in 0..kw {
                let r = (c * kh + ky) * kw + kx;
                let row = &col[r * ld..r * ld + oh * ow];
                let (lo, hi) = valid_columns(s, kx, ow);
                for oy in 0..oh {
                    let iy = (oy * sh + ky) as isize - ph as isize;
                    if iy < 0 || iy as usize >= s.in_h {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * s.in_w..(iy as usize + 1) * s.in_w];
                    let src = &row[oy * ow + lo..oy * ow + hi];
                    let x0 = lo * sw + kx - pw;
                    if sw == 1 {
                        dst[x0..x0 + hi - lo]
                            .iter_mut()
                            .zip(src)
                            .for_each(|(d, v)| *d += v);
                    } else {
                        for (ox, v) in src.iter().enumerate() {
                            dst[x0 + ox * sw] += v;
                        }
                    }
                }
            }
        }
    });
}

/// `out = conv(x, weight) + bias`. `weight` is `[out, in/groups, kh, kw]`.
pub fn conv2d_forward(
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    assert_eq!(x.len(), s.input_len());
    assert_eq!(weight.len(), s.weight_len());
    assert_eq!(out.len(), s.output_len());
    let in_img = s.in_channels * s.in_h * s.in_w;
    let ohw = s.out_h() * s.out_w();
    let out_img = s.out_channels * ohw;
    if s.depthwise() {
        return depthwise_forward(s, x, weight, bias, out);
    }
    if winograd::applies(s) {
        return winograd::forward(s, x, weight, Kernels::Direct, bias, out);
    }
    let (k, co) = (s.patch(), s.out_channels);
    let w = MatRef::new(weight, co, k);
    let per = s.images_per_product();
    let split = s.split_images(per);
    for_each_chunk(out, per * out_img, split, |group, o| {
        let imgs = o.len() / out_img;
        let xs = &x[group * per * in_img..][..imgs * in_img];
        let cols = imgs * ohw;
        if imgs == 1 && s.pointwise() {
            product(
                !split,
                w,
                MatRef::new(xs, s.in_channels, ohw),
                o,
                ohw,
                false,
            );
        } else if imgs == 1 {
            product(!split, w, Lowered::new(s, xs, 1), o, ohw, false);
        } else {
            with_col(co * cols, |y| {
                product(!split, w, Lowered::new(s, xs, imgs), y, cols, false);
                unstack(y, imgs, co, ohw, o, !split);
            });
        }
        if let Some(b) = bias {
            for (row, &bc) in o.chunks_exact_mut(ohw).zip(b.iter().cycle()) {
                row.iter_mut().for_each(|v| *v += bc);
            }
        }
    });
}

/// `imgs` images of `ch` planes of `hw` values (NCHW) as one `ch × imgs·hw`
/// matrix, the images side by side; over the pool by channel when `par`.
fn stack(planes: &[f32], imgs: usize, ch: usize, hw: usize, out: &mut [f32], par: bool) {
    let out = &mut out[..ch * imgs * hw];
    for_each_chunk(out, imgs * hw, par, |c, row| {
        for (j, dst) in row.chunks_exact_mut(hw).enumerate() {
            dst.copy_from_slice(&planes[(j * ch + c) * hw..][..hw]);
        }
    });
}

/// The inverse of [`stack`], over the pool by image when `par`.
fn unstack(m: &[f32], imgs: usize, ch: usize, hw: usize, planes: &mut [f32], par: bool) {
    let planes = &mut planes[..imgs * ch * hw];
    for_each_chunk(planes, ch * hw, par, |j, img| {
        for (c, plane) in img.chunks_exact_mut(hw).enumerate() {
            plane.copy_from_slice(&m[(c * imgs + j) * hw..][..hw]);
        }
    });
}

/// `C (+)= A · B` on this thread, or split over the pool (`par`) when the
/// images are not spread over it.
fn product(par: bool, a: MatRef, b: impl PackB, c: &mut [f32], ldc: usize, accumulate: bool) {
    if par {
        gemm_par(a, b, c, ldc, accumulate)
    } else {
        gemm(a, b, c, ldc, accumulate)
    }
}

/// `f(i, chunk i of data)` for the chunks of `len` values (an image, a
/// group of images, a plane), over the pool when `par`.
fn for_each_chunk(data: &mut [f32], len: usize, par: bool, f: impl Fn(usize, &mut [f32]) + Sync) {
    if par {
        data.par_chunks_mut(len)
            .enumerate()
            .for_each(|(n, d)| f(n, d));
    } else {
        data.chunks_mut(len).enumerate().for_each(|(n, d)| f(n, d));
    }
}

/// Which gradients [`conv2d_backward`] should compute.
pub struct ConvGrads<'a> {
    pub input: Option<&'a mut [f32]>,
    pub weight: Option<&'a mut [f32]>,
    pub bias: Option<&'a mut [f32]>,
}

/// The gradients of [`conv2d_forward`] with respect to its input, weight and
/// bias, given the output's gradient `dy`; each one only when asked for.
pub fn conv2d_backward(s: &Conv2dShape, x: &[f32], weight: &[f32], dy: &[f32], grads: ConvGrads) {
    assert_eq!(x.len(), s.input_len());
    assert_eq!(weight.len(), s.weight_len());
    assert_eq!(dy.len(), s.output_len());
    let ohw = s.out_h() * s.out_w();
    if let Some(db) = grads.bias {
        assert_eq!(db.len(), s.out_channels);
        db.fill(0.0);
        // Per channel, image by image in order: a fixed summation order.
        for img in dy.chunks_exact(s.out_channels * ohw) {
            for (d, row) in db.iter_mut().zip(img.chunks_exact(ohw)) {
                *d += row.iter().sum::<f32>();
            }
        }
    }
    if s.depthwise() {
        if let Some(dx) = grads.input {
            depthwise_input_grad(s, weight, dy, dx);
        }
        if let Some(dw) = grads.weight {
            depthwise_weight_grad(s, x, dy, dw);
        }
        return;
    }
    if let Some(dx) = grads.input {
        input_grad(s, weight, dy, dx);
    }
    if let Some(dw) = grads.weight {
        weight_grad(s, x, dy, dw);
    }
}

/// For a stride-1 convolution, the convolution whose forward pass is this
/// one's input gradient: over `dy`, with the weight's input and output
/// channels swapped, its taps flipped and the padding `k − 1 − p`. It
/// needs no scatter back (`col2im`) and lowers through [`Lowered`].
fn adjoint(s: &Conv2dShape) -> Option<Conv2dShape> {
    if s.stride != [1, 1] {
        return None;
    }
    let [kh, kw] = s.kernel;
    let pad = |p: usize, k: usize| (k - 1).checked_sub(p);
    Some(Conv2dShape {
        batch: s.batch,
        in_channels: s.out_channels,
        in_h: s.out_h(),
        in_w: s.out_w(),
        out_channels: s.in_channels,
        kernel: s.kernel,
        stride: [1, 1],
        padding: [pad(s.padding[0], kh)?, pad(s.padding[1], kw)?],
        padding_end: [pad(s.padding_end[0], kh)?, pad(s.padding_end[1], kw)?],
        groups: 1,
    })
}

fn input_grad(s: &Conv2dShape, weight: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert_eq!(dx.len(), s.input_len());
    // The adjoint's products have the input's channels as rows: with a
    // few (an RGB image's 3) they are too thin, and the scatter is faster.
    if let Some(adj) = adjoint(s).filter(|_| s.in_channels >= 16) {
        if winograd::applies(&adj) {
            return winograd::forward(&adj, dy, weight, Kernels::Adjoint, None, dx);
        }
        let (ci, co, kk) = (s.in_channels, s.out_channels, s.kernel[0] * s.kernel[1]);
        return with_parts(weight.len(), |flipped| {
            flip(weight, ci, co, kk, flipped);
            conv2d_forward(&adj, dy, flipped, None, dx)
        });
    }
    let in_img = s.in_channels * s.in_h * s.in_w;
    let ohw = s.out_h() * s.out_w();
    let (k, co) = (s.patch(), s.out_channels);
    let out_img = co * ohw;
    let wt = MatRef::new(weight, co, k).t();
    let per = s.images_per_product();
    let split = s.split_images(per);
    for_each_chunk(dx, per * in_img, split, |group, d| {
        let imgs = d.len() / in_img;
        let gy = &dy[group * per * out_img..][..imgs * out_img];
        let cols = imgs * ohw;
        // Strided: the columns' product scattered back onto the image.
        if imgs == 1 {
            with_col(k * ohw, |col| {
                product(!split, wt, MatRef::new(gy, co, ohw), col, ohw, false);
                col2im(s, col, ohw, d, !split);
            });
        } else {
            with_col((co + k) * cols, |buf| {
                let (g, col) = buf.split_at_mut(co * cols);
                stack(gy, imgs, co, ohw, g, !split);
                product(!split, wt, MatRef::new(g, co, cols), col, cols, false);
                for (j, dj) in d.chunks_exact_mut(in_img).enumerate() {
                    col2im(s, &col[j * ohw..], cols, dj, !split);
                }
            });
        }
    });
}

/// `flipped[c][o][t] = weight[o][c][kk − 1 − t]`: the adjoint's weights.
/// In blocks of [`FLIP_BLOCK`] input channels over the pool: a block's
/// rows of `flipped` are written in order while the strided reads of
/// `weight` they need (one tap set per output channel) share cache lines;
/// done plainly, a channel at a time on one thread, the flip of
/// ResNet34's 512 × 512 × 3 × 3 weights took a third of the input gradient.
fn flip(weight: &[f32], ci: usize, co: usize, kk: usize, flipped: &mut [f32]) {
    flipped
        .par_chunks_mut(FLIP_BLOCK * co * kk)
        .enumerate()
        .for_each(|(b, dst)| {
            let c0 = b * FLIP_BLOCK;
            let cb = dst.len() / (co * kk);
            for o in 0..co {
                let src = &weight[(o * ci + c0) * kk..][..cb * kk];
                for (c, taps) in src.chunks_exact(kk).enumerate() {
                    let out = &mut dst[(c * co + o) * kk..][..kk];
                    out.iter_mut()
                        .zip(taps.iter().rev())
                        .for_each(|(d, &v)| *d = v);
                }
            }
        });
}

/// Input channels per block of [`flip`]: 16 × 9 taps of each output
/// channel's weights are 576 contiguous bytes.
const FLIP_BLOCK: usize = 16;

fn weight_grad(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    assert_eq!(dw.len(), s.weight_len());
    if winograd::applies(s) {
        return winograd::weight_grad(s, x, dy, dw);
    }
    let in_img = s.in_channels * s.in_h * s.in_w;
    let ohw = s.out_h() * s.out_w();
    let (k, co) = (s.patch(), s.out_channels);
    let out_img = co * ohw;
    // A small gradient over a large image (the cnn's first layer: 32 × 27
    // over 128 × 128) is cheaper as plain dot products than packed.
    let small = co * k <= 4096 && ohw >= 1024;
    let per = s.images_per_product();
    let chunk = if per > 1 { per } else { CHUNK };
    // dW(chunk c) = Σ over its images of dY · colᵀ, into `part`.
    let chunk_grad = |c: usize, part: &mut [f32], par: bool| {
        let (first, last) = (c * chunk, ((c + 1) * chunk).min(s.batch));
        if per > 1 {
            let cols = (last - first) * ohw;
            return with_col(co * cols, |g| {
                stack(
                    &dy[first * out_img..last * out_img],
                    last - first,
                    co,
                    ohw,
                    g,
                    par,
                );
                let col = Lowered::new(s, &x[first * in_img..], last - first).t();
                product(par, MatRef::new(g, co, cols), col, part, k, false);
            });
        }
        for n in first..last {
            let g = MatRef::new(&dy[n * out_img..(n + 1) * out_img], co, ohw);
            let xi = &x[n * in_img..(n + 1) * in_img];
            let acc = n > first;
            if small && s.pointwise() {
                gemm_nt_small(g.data, xi, co, k, ohw, part, acc)
            } else if small {
                with_col(k * ohw, |col| {
                    im2col(s, xi, col);
                    gemm_nt_small(g.data, col, co, k, ohw, part, acc)
                });
            } else if s.pointwise() {
                let xt = MatRef::new(xi, s.in_channels, ohw).t();
                product(par, g, xt, part, k, acc);
            } else {
                product(par, g, Lowered::new(s, xi, 1).t(), part, k, acc);
            }
        }
    };
    let chunks = s.batch.div_ceil(chunk);
    let len = dw.len();
    let parallel = s.split_images(chunk) && chunks > 1;
    // Chunk 0 goes straight into dw, the others into partial sums added
    // in chunk order — the same order serially and in parallel, so the
    // same bits whatever the number of threads.
    with_parts(if parallel { (chunks - 1) * len } else { len }, |parts| {
        if parallel {
            let targets: Vec<&mut [f32]> = std::iter::once(&mut *dw)
                .chain(parts.chunks_exact_mut(len))
                .collect();
            targets
                .into_par_iter()
                .enumerate()
                .for_each(|(c, part)| chunk_grad(c, part, false));
            for part in parts.chunks_exact(len) {
                dw.iter_mut().zip(part).for_each(|(d, p)| *d += p);
            }
        } else {
            chunk_grad(0, dw, true);
            for c in 1..chunks {
                chunk_grad(c, parts, true);
                dw.iter_mut().zip(&*parts).for_each(|(d, p)| *d += p);
            }
        }
    });
}

thread_local! {
    /// Partial weight gradients, reused by every call on this thread.
    static PARTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn with_parts<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    PARTS.with(|parts| {
        let mut parts = parts.borrow_mut();
        if parts.len() < len {
            parts.resize(len, 0.0);
        }
        f(&mut parts[..len])
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The convolution and its gradients by the definition, in f64.
    pub(crate) fn reference(
        s: &Conv2dShape,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        dy: &[f32],
    ) -> [Vec<f64>; 4] {
        let (oh, ow) = (s.out_h(), s.out_w());
        let cpg = s.in_channels / s.groups;
        let opg = s.out_channels / s.groups;
        let [kh, kw] = s.kernel;
        let mut out = vec![0f64; s.output_len()];
        let mut dx = vec![0f64; s.input_len()];
        let mut dw = vec![0f64; s.weight_len()];
        let mut db = vec![0f64; s.out_channels];
        for n in 0..s.batch {
            for o in 0..s.out_channels {
                let g = o / opg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let oi = ((n * s.out_channels + o) * oh + oy) * ow + ox;
                        let mut acc = b[o] as f64;
                        db[o] += dy[oi] as f64;
                        for ci in 0..cpg {
                            let c = g * cpg + ci;
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy =
                                        (oy * s.stride[0] + ky) as isize - s.padding[0] as isize;
                                    let ix =
                                        (ox * s.stride[1] + kx) as isize - s.padding[1] as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy as usize >= s.in_h
                                        || ix as usize >= s.in_w
                                    {
                                        continue;
                                    }
                                    let xi = ((n * s.in_channels + c) * s.in_h + iy as usize)
                                        * s.in_w
                                        + ix as usize;
                                    let wi = ((o * cpg + ci) * kh + ky) * kw + kx;
                                    acc += x[xi] as f64 * w[wi] as f64;
                                    dx[xi] += dy[oi] as f64 * w[wi] as f64;
                                    dw[wi] += dy[oi] as f64 * x[xi] as f64;
                                }
                            }
                        }
                        out[oi] = acc;
                    }
                }
            }
        }
        [out, dx, dw, db]
    }

    pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut st = seed.wrapping_add(0x9E3779B97F4A7C15);
        (0..n)
            .map(|_| {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                ((st >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn close(what: &str, s: &Conv2dShape, got: &[f32], want: &[f64]) {
        let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-4 * scale,
                "{what} of {s:?}: [{i}] = {g}, want {w}"
            );
        }
    }

    fn check(s: Conv2dShape) {
        s.check().unwrap();
        let x = values(s.input_len(), 1);
        let w = values(s.weight_len(), 2);
        let b = values(s.out_channels, 3);
        let dy = values(s.output_len(), 4);
        let [out, dx, dw, db] = reference(&s, &x, &w, &b, &dy);
        let mut got = vec![f32::NAN; s.output_len()];
        conv2d_forward(&s, &x, &w, Some(&b), &mut got);
        close("forward", &s, &got, &out);
        let mut gx = vec![f32::NAN; s.input_len()];
        let mut gw = vec![f32::NAN; s.weight_len()];
        let mut gb = vec![f32::NAN; s.out_channels];
        conv2d_backward(
            &s,
            &x,
            &w,
            &dy,
            ConvGrads {
                input: Some(&mut gx),
                weight: Some(&mut gw),
                bias: Some(&mut gb),
            },
        );
        close("input gradient", &s, &gx, &dx);
        close("weight gradient", &s, &gw, &dw);
        close("bias gradient", &s, &gb, &db);
    }

    #[allow(clippy::too_many_arguments)]
    fn shape(
        batch: usize,
        c: usize,
        h: usize,
        w: usize,
        o: usize,
        k: usize,
        st: usize,
        p: usize,
        groups: usize,
    ) -> Conv2dShape {
        Conv2dShape {
            batch,
            in_channels: c,
            in_h: h,
            in_w: w,
            out_channels: o,
            kernel: [k, k],
            stride: [st, st],
            padding: [p, p],
            padding_end: [p, p],
            groups,
        }
    }

    /// TensorFlow's "same" padding: the odd pixel after the input.
    fn same(mut s: Conv2dShape) -> Conv2dShape {
        s.padding_end = [s.padding[0] + 1, s.padding[1] + 1];
        s
    }

    #[test]
    fn dense_convolutions_match_the_definition() {
        for s in [
            shape(1, 3, 9, 7, 5, 3, 1, 1, 1),
            shape(2, 4, 8, 8, 6, 3, 2, 1, 1),
            shape(3, 5, 6, 5, 7, 1, 1, 0, 1),
            shape(2, 6, 7, 9, 3, 1, 2, 0, 1),
            shape(1, 3, 15, 13, 4, 7, 2, 3, 1),
            shape(5, 2, 5, 5, 3, 3, 1, 0, 1),
            shape(9, 3, 4, 6, 17, 3, 1, 2, 1),
            same(shape(2, 3, 8, 8, 4, 3, 2, 0, 1)),
            // Stride 1 with more padding after than before (the input
            // gradient's adjoint convolution pads k − 1 − p on each side).
            same(shape(2, 3, 7, 6, 4, 3, 1, 0, 1)),
            same(shape(3, 2, 9, 8, 3, 5, 1, 1, 1)),
            // EfficientNet-Lite0's head at a 64-pixel input: 2 × 2 planes.
            shape(4, 320, 2, 2, 1280, 1, 1, 0, 1),
            shape(4, 192, 2, 2, 1152, 1, 1, 0, 1),
            // The lowered adjoint's flipped weights: 20 input channels,
            // a block of 16 and a short one of 4.
            shape(2, 20, 4, 4, 24, 3, 1, 1, 1),
            // Two images per product, the last group one image short.
            shape(9, 3, 16, 24, 5, 3, 1, 1, 1),
            shape(7, 4, 12, 20, 6, 1, 1, 0, 1),
            // Winograd's F(2 × 2, 3 × 3): forward, input and weight gradients.
            shape(2, 16, 16, 16, 16, 3, 1, 1, 1),
            // F(4 × 4, 3 × 3) forward and input gradient (64 tiles of 4 × 4).
            shape(4, 16, 16, 16, 16, 3, 1, 1, 1),
            // One product per image, two partial weight gradients.
            shape(5, 2, 24, 24, 3, 3, 1, 1, 1),
            // A small weight gradient over a large image: dot products
            // over the stored lowered matrix.
            shape(2, 3, 32, 33, 4, 3, 1, 1, 1),
            // Stride 3 over planes of more than 64 outputs (lowered in
            // runs, not by table).
            shape(2, 3, 40, 38, 4, 3, 3, 1, 1),
        ] {
            check(s);
        }
        let wino = shape(2, 16, 16, 16, 16, 3, 1, 1, 1);
        assert!(winograd::applies(&wino) && winograd::applies(&adjoint(&wino).unwrap()));
    }

    /// The weight gradient must be the same bits on one thread as on
    /// several (resumed training relies on it), on both of its paths.
    #[test]
    fn weight_gradients_do_not_depend_on_the_thread_count() {
        // Two partial sums each (summed in parallel on 1 or 2 threads,
        // serially with products split on 3), five, and one.
        for s in [
            shape(4, 3, 16, 24, 5, 3, 1, 1, 1),
            shape(7, 4, 24, 24, 6, 3, 1, 1, 1),
            shape(9, 3, 16, 24, 5, 3, 1, 1, 1),
            shape(6, 8, 4, 4, 16, 3, 1, 1, 1),
            // Winograd's, over several blocks of tiles.
            shape(3, 64, 62, 61, 64, 3, 1, 1, 1),
        ] {
            let x = values(s.input_len(), 5);
            let w = values(s.weight_len(), 6);
            let dy = values(s.output_len(), 7);
            let grad = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut gw = vec![0f32; s.weight_len()];
                pool.install(|| {
                    let grads = ConvGrads {
                        input: None,
                        weight: Some(&mut gw),
                        bias: None,
                    };
                    conv2d_backward(&s, &x, &w, &dy, grads)
                });
                gw
            };
            let one = grad(1);
            for threads in [2, 3] {
                let bits = |g: &[f32]| g.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&one),
                    bits(&grad(threads)),
                    "{s:?} on {threads} threads"
                );
            }
        }
    }

    #[test]
    fn depthwise_convolutions_match_the_definition() {
        for s in [
            shape(2, 5, 9, 7, 5, 3, 1, 1, 5),
            shape(3, 4, 10, 11, 4, 3, 2, 1, 4),
            shape(1, 3, 12, 12, 3, 5, 2, 2, 3),
            shape(2, 6, 8, 8, 6, 5, 1, 2, 6),
            same(shape(2, 4, 9, 9, 4, 5, 2, 1, 4)),
            shape(4, 1152, 2, 2, 1152, 3, 1, 1, 1152),
            shape(4, 7, 2, 2, 7, 5, 1, 2, 7),
            shape(3, 6, 4, 4, 6, 5, 1, 2, 6),
            same(shape(3, 6, 4, 4, 6, 5, 2, 1, 6)),
            same(shape(2, 5, 8, 8, 5, 3, 2, 0, 5)),
            // Small planes at stride 1: the input gradient as the flipped
            // forward pass (uneven padding), or spread when padding ≥ kernel.
            same(shape(2, 9, 6, 5, 9, 3, 1, 1, 9)),
            same(shape(2, 5, 8, 8, 5, 3, 1, 2, 5)),
            same(shape(2, 5, 16, 16, 5, 5, 2, 1, 5)),
            // Rows of 16 and more: the along-row loops (the rest go across
            // channels).
            shape(2, 5, 20, 18, 5, 3, 1, 1, 5),
            same(shape(2, 3, 40, 36, 3, 3, 2, 0, 3)),
            // ... fused kernel row by kernel row, 3 and 5 wide (EfficientNet's).
            shape(2, 4, 21, 19, 4, 5, 1, 2, 4),
            shape(1, 3, 17, 33, 3, 3, 1, 0, 3),
            same(shape(2, 3, 40, 38, 3, 5, 2, 1, 3)),
            // Rows past one register block of 64 (64 + 64 + 16 + 8 + 3
            // columns; 64 + 4 at stride 2, odd width, no left padding).
            shape(1, 2, 5, 155, 2, 3, 1, 1, 2),
            same(shape(1, 3, 7, 137, 3, 3, 2, 0, 3)),
            // Padding at the end past the kernel: no flipped forward pass.
            same(shape(1, 2, 6, 20, 2, 3, 1, 2, 2)),
            // A 7-wide depthwise kernel, and a 4-wide one (the plain loops).
            shape(2, 3, 24, 22, 3, 7, 1, 3, 3),
            shape(1, 2, 20, 20, 2, 4, 1, 1, 2),
        ] {
            // Each instruction set's path, so the narrower ones do not rot
            // on machines with the wider.
            crate::isa::on_each_available(|_| {
                check(s);
            });
        }
    }

    /// Every convolution of ResNet34 at batch 4 for 64- and 128-pixel
    /// inputs: the stem, each stage's 3 × 3 (Winograd or the lowered product,
    /// by the tile count) and each stage's strided 3 × 3 and 1 × 1 shortcut.
    /// The model-level comparison with Burn's ops cannot hold its gradients
    /// tightly (tests/kernels.rs in nabla-vision says why), so its layers are
    /// held to their definition here.
    #[test]
    fn resnet34_convolutions_match_the_definition() {
        for px in [64, 128] {
            check(shape(4, 3, px, px, 64, 7, 2, 3, 1));
            let mut side = px / 4;
            for c in [64, 128, 256, 512] {
                if c > 64 {
                    check(shape(4, c / 2, side * 2, side * 2, c, 3, 2, 1, 1));
                    check(shape(4, c / 2, side * 2, side * 2, c, 1, 2, 0, 1));
                }
                check(shape(4, c, side, side, c, 3, 1, 1, 1));
                side /= 2;
            }
        }
    }

    #[test]
    fn unsupported_groupings_are_refused() {
        assert!(shape(1, 4, 5, 5, 8, 3, 1, 1, 2).check().is_err());
        assert!(shape(1, 4, 5, 5, 4, 3, 1, 1, 2).check().is_err());
    }
}
