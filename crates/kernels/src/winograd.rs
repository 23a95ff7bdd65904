//! 3 × 3 stride-1 convolutions by Winograd's minimal filtering F(2 × 2, 3 × 3)
//! (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016): each 2 × 2 block of outputs comes from a 4 × 4 tile of the input
//! with 16 multiplications per channel pair instead of 36, so the 16 matrix
//! products that do the work have 2.25 times fewer multiply-adds than the
//! lowered (im2col) product — and they read 16/4 = 4 values per input
//! pixel, not 9.
//!
//! With `g` a 3 × 3 kernel and `d` a 4 × 4 tile, the 2 × 2 output is
//! `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`; summed over input channels, each of the 16
//! positions of the `⊙` is one product `M_ξ = U_ξ · V_ξ` of the transformed
//! weights `U_ξ` (out × in) and tiles `V_ξ` (in × tiles).
//!
//! Planes with enough tiles go through F(4 × 4, 3 × 3) instead ([`f4`]):
//! 36 products over 6 × 6 tiles, 16/9 times fewer multiply-adds again. The
//! two share the blocking and the products ([`Filtering`]); each has its
//! own transforms. (Over 600 lines: F(2 × 2)'s transforms stay beside the
//! blocking and products that both filterings share, for forward, input
//! gradient and weight gradient; F(4 × 4)'s own transforms are in [`f4`].)

use crate::gemm::{gemm, MatRef, SendPtr};
use crate::shape::Conv2dShape;
use crate::transpose::transpose_rows;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;

mod f4;

/// Whether [`forward`] computes this convolution, and is worth it: with
/// few input channels the products are too thin; with fewer tiles than
/// [`MIN_TILES`] transforming the weights, which grow by 16/9, costs more
/// than the multiplications it saves.
pub(crate) fn applies(s: &Conv2dShape) -> bool {
    let tiles = s.batch * s.out_h().div_ceil(2) * s.out_w().div_ceil(2);
    computes(s) && s.in_channels >= 16 && s.out_channels >= 16 && tiles >= MIN_TILES
}

/// Whether [`forward`] can compute this convolution at all.
fn computes(s: &Conv2dShape) -> bool {
    s.groups == 1 && s.kernel == [3, 3] && s.stride == [1, 1]
}

/// See [`applies`]. 64 takes in ResNet34's layer4 at batch 16 (4 × 4
/// planes, four tiles each): that layer's share of a training step fell
/// from 100–108 to 76–79 ms against its lowered product (three alternating
/// runs of `nabla bench vision --model resnet34 --batch-size 16 --profile`,
/// AMD EPYC Zen 4), where timing the layer alone had shown no difference.
const MIN_TILES: usize = 64;

/// Tiles × channels per block: a block's tiles are transformed, multiplied
/// and transformed back while they are in cache (one position's slice of
/// the transformed tiles is then about 256 KiB).
/// The unit tests use small blocks, so that small shapes have several.
const BLOCK_VALUES: usize = if cfg!(test) { 1 << 10 } else { 1 << 16 };

thread_local! {
    /// Transformed weights, on the calling thread.
    static WEIGHTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// One block's transformed tiles and products, on the thread that runs it.
    static BLOCK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// One channel's working rows inside a transform, on the thread that runs it.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `len` floats of this thread's scratch for one channel of a transform,
/// taken from it until dropped, so that no channel zeroes a fresh buffer
/// (that zeroing was 3–4 % of a ResNet34 step). The values are whatever
/// the last user left: a transform writes every value it reads, zeros
/// included. Debug builds fill them with NaN first, so a transform that
/// reads a value it did not write fails its tests.
struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

impl Scratch {
    fn take(len: usize) -> Self {
        let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let used = grown(&mut buf, len);
        if cfg!(debug_assertions) {
            used.fill(f32::NAN);
        }
        Scratch { buf, len }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // The larger of two buffers stays; none stays while the thread ends.
        let _ = SCRATCH.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.capacity() < buf.capacity() {
                *s = buf;
            }
        });
    }
}

/// `f(i)` for every `i < n`, over the pool when `par`.
fn for_each_index(n: usize, par: bool, f: impl Fn(usize) + Sync + Send) {
    if par {
        (0..n).into_par_iter().for_each(f);
    } else {
        (0..n).for_each(f);
    }
}

