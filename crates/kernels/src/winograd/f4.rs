//! Winograd's F(4 × 4, 3 × 3) for the forward pass and the input gradient:
//! each 4 × 4 block of outputs comes from a 6 × 6 input tile with 36
//! multiplications per channel pair instead of 144, so its 36 products have
//! 16/9 times fewer multiply-adds than F(2 × 2, 3 × 3)'s 16 — and read
//! 36/16 = 2.25 values per input pixel, not 4. The interpolation points are
//! 0, ±1, ±2 and ∞ (Lavin and Gray, 2016): `Bᵀ`'s entries reach 5 and `Aᵀ`'s
//! 8, so rounding grows about tenfold over F(2 × 2, 3 × 3), still well
//! inside the kernels' 1e-4.
//!
//! Layouts are those of the parent module with 6 × 6 positions:
//! `u[ξ][c][o]`, `v[ξ][c][t]`, `m[ξ][o][t]` for ξ < 36.

use super::{
    copy_run, for_each_channel_taps, for_each_index, interleave_taps, split_rows, Kernels, Scratch,
};
use crate::gemm::SendPtr;
use crate::shape::Conv2dShape;
use crate::transpose::{deinterleave4, interleave4};
use rayon::prelude::*;
use std::ops::Range;

/// Output tile side.
pub(super) const OUT: usize = 4;
/// Input tile side, and transformed positions per side.
const TILE: usize = OUT + 2;

/// Whether F(4 × 4, 3 × 3) should compute a convolution the parent's
/// `applies` accepts: with fewer tiles than this the 36 thin products and
/// the weights' transform (which grow by 4) cost more than the
/// multiplications they save against F(2 × 2, 3 × 3).
pub(super) fn applies(s: &Conv2dShape) -> bool {
    let tiles = s.batch * s.out_h().div_ceil(OUT) * s.out_w().div_ceil(OUT);
    tiles >= MIN_TILES
}

/// See [`applies`]. (ResNet34's 4 × 4 planes at batch 16 have 16 tiles:
/// F(4 × 4, 3 × 3) measured no faster there than the lowered product.)
const MIN_TILES: usize = 64;

/// Tiles × channels per block, a quarter of F(2 × 2, 3 × 3)'s: a tile
/// holds 36 transformed values instead of 16. ResNet34's training step
/// at batch 16 (AMD EPYC Zen 4): 2¹⁴ 566–576 ms, 2¹⁵ 575–583, 2¹⁶ 601–603,
/// 2¹³ 605–614.
pub(super) const BLOCK_VALUES: usize = if cfg!(test) { 1 << 10 } else { 1 << 14 };

/// `u[ξ][c][o] = (G g Gᵀ)[ξ]` for the kernel `g` from input `c` to output
/// `o`, along the output channels in vector loops as in F(2 × 2, 3 × 3).
pub(super) fn transform_weights(
    ci: usize,
    co: usize,
    weight: &[f32],
    kernels: Kernels,
    u: &mut [f32],
) {
    let up = SendPtr(u.as_mut_ptr());
    // G g as gg[i][j][o] for the six rows i of G and the three kernel
    // columns j.
    for_each_channel_taps(ci, co, weight, kernels, 3 * TILE * co, |c, taps, gg| {
        let tap = |t: usize| &taps[t * co..][..co];
        for j in 0..3 {
            let mut rows = gg.chunks_exact_mut(co).skip(j).step_by(3);
            let rows = std::array::from_fn(|_| rows.next().unwrap());
            g_rows(rows, [tap(j), tap(3 + j), tap(6 + j)]);
        }
        for i in 0..TILE {
            let col = |j: usize| &gg[(i * 3 + j) * co..][..co];
            // SAFETY: u[ξ][c] for the six ξ = 6i + j is written by this
            // task only (c is its own); the runs are disjoint and inside u.
            let dst = std::array::from_fn(|j| unsafe {
                std::slice::from_raw_parts_mut(up.get().add(((i * TILE + j) * ci + c) * co), co)
            });
            g_rows(dst, [col(0), col(1), col(2)]);
        }
    });
}