/// `(tw, rows, per_block)`: tiles per tile row, tile rows (`(image, ty)`
/// pairs) in all, and tile rows per block — a block holding about
/// `block_values` tiles × channels.
fn blocking(s: &Conv2dShape, out: usize, block_values: usize) -> (usize, usize, usize) {
    let (th, tw) = (s.out_h().div_ceil(out), s.out_w().div_ceil(out));
    let rows = s.batch * th;
    let per_block = (block_values / s.in_channels.max(s.out_channels) / tw).clamp(1, rows.max(1));
    (tw, rows, per_block)
}

fn grown(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// `out = conv(x, weight) + bias` for a convolution [`applies`] accepts:
/// by F(4 × 4, 3 × 3) where it has enough tiles, else F(2 × 2, 3 × 3).
pub(crate) fn forward(
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    kernels: Kernels,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let filtering = if f4::applies(s) { F4 } else { F2 };
    forward_by(&filtering, s, x, weight, kernels, bias, out);
}

/// `(shape, products, tile rows, bias, out, parallel)`: a block's outputs
/// from its products.
type InverseTransform = fn(&Conv2dShape, &[f32], Range<usize>, Option<&[f32]>, SendPtr, bool);

/// One of Winograd's minimal filterings F(m × m, 3 × 3): its output tile
/// side and its three transforms.
struct Filtering {
    out: usize,
    /// Tiles × channels per block.
    block_values: usize,
    weights: fn(usize, usize, &[f32], Kernels, &mut [f32]),
    tiles: fn(&Conv2dShape, &[f32], Range<usize>, &mut [f32], bool),
    inverse: InverseTransform,
    /// The weight gradient's `A dY Aᵀ` and `Gᵀ dU G`.
    output_grads: fn(&Conv2dShape, &[f32], Range<usize>, &mut [f32], bool),
    weight_grads: fn(usize, usize, &[f32], &mut [f32]),
}

impl Filtering {
    /// Transformed positions per tile: `(m + 2)²`.
    fn positions(&self) -> usize {
        (self.out + 2) * (self.out + 2)
    }
}

const F2: Filtering = Filtering {
    out: 2,
    block_values: BLOCK_VALUES,
    weights: transform_weights,
    tiles: transform_tiles,
    inverse: inverse_transform,
    output_grads: transform_output_grads,
    weight_grads: weight_grads_of,
};

const F4: Filtering = Filtering {
    out: f4::OUT,
    block_values: f4::BLOCK_VALUES,
    weights: f4::transform_weights,
    tiles: f4::transform_tiles,
    inverse: f4::inverse_transform,
    output_grads: f4::transform_output_grads,
    weight_grads: f4::weight_grads_of,
};

/// [`forward`] by one filtering. The tiles are taken in blocks of whole
/// tile rows (`(image, ty)` pairs); blocks are spread over the pool, or,
/// when there are fewer blocks than threads, each block's work is.
fn forward_by(
    f: &Filtering,
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    kernels: Kernels,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    assert!(computes(s), "not a 3 × 3 stride-1 convolution: {s:?}");
    assert_eq!(out.len(), s.output_len());
    let (ci, co, p) = (s.in_channels, s.out_channels, f.positions());
    let (tw, rows, per_block) = blocking(s, f.out, f.block_values);
    let blocks = rows.div_ceil(per_block);
    let out = SendPtr(out.as_mut_ptr());
    WEIGHTS.with(|u| {
        let mut u = u.borrow_mut();
        let u = grown(&mut u, p * co * ci);
        (f.weights)(ci, co, weight, kernels, u);
        let u = &*u;
        let run = |b: usize, par: bool| {
            let (r0, r1) = (b * per_block, ((b + 1) * per_block).min(rows));
            let nt = (r1 - r0) * tw;
            BLOCK.with(|bufs| {
                let (v, m) = &mut *bufs.borrow_mut();
                let (v, m) = (grown(v, p * ci * nt), grown(m, p * co * nt));
                (f.tiles)(s, x, r0..r1, v, par);
                let product = |(m, (u, v)): (&mut [f32], (&[f32], &[f32]))| {
                    gemm(
                        MatRef::new(u, ci, co).t(),
                        MatRef::new(v, ci, nt),
                        m,
                        nt,
                        false,
                    )
                };
                let (mc, uc, vc) = (m.chunks_mut(co * nt), u.chunks(co * ci), v.chunks(ci * nt));
                if par {
                    let (mc, uc, vc) = (
                        m.par_chunks_mut(co * nt),
                        u.par_chunks(co * ci),
                        v.par_chunks(ci * nt),
                    );
                    mc.zip(uc.zip(vc)).for_each(product);
                } else {
                    mc.zip(uc.zip(vc)).for_each(product);
                }
                (f.inverse)(s, m, r0..r1, bias, out, par);
            });
        };
        if blocks >= rayon::current_num_threads() {
            (0..blocks).into_par_iter().for_each(|b| run(b, false));
        } else {
            (0..blocks).for_each(|b| run(b, true));
        }
    });
}

/// How the 3 × 3 kernels are laid out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kernels {
    /// `[out][in][3][3]`, the convolution's own weight.
    Direct,
    /// `[in][out][3][3]` with every kernel flipped: this convolution is the
    /// adjoint (input gradient) of one whose weight this is.
    Adjoint,
}

/// `u[ξ][c][o] = (G g Gᵀ)[ξ]` for the kernel `g` from input `c` to output
/// `o`: each `U_ξ` stored transposed, so that packing it for the product
/// copies contiguous runs. Per input channel, the nine taps of every output
/// channel are first laid out tap by tap, so that `G` and `Gᵀ` run along
/// the output channels in vector registers.
fn transform_weights(ci: usize, co: usize, weight: &[f32], kernels: Kernels, u: &mut [f32]) {
    let up = SendPtr(u.as_mut_ptr());
    // G g as gg[i][j][o] (rows g0, (g0 + g1 + g2)/2, (g0 − g1 + g2)/2, g2
    // of each kernel column j).
    for_each_channel_taps(ci, co, weight, kernels, 12 * co, |c, taps, gg| {
        let tap = |t: usize| &taps[t * co..][..co];
        for j in 0..3 {
            let rows: [&mut [f32]; 4] = gg_rows(gg, co, j);
            g_rows(rows, [tap(j), tap(3 + j), tap(6 + j)]);
        }
        for i in 0..4 {
            let col = |j: usize| &gg[(i * 3 + j) * co..][..co];
            // SAFETY: u[ξ][c] for the four ξ = 4i + j is written by this
            // task only (c is its own); the runs are disjoint and inside u.
            let dst = std::array::from_fn(|j| unsafe {
                std::slice::from_raw_parts_mut(up.get().add(((i * 4 + j) * ci + c) * co), co)
            });
            g_rows(dst, [col(0), col(1), col(2)]);
        }
    });
}

/// `f(c, taps, work)` for every input channel `c`, over the pool, where
/// `taps[t][o]` are the nine taps of the kernel from `c` to every output
/// `o`, laid out tap by tap so that the weight transforms run along the
/// output channels in vector registers, and `work` is `work_len` floats of
/// scratch. Channels are gathered [`TAP_BLOCK`] at a time: the direct
/// weight `[o][c][3][3]` holds a block's kernels of one output channel in
/// one contiguous run, where gathering one channel alone reads 36 bytes
/// every `9·ci` floats (ResNet34's 512 × 512 weight: one page per output
/// channel).
fn for_each_channel_taps(
    ci: usize,
    co: usize,
    weight: &[f32],
    kernels: Kernels,
    work_len: usize,
    f: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) {
    (0..ci.div_ceil(TAP_BLOCK)).into_par_iter().for_each(|b| {
        let c0 = b * TAP_BLOCK;
        let cb = TAP_BLOCK.min(ci - c0);
        let mut buf = Scratch::take(9 * cb * co + work_len);
        let (taps, work) = buf.split_at_mut(9 * cb * co);
        // Eight output channels at a time through registers (AVX 8 × 8
        // transposes): one at a time, each value was a store to another
        // cache line.
        match kernels {
            Kernels::Direct => {
                for o0 in (0..co).step_by(8) {
                    let src = &weight[(o0 * ci + c0) * 9..];
                    transpose_rows(src, ci * 9, 8.min(co - o0), cb * 9, &mut taps[o0..], co);
                }
            }
            Kernels::Adjoint => {
                for (l, block) in taps.chunks_exact_mut(9 * co).enumerate() {
                    let kernels = &weight[(c0 + l) * co * 9..][..co * 9];
                    for o0 in (0..co).step_by(8) {
                        let rows = 8.min(co - o0);
                        transpose_rows(&kernels[o0 * 9..], 9, rows, 9, &mut block[o0..], co);
                    }
                    // Flipped: tap t of the adjoint's kernel is tap 8 − t.
                    for t in 0..4 {
                        let (first, last) = block.split_at_mut((8 - t) * co);
                        first[t * co..][..co].swap_with_slice(&mut last[..co]);
                    }
                }
            }
        }
        for (l, taps) in taps.chunks_exact(9 * co).enumerate() {
            f(c0 + l, taps, work);
        }
    });
}