/// 1/6 as a factor: `x / 6.0` is a division (a slow instruction, since the
/// compiler must keep its exact rounding), a multiplication is not; halving
/// and quartering it stay exact.
const SIXTH: f32 = 1.0 / 6.0;

/// `G`'s six rows applied to three vectors a, b, d, elementwise: a/4,
/// −(a + b + d)/6, −(a − b + d)/6, a/24 + b/12 + d/6, a/24 − b/12 + d/6, d.
#[inline(always)]
fn g_rows([o0, o1, o2, o3, o4, o5]: [&mut [f32]; 6], [a, b, d]: [&[f32]; 3]) {
    let n = o0.len();
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    let (a, b, d) = (&a[..n], &b[..n], &d[..n]);
    for t in 0..n {
        let (a, b, d) = (a[t], b[t], d[t]);
        let (ad, a24d6) = (a + d, a * SIXTH / 4.0 + d * SIXTH);
        o0[t] = 0.25 * a;
        o1[t] = -(ad + b) * SIXTH;
        o2[t] = -(ad - b) * SIXTH;
        o3[t] = a24d6 + b * SIXTH / 2.0;
        o4[t] = a24d6 - b * SIXTH / 2.0;
        o5[t] = d;
    }
}

/// `Bᵀ`'s six rows (or `B`'s six columns), elementwise: 4d0 − 5d2 + d4,
/// d3 + d4 − 4(d1 + d2), d4 − d3 + 4(d1 − d2), d4 − d2 + 2(d3 − d1),
/// d4 − d2 − 2(d3 − d1), 4d1 − 5d3 + d5.
#[inline(always)]
fn rows_of_bt([o0, o1, o2, o3, o4, o5]: [&mut [f32]; 6], [d0, d1, d2, d3, d4, d5]: [&[f32]; 6]) {
    let n = o0.len();
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    let (d0, d1, d2, d3, d4, d5) = (&d0[..n], &d1[..n], &d2[..n], &d3[..n], &d4[..n], &d5[..n]);
    for t in 0..n {
        let (d0, d1, d2, d3, d4, d5) = (d0[t], d1[t], d2[t], d3[t], d4[t], d5[t]);
        let (s12, s34, d42, d31) = (d1 + d2, d3 + d4, d4 - d2, d3 - d1);
        o0[t] = 4.0 * d0 - 5.0 * d2 + d4;
        o1[t] = s34 - 4.0 * s12;
        o2[t] = (d4 - d3) + 4.0 * (d1 - d2);
        o3[t] = d42 + 2.0 * d31;
        o4[t] = d42 - 2.0 * d31;
        o5[t] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

/// For tile rows `rows` (`(image, ty)` pairs), `v[ξ][c][t] = (Bᵀ d B)[ξ]`
/// for the 6 × 6 input tile `d` of each tile `t` of the block: rows
/// `4ty − pad ..` and columns `4tx − pad ..` of the image, zero outside it.
pub(super) fn transform_tiles(
    s: &Conv2dShape,
    x: &[f32],
    rows: Range<usize>,
    v: &mut [f32],
    par: bool,
) {
    let (ci, h, w) = (s.in_channels, s.in_h, s.in_w);
    let (th, tw) = (s.out_h().div_ceil(OUT), s.out_w().div_ceil(OUT));
    let nt = rows.len() * tw;
    let [pt, pl] = s.padding;
    let vp = SendPtr(v.as_mut_ptr());
    let (per_row, block_rows) = (OUT * tw, rows.len());
    let channel = |c: usize| {
        // d[i][k][t]: column k of row i of tile t, for all the block's
        // tiles; then Bᵀ and B run over the whole block. Row i of every
        // tile row is laid end to end, each as its first 4·tw padded
        // columns, so that columns k < 4 of all the block's tiles are one
        // stride-4 run; columns 4 and 5 are columns 0 and 1 of the next
        // tile, except in the last tile of a row, which reads the two
        // padded columns past 4·tw, kept aside in `ends`.
        let mut buf = Scratch::take(2 * TILE * TILE * nt + OUT * nt + 2 * block_rows);
        let (d, rest) = buf.split_at_mut(TILE * TILE * nt);
        let (bt, rest) = rest.split_at_mut(TILE * TILE * nt);
        let (run, ends) = rest.split_at_mut(OUT * nt);
        // Padded column j of image row iy: zero outside the image.
        let column = |row: &[f32], j: usize| match j.checked_sub(pl) {
            Some(x) if x < w => row[x],
            _ => 0.0,
        };
        for i in 0..TILE {
            for (local, tile_row) in rows.clone().enumerate() {
                let (n, ty) = (tile_row / th, tile_row % th);
                let dst = &mut run[local * per_row..][..per_row];
                let iy = (OUT * ty + i) as isize - pt as isize;
                if iy < 0 || iy as usize >= h {
                    dst.fill(0.0);
                    ends[2 * local..][..2].fill(0.0);
                    continue;
                }
                let row = &x[((n * ci + c) * h + iy as usize) * w..][..w];
                // Columns pl .. pl + w of the padded row are the image's.
                let (lead, inside) = (pl.min(per_row), w.min(per_row.saturating_sub(pl)));
                dst[..lead].fill(0.0);
                dst[lead..lead + inside].copy_from_slice(&row[..inside]);
                dst[lead + inside..].fill(0.0);
                ends[2 * local] = column(row, per_row);
                ends[2 * local + 1] = column(row, per_row + 1);
            }
            let di = &mut d[i * TILE * nt..][..TILE * nt];
            let [k0, k1, k2, k3, k4, k5] = split_rows(di, nt);
            deinterleave4(run, [&mut *k0, &mut *k1, &mut *k2, &mut *k3]);
            k4[..nt - 1].copy_from_slice(&k0[1..]);
            k5[..nt - 1].copy_from_slice(&k1[1..]);
            for local in 0..block_rows {
                let last = local * tw + tw - 1;
                (k4[last], k5[last]) = (ends[2 * local], ends[2 * local + 1]);
            }
        }
        // Bᵀ along the tile rows: each row i of d is a run of 6·nt values.
        let rows_of_d: [&[f32]; TILE] = std::array::from_fn(|i| &d[i * TILE * nt..][..TILE * nt]);
        rows_of_bt(split_rows(bt, TILE * nt), rows_of_d);
        for r in 0..TILE {
            let col = |k: usize| &bt[(r * TILE + k) * nt..][..nt];
            // SAFETY: (ξ, c) over the block's tiles is this task's only,
            // and the six ξ = 6r + j are disjoint runs of v.
            let dst = std::array::from_fn(|j| unsafe {
                std::slice::from_raw_parts_mut(vp.get().add(((r * TILE + j) * ci + c) * nt), nt)
            });
            rows_of_bt(dst, std::array::from_fn(col));
        }
    };
    for_each_index(ci, par, channel);
}

/// `first..fourth` = `Aᵀ`'s four rows (or `A`'s four columns) applied to
/// six vectors, plus `b`: m0 + m1 + m2 + m3 + m4, m1 − m2 + 2(m3 − m4),
/// m1 + m2 + 4(m3 + m4), m1 − m2 + 8(m3 − m4) + m5.
#[inline(always)]
fn rows_of_a([o0, o1, o2, o3]: [&mut [f32]; 4], [m0, m1, m2, m3, m4, m5]: [&[f32]; 6], b: f32) {
    let n = o0.len();
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    let (m0, m1, m2, m3, m4, m5) = (&m0[..n], &m1[..n], &m2[..n], &m3[..n], &m4[..n], &m5[..n]);
    for t in 0..n {
        let (p12, d12) = (m1[t] + m2[t], m1[t] - m2[t]);
        let (p34, d34) = (m3[t] + m4[t], m3[t] - m4[t]);
        o0[t] = m0[t] + p12 + p34 + b;
        o1[t] = d12 + 2.0 * d34 + b;
        o2[t] = p12 + 4.0 * p34 + b;
        o3[t] = d12 + 8.0 * d34 + m5[t] + b;
    }
}

/// `out[n][o] = Aᵀ M A` (+ bias) for the tiles of tile rows `rows`, cut at
/// the output's edge.
pub(super) fn inverse_transform(
    s: &Conv2dShape,
    m: &[f32],
    rows: Range<usize>,
    bias: Option<&[f32]>,
    out: SendPtr,
    par: bool,
) {
    let co = s.out_channels;
    let (oh, ow) = (s.out_h(), s.out_w());
    let (th, tw) = (oh.div_ceil(OUT), ow.div_ceil(OUT));
    let nt = rows.len() * tw;
    let channel = |o: usize| {
        let b = bias.map_or(0.0, |b| b[o]);
        // r[a][j]: row a of Aᵀ q for each of the six columns j; then
        // y[a][e]: the 4 × 4 outputs, for all the block's tiles at once.
        let mut buf = Scratch::take((OUT * TILE + OUT * OUT + OUT) * nt);
        let (r, rest) = buf.split_at_mut(OUT * TILE * nt);
        let (y, run) = rest.split_at_mut(OUT * OUT * nt);
        for j in 0..TILE {
            let q = |i: usize| &m[((i * TILE + j) * co + o) * nt..][..nt];
            let mut dst = r.chunks_exact_mut(nt).skip(j).step_by(TILE);
            let dst = std::array::from_fn(|_| dst.next().unwrap());
            rows_of_a(dst, std::array::from_fn(q), 0.0);
        }
        for (a, ya) in y.chunks_exact_mut(OUT * nt).enumerate() {
            let col = |j: usize| &r[(a * TILE + j) * nt..][..nt];
            rows_of_a(split_rows(ya, nt), std::array::from_fn(col), b);
        }
        // Row a of every tile, interleaved into the block's output rows
        // laid end to end (4·tw columns each), then copied out up to the
        // output's edge.
        for (a, ya) in y.chunks_exact(OUT * nt).enumerate() {
            interleave4(std::array::from_fn(|e| &ya[e * nt..][..nt]), run);
            for (local, row) in rows.clone().enumerate() {
                let (n, ty) = (row / th, row % th);
                let oy = OUT * ty + a;
                if oy >= oh {
                    continue;
                }
                // SAFETY: output row (n, o, oy) belongs to this tile row and
                // channel, which only this task handles.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(out.get().add(((n * co + o) * oh + oy) * ow), ow)
                };
                copy_run(dst, &run[local * OUT * tw..][..ow]);
            }
        }
    };
    for_each_index(co, par, channel);
}

/// `A` spreading four rows (or columns) y0..y3 over six, elementwise: y0,
/// y0 + y1 + y2 + y3, y0 − y1 + y2 − y3, y0 + 2y1 + 4y2 + 8y3,
/// y0 − 2y1 + 4y2 − 8y3, y3.
#[inline(always)]
fn spread_by_a([o0, o1, o2, o3, o4, o5]: [&mut [f32]; 6], [y0, y1, y2, y3]: [&[f32]; 4]) {
    let n = o0.len();
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    let (y0, y1, y2, y3) = (&y0[..n], &y1[..n], &y2[..n], &y3[..n]);
    for t in 0..n {
        let (y0, y1, y2, y3) = (y0[t], y1[t], y2[t], y3[t]);
        let (e1, o1_, e2, o2_) = (y0 + y2, y1 + y3, y0 + 4.0 * y2, 2.0 * y1 + 8.0 * y3);
        o0[t] = y0;
        o1[t] = e1 + o1_;
        o2[t] = e1 - o1_;
        o3[t] = e2 + o2_;
        o4[t] = e2 - o2_;
        o5[t] = y3;
    }
}

/// For tile rows `rows`, `dm[ξ][o][t] = (A dy Aᵀ)[ξ]` for the 4 × 4 output
/// gradient `dy` of each tile (zero past the output's edge).
pub(super) fn transform_output_grads(
    s: &Conv2dShape,
    dy: &[f32],
    rows: Range<usize>,
    dm: &mut [f32],
    par: bool,
) {
    let co = s.out_channels;
    let (oh, ow) = (s.out_h(), s.out_w());
    let (th, tw) = (oh.div_ceil(OUT), ow.div_ceil(OUT));
    let nt = rows.len() * tw;
    let dp = SendPtr(dm.as_mut_ptr());
    let channel = |o: usize| {
        // g[a][e][t]: output (a, e) of tile t; then A along the rows into
        // spread[i][e][t], then along the columns into dm.
        let mut buf = Scratch::take((OUT * OUT + TILE * OUT + OUT) * nt);
        let (g, rest) = buf.split_at_mut(OUT * OUT * nt);
        let (spread, run) = rest.split_at_mut(TILE * OUT * nt);
        // Output row a of every tile row laid end to end (4·tw columns
        // each, zero past the output's edge), then split into the tiles'
        // four columns.
        for a in 0..OUT {
            for (local, row) in rows.clone().enumerate() {
                let (n, ty) = (row / th, row % th);
                let oy = OUT * ty + a;
                let dst = &mut run[local * OUT * tw..][..OUT * tw];
                if oy >= oh {
                    dst.fill(0.0);
                    continue;
                }
                dst[..ow].copy_from_slice(&dy[((n * co + o) * oh + oy) * ow..][..ow]);
                dst[ow..].fill(0.0);
            }
            let ga = &mut g[a * OUT * nt..][..OUT * nt];
            let [e0, e1, e2, e3] = split_rows(ga, nt);
            deinterleave4(run, [e0, e1, e2, e3]);
        }
        let rows_of_g: [&[f32]; OUT] = std::array::from_fn(|a| &g[a * OUT * nt..][..OUT * nt]);
        spread_by_a(split_rows(spread, OUT * nt), rows_of_g);
        for i in 0..TILE {
            let col = |e: usize| &spread[(i * OUT + e) * nt..][..nt];
            // SAFETY: (ξ, o) over the block's tiles is this task's only,
            // and the six ξ = 6i + j are disjoint runs of dm.
            let dst = std::array::from_fn(|j| unsafe {
                std::slice::from_raw_parts_mut(dp.get().add(((i * TILE + j) * co + o) * nt), nt)
            });
            spread_by_a(dst, std::array::from_fn(col));
        }
    };
    for_each_index(co, par, channel);
}

/// `Gᵀ`'s three rows applied to six vectors, elementwise:
/// u0/4 − (u1 + u2)/6 + (u3 + u4)/24, (u2 − u1)/6 + (u3 − u4)/12,
/// (u3 + u4)/6 − (u1 + u2)/6 + u5.
#[inline(always)]
fn rows_of_gt([o0, o1, o2]: [&mut [f32]; 3], [u0, u1, u2, u3, u4, u5]: [&[f32]; 6]) {
    let n = o0.len();
    let (o1, o2) = (&mut o1[..n], &mut o2[..n]);
    let (u0, u1, u2, u3, u4, u5) = (&u0[..n], &u1[..n], &u2[..n], &u3[..n], &u4[..n], &u5[..n]);
    for t in 0..n {
        let (p12, p34) = (u1[t] + u2[t], u3[t] + u4[t]);
        o0[t] = 0.25 * u0[t] - p12 * SIXTH + p34 * SIXTH / 4.0;
        o1[t] = (u2[t] - u1[t]) * SIXTH + (u3[t] - u4[t]) * SIXTH / 2.0;
        o2[t] = (p34 - p12) * SIXTH + u5[t];
    }
}

/// `dg = Gᵀ dU G` from `du[ξ][o][c]` into `dw[o][c][3][3]`, per output
/// channel along the input channels, as in F(2 × 2, 3 × 3).
pub(super) fn weight_grads_of(ci: usize, co: usize, du: &[f32], dw: &mut [f32]) {
    dw.par_chunks_mut(ci * 9)
        .enumerate()
        .for_each(|(o, kernels)| {
            let u = |xi: usize| &du[(xi * co + o) * ci..][..ci];
            let mut buf = Scratch::take((3 * TILE + 9) * ci);
            let (cols, taps) = buf.split_at_mut(3 * TILE * ci);
            // cols[j][r]: row r of Gᵀ applied to column j of dU.
            for (j, col) in cols.chunks_exact_mut(3 * ci).enumerate() {
                rows_of_gt(
                    split_rows(col, ci),
                    std::array::from_fn(|i| u(i * TILE + j)),
                );
            }
            for (r, row) in taps.chunks_exact_mut(3 * ci).enumerate() {
                let col = |j: usize| &cols[(j * 3 + r) * ci..][..ci];
                rows_of_gt(split_rows(row, ci), std::array::from_fn(col));
            }
            interleave_taps(taps, ci, kernels);
        });
}