/// Input channels gathered at once by [`for_each_channel_taps`]: 16 × 9
/// taps are 576 contiguous bytes of each output channel's weights, and the
/// block's taps (576 · co bytes) stay in L2.
const TAP_BLOCK: usize = 16;

/// The first `N` runs of `len` values of `buf`, as separate slices.
fn split_rows<const N: usize>(buf: &mut [f32], len: usize) -> [&mut [f32]; N] {
    let mut rows = buf.chunks_exact_mut(len);
    std::array::from_fn(|_| rows.next().unwrap())
}

/// The four rows `gg[i][j]` (i = 0..4) of kernel column `j`.
fn gg_rows(gg: &mut [f32], co: usize, j: usize) -> [&mut [f32]; 4] {
    let mut rows = gg.chunks_exact_mut(co).skip(j).step_by(3);
    std::array::from_fn(|_| rows.next().unwrap())
}

/// `G`'s four rows applied to three vectors, elementwise: a, (a + b + d)/2,
/// (a − b + d)/2, d.
#[inline(always)]
fn g_rows([o0, o1, o2, o3]: [&mut [f32]; 4], [a, b, d]: [&[f32]; 3]) {
    o0.copy_from_slice(a);
    o3.copy_from_slice(d);
    for (((o1, o2), &a), (&b, &d)) in o1.iter_mut().zip(o2.iter_mut()).zip(a).zip(b.iter().zip(d)) {
        *o1 = 0.5 * (a + b + d);
        *o2 = 0.5 * (a - b + d);
    }
}

/// `dst[t] = f(p[t], q[t])`, in a form the compiler vectorises.
#[inline(always)]
fn combine(dst: &mut [f32], p: &[f32], q: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((d, &a), &b) in dst.iter_mut().zip(p).zip(q) {
        *d = f(a, b);
    }
}

/// Spreads a row that starts at padded column `pad` over the even and odd
/// padded columns: column `p` goes to `even[p / 2]` or `odd[p / 2]`.
fn deinterleave(src: &[f32], pad: usize, even: &mut [f32], odd: &mut [f32]) {
    // Input column 2t lands on the parity of `pad`, column 2t + 1 on the other.
    let (first, second, at_first, at_second) = if pad.is_multiple_of(2) {
        (even, odd, pad / 2, pad / 2)
    } else {
        (odd, even, pad / 2, pad / 2 + 1)
    };
    let pairs = src.chunks_exact(2);
    if let [last] = pairs.remainder() {
        first[at_first + src.len() / 2] = *last;
    }
    let (first, second) = (&mut first[at_first..], &mut second[at_second..]);
    for ((pair, f), s) in pairs.zip(first.iter_mut()).zip(second.iter_mut()) {
        *f = pair[0];
        *s = pair[1];
    }
}

/// For tile rows `rows` (`(image, ty)` pairs, numbered image-major),
/// `v[ξ][c][t] = (Bᵀ d B)[ξ]` for the 4 × 4 input tile `d` of each tile `t`
/// of the block in channel `c`: rows `2ty − pad ..` and columns `2tx − pad
/// ..` of the image, zero outside it. `Bᵀ` combines rows as d0 − d2,
/// d1 + d2, d2 − d1, d1 − d3; `B` the same along each row.
fn transform_tiles(s: &Conv2dShape, x: &[f32], rows: Range<usize>, v: &mut [f32], par: bool) {
    let (ci, h, w) = (s.in_channels, s.in_h, s.in_w);
    let (th, tw) = (s.out_h().div_ceil(2), s.out_w().div_ceil(2));
    let nt = rows.len() * tw;
    let [pt, pl] = s.padding;
    let vp = SendPtr(v.as_mut_ptr());
    let channel = |c: usize| {
        // `d[i][k][t]`: column k of row i of tile t, for all the block's
        // tiles (a padded row is 2·tw + 2 ≥ w + pad wide). Then Bᵀ and B
        // are each a few loops over the whole block: a tile row of an
        // 8 × 8 plane is only 4 tiles, too short to vectorise on its own.
        let mut buf = Scratch::take(32 * nt + 2 * tw + 2);
        let (d, rest) = buf.split_at_mut(16 * nt);
        let (bt, even_odd) = rest.split_at_mut(16 * nt);
        even_odd.fill(0.0);
        for (local, row) in rows.clone().enumerate() {
            let (n, ty) = (row / th, row % th);
            let plane = &x[(n * ci + c) * h * w..][..h * w];
            let at = local * tw;
            for i in 0..4 {
                let iy = (2 * ty + i) as isize - pt as isize;
                if iy < 0 || iy as usize >= h {
                    for k in 0..4 {
                        d[(i * 4 + k) * nt + at..][..tw].fill(0.0);
                    }
                    continue;
                }
                // Padded columns 2t and 2t + 1, for t ≤ tw; the padding's
                // places are never written, so they stay zero.
                let (even, odd) = even_odd.split_at_mut(tw + 1);
                deinterleave(&plane[iy as usize * w..][..w], pl, even, odd);
                let runs = [&even[..tw], &odd[..tw], &even[1..], &odd[1..]];
                for (k, run) in runs.into_iter().enumerate() {
                    copy_run(&mut d[(i * 4 + k) * nt + at..][..tw], run);
                }
            }
        }
        let [b0, b1, b2, b3] = split_rows(bt, 4 * nt);
        let mut rows_of_d = d.chunks_exact(4 * nt);
        let mut next = || rows_of_d.next().unwrap();
        let (d0, d1, d2, d3) = (next(), next(), next(), next());
        rows_of_bt([b0, b1, b2, b3], [d0, d1, d2, d3]);
        for i in 0..4 {
            let col = |k: usize| &bt[(i * 4 + k) * nt..][..nt];
            // SAFETY: (ξ, c) over the block's tiles is this task's only,
            // and the four ξ = 4i + j are disjoint runs of v.
            let dst = std::array::from_fn(|j| unsafe {
                std::slice::from_raw_parts_mut(vp.get().add(((i * 4 + j) * ci + c) * nt), nt)
            });
            rows_of_bt(dst, [col(0), col(1), col(2), col(3)]);
        }
    };
    for_each_index(ci, par, channel);
}

/// `dst.copy_from_slice(src)`, with the tile rows of ResNet34's and the
/// cnn's planes (4, 8 or 16 tiles) and their output rows (8 to 32 values)
/// as fixed-size moves: a call to memcpy for 16 to 128 bytes costs more
/// than the copy.
#[inline(always)]
pub(super) fn copy_run(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let d: &mut [f32; N] = dst.try_into().unwrap();
        *d = src.try_into().unwrap();
    }
    match dst.len() {
        4 => fixed::<4>(dst, src),
        8 => fixed::<8>(dst, src),
        16 => fixed::<16>(dst, src),
        32 => fixed::<32>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// `Bᵀ`'s four rows (or `B`'s four columns), elementwise: d0 − d2,
/// d1 + d2, d2 − d1, d1 − d3.
#[inline(always)]
fn rows_of_bt([o0, o1, o2, o3]: [&mut [f32]; 4], [d0, d1, d2, d3]: [&[f32]; 4]) {
    combine(o0, d0, d2, |p, q| p - q);
    combine(o1, d1, d2, |p, q| p + q);
    combine(o2, d2, d1, |p, q| p - q);
    combine(o3, d1, d3, |p, q| p - q);
}

/// `out[n][o] = Aᵀ M A` (+ bias) for the tiles of tile rows `rows`, cut at
/// the output's edge: `Aᵀ` combines rows as q0 + q1 + q2 and q1 − q2 − q3,
/// `A` the same along each row.
fn inverse_transform(
    s: &Conv2dShape,
    m: &[f32],
    rows: Range<usize>,
    bias: Option<&[f32]>,
    out: SendPtr,
    par: bool,
) {
    let co = s.out_channels;
    let (oh, ow) = (s.out_h(), s.out_w());
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let nt = rows.len() * tw;
    let channel = |o: usize| {
        let b = bias.map_or(0.0, |b| b[o]);
        // The two rows of Aᵀ q for each of the four columns, then Aᵀ q A's
        // even and odd output columns of each of the two output rows, for
        // all the block's tiles at once (a tile row of an 8 × 8 plane is
        // only 4 tiles: one loop over the block instead of one per tile
        // row); then each output row interleaved from them.
        let mut r = Scratch::take(12 * nt);
        let (r, eo) = r.split_at_mut(8 * nt);
        for j in 0..4 {
            let q = |i: usize| &m[((i * 4 + j) * co + o) * nt..][..nt];
            let (top, bottom) = r[2 * j * nt..(2 * j + 2) * nt].split_at_mut(nt);
            rows_of_a(top, bottom, [q(0), q(1), q(2), q(3)], 0.0);
        }
        for (i, eo) in eo.chunks_exact_mut(2 * nt).enumerate() {
            let col = |j: usize| &r[(2 * j + i) * nt..][..nt];
            let (even, odd) = eo.split_at_mut(nt);
            rows_of_a(even, odd, [col(0), col(1), col(2), col(3)], b);
        }
        for (local, row) in rows.clone().enumerate() {
            let (n, ty) = (row / th, row % th);
            for i in 0..2 {
                let oy = 2 * ty + i;
                if oy >= oh {
                    continue;
                }
                let tiles = local * tw..(local + 1) * tw;
                let (even, odd) = (
                    &eo[2 * i * nt..][tiles.clone()],
                    &eo[(2 * i + 1) * nt..][tiles],
                );
                // SAFETY: output row (n, o, oy) belongs to this tile row and
                // channel, which only this task handles.
                let y = unsafe {
                    std::slice::from_raw_parts_mut(out.get().add(((n * co + o) * oh + oy) * ow), ow)
                };
                let mut pairs = y.chunks_exact_mut(2);
                for ((pair, &e), &od) in (&mut pairs).zip(even).zip(odd) {
                    pair[0] = e;
                    pair[1] = od;
                }
                if let [last] = pairs.into_remainder() {
                    *last = even[tw - 1];
                }
            }
        }
    };
    for_each_index(co, par, channel);
}

/// `first = a0 + a1 + a2 + b` and `second = a1 − a2 − a3 + b`, elementwise:
/// `Aᵀ`'s two rows (or `A`'s two columns).
#[inline(always)]
fn rows_of_a(first: &mut [f32], second: &mut [f32], [a0, a1, a2, a3]: [&[f32]; 4], b: f32) {
    for (((f, s), (&a0, &a1)), (&a2, &a3)) in first
        .iter_mut()
        .zip(second.iter_mut())
        .zip(a0.iter().zip(a1))
        .zip(a2.iter().zip(a3))
    {
        *f = a0 + a1 + a2 + b;
        *s = a1 - a2 - a3 + b;
    }
}

/// The weight gradient `dw = Σ dyᵀ ⋆ x` of a convolution [`applies`]
/// accepts, by the same transforms: `dM = A dY Aᵀ` per output tile,
/// `dU_ξ = Σ_t dM_ξ · V_ξᵀ` (products whose depth is the tiles), then
/// `dg = Gᵀ dU G`. Blocks of tiles are summed one after another and each
/// product runs on one thread, so the result does not depend on the number
/// of threads.
pub(crate) fn weight_grad(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let filtering = if f4::applies(s) { F4 } else { F2 };
    weight_grad_by(&filtering, s, x, dy, dw);
}

fn weight_grad_by(f: &Filtering, s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    assert!(computes(s), "not a 3 × 3 stride-1 convolution: {s:?}");
    assert_eq!(dw.len(), s.weight_len());
    let (ci, co, p) = (s.in_channels, s.out_channels, f.positions());
    let (tw, rows, per_block) = blocking(s, f.out, f.block_values);
    WEIGHTS.with(|du| {
        let mut du = du.borrow_mut();
        let du = grown(&mut du, p * co * ci);
        BLOCK.with(|bufs| {
            let (v, m) = &mut *bufs.borrow_mut();
            for (b, r0) in (0..rows).step_by(per_block).enumerate() {
                let r1 = (r0 + per_block).min(rows);
                let nt = (r1 - r0) * tw;
                let (v, dm) = (grown(v, p * ci * nt), grown(m, p * co * nt));
                (f.tiles)(s, x, r0..r1, v, true);
                (f.output_grads)(s, dy, r0..r1, dm, true);
                du.par_chunks_mut(co * ci)
                    .zip(dm.par_chunks(co * nt).zip(v.par_chunks(ci * nt)))
                    .for_each(|(du, (dm, v))| {
                        let (dm, vt) = (MatRef::new(dm, co, nt), MatRef::new(v, ci, nt).t());
                        gemm(dm, vt, du, ci, b > 0)
                    });
            }
        });
        (f.weight_grads)(ci, co, du, dw);
    });
}

/// `dg = Gᵀ dU G` from `du[ξ][o][c]` into `dw[o][c][3][3]`, with `Gᵀ`
/// combining rows as u0 + (u1 + u2)/2, (u1 − u2)/2, (u1 + u2)/2 + u3: per
/// output channel, along the input channels (each dU_ξ's row o is
/// contiguous), into nine tap-major rows that are then interleaved into
/// the kernels.
fn weight_grads_of(ci: usize, co: usize, du: &[f32], dw: &mut [f32]) {
    dw.par_chunks_mut(ci * 9)
        .enumerate()
        .for_each(|(o, kernels)| {
            let u = |xi: usize| &du[(xi * co + o) * ci..][..ci];
            let mut buf = Scratch::take(21 * ci);
            let (cols, taps) = buf.split_at_mut(12 * ci);
            // cols[j][r]: row r of Gᵀ applied to column j of dU.
            for (j, col) in cols.chunks_exact_mut(3 * ci).enumerate() {
                rows_of_gt(split_rows(col, ci), [u(j), u(4 + j), u(8 + j), u(12 + j)]);
            }
            for (i, row) in taps.chunks_exact_mut(3 * ci).enumerate() {
                let col = |j: usize| &cols[(j * 3 + i) * ci..][..ci];
                rows_of_gt(split_rows(row, ci), [col(0), col(1), col(2), col(3)]);
            }
            interleave_taps(taps, ci, kernels);
        });
}

/// `kernels[c][t] = taps[t][c]`: nine tap-major rows into `[c][3][3]`.
fn interleave_taps(taps: &[f32], ci: usize, kernels: &mut [f32]) {
    for (c, g) in kernels.chunks_exact_mut(9).enumerate() {
        for (t, v) in g.iter_mut().enumerate() {
            *v = taps[t * ci + c];
        }
    }
}

/// `Gᵀ`'s three rows applied to four vectors, elementwise: u0 + (u1 +
/// u2)/2, (u1 − u2)/2, (u1 + u2)/2 + u3.
#[inline(always)]
fn rows_of_gt([o0, o1, o2]: [&mut [f32]; 3], [u0, u1, u2, u3]: [&[f32]; 4]) {
    for ((o0, o1), (o2, (((&u0, &u1), &u2), &u3))) in o0
        .iter_mut()
        .zip(o1.iter_mut())
        .zip(o2.iter_mut().zip(u0.iter().zip(u1).zip(u2).zip(u3)))
    {
        *o0 = u0 + 0.5 * (u1 + u2);
        *o1 = 0.5 * (u1 - u2);
        *o2 = 0.5 * (u1 + u2) + u3;
    }
}

/// For tile rows `rows`, `dm[ξ][o][t] = (A dy Aᵀ)[ξ]` for the 2 × 2 output
/// gradient `dy` of each tile (zero past the output's edge): `A` spreads
/// two rows a, b over four as a, a + b, a − b, −b, and the same along rows.
fn transform_output_grads(
    s: &Conv2dShape,
    dy: &[f32],
    rows: Range<usize>,
    dm: &mut [f32],
    par: bool,
) {
    let co = s.out_channels;
    let (oh, ow) = (s.out_h(), s.out_w());
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let nt = rows.len() * tw;
    let dp = SendPtr(dm.as_mut_ptr());
    let channel = |o: usize| {
        // Every tile row's two output rows, split into even and odd
        // columns (rows and columns outside the output zero), for all the block's
        // tiles side by side; then the transforms run over the whole block
        // at once (a tile row of an 8 × 8 plane is only 4 tiles).
        let mut buf = Scratch::take(12 * nt);
        let (eo, spread) = buf.split_at_mut(4 * nt);
        if oh % 2 != 0 || ow % 2 != 0 {
            eo.fill(0.0);
        }
        for (local, row) in rows.clone().enumerate() {
            let (n, ty) = (row / th, row % th);
            for (i, part) in eo.chunks_exact_mut(2 * nt).enumerate() {
                let oy = 2 * ty + i;
                if oy >= oh {
                    continue;
                }
                let src = &dy[((n * co + o) * oh + oy) * ow..][..ow];
                let (even, odd) = part.split_at_mut(nt);
                let tiles = local * tw..(local + 1) * tw;
                deinterleave(src, 0, &mut even[tiles.clone()], &mut odd[tiles]);
            }
        }
        let (r0, r1) = eo.split_at(2 * nt);
        let [s0, s1, s2, s3] = split_rows(spread, 2 * nt);
        spread_by_a([s0, s1, s2, s3], r0, r1);
        for i in 0..4 {
            let (e, od) = spread[i * 2 * nt..(i + 1) * 2 * nt].split_at(nt);
            // SAFETY: (ξ, o) over the block's tiles is this task's only,
            // and the four ξ = 4i + j are disjoint runs of dm.
            let dst = std::array::from_fn(|j| unsafe {
                std::slice::from_raw_parts_mut(dp.get().add(((i * 4 + j) * co + o) * nt), nt)
            });
            spread_by_a(dst, e, od);
        }
    };
    for_each_index(co, par, channel);
}

/// `A` spreading two rows (or columns) a, b over four, elementwise: a,
/// a + b, a − b, −b.
#[inline(always)]
fn spread_by_a([o0, o1, o2, o3]: [&mut [f32]; 4], a: &[f32], b: &[f32]) {
    o0.copy_from_slice(a);
    combine(o1, a, b, |p, q| p + q);
    combine(o2, a, b, |p, q| p - q);
    combine(o3, a, b, |_, q| -q);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::{reference, values};

    /// Both filterings, whatever [`forward`] would choose for the shape.
    #[test]
    fn winograd_matches_the_definition() {
        // Even and odd sides (a last tile half outside), 1 × 1 planes,
        // padding 0, 1, 2 and uneven.
        for (batch, ci, h, w, co, pad, pad_end) in [
            (2, 16, 8, 8, 16, [1, 1], [1, 1]),
            (3, 17, 7, 5, 19, [1, 1], [1, 1]),
            (1, 16, 4, 4, 32, [0, 0], [0, 0]),
            (2, 20, 1, 1, 16, [1, 1], [1, 1]),
            (2, 16, 6, 9, 18, [2, 0], [0, 2]),
            (1, 24, 3, 3, 16, [2, 2], [2, 2]),
            // No padding and whole tiles: the last tile of a row reads
            // the image's last two columns.
            (2, 16, 10, 6, 16, [0, 0], [0, 0]),
            // Several blocks of tile rows, spread over the pool.
            (3, 64, 62, 61, 64, [1, 1], [1, 1]),
        ] {
            let s = Conv2dShape {
                batch,
                in_channels: ci,
                in_h: h,
                in_w: w,
                out_channels: co,
                kernel: [3, 3],
                stride: [1, 1],
                padding: pad,
                padding_end: pad_end,
                groups: 1,
            };
            assert!(computes(&s));
            let (x, wt, b) = (
                values(s.input_len(), 1),
                values(s.weight_len(), 2),
                values(co, 3),
            );
            let dy = values(s.output_len(), 4);
            let [want, _, want_dw, _] = reference(&s, &x, &wt, &b, &dy);
            let close = |what: &str, got: &[f32], want: &[f64], tol: f64| {
                let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
                for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() <= tol * scale,
                        "{what} {s:?} [{i}]: {g} vs {w}"
                    );
                }
            };
            // F(4 × 4, 3 × 3) rounds about ten times more (7.4e-6 of the
            // largest output here at most, against 3.2e-7).
            for (name, f, tol) in [("F(2, 3)", &F2, 1e-5), ("F(4, 3)", &F4, 3e-5)] {
                let mut got = vec![f32::NAN; s.output_len()];
                forward_by(f, &s, &x, &wt, Kernels::Direct, Some(&b), &mut got);
                close(&format!("{name} forward"), &got, &want, tol);
                let mut dw = vec![f32::NAN; s.weight_len()];
                weight_grad_by(f, &s, &x, &dy, &mut dw);
                close(&format!("{name} weight gradient"), &dw, &want_dw, tol);
            }
        }
    }
}
