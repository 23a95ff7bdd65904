//! Layers as forward/backward pairs over plain slices, llm.c style.
//!
//! Batches are feature-major as in the sheet's numpy code: an m × n buffer
//! holds one row per unit and one column per sample, with n a multiple of
//! [`LANES`] (the workspace pads the batch with zero columns). Every kernel
//! works on tiles of `LANES` columns kept in registers, so the small widths
//! of the sheet's nets (d = 10) still run at vector speed: the products
//! keep blocks of up to 5 rows × 4 tiles in registers (independent chains
//! of fused multiply-adds, each weight and tile loaded once per block),
//! and the weight gradient, a dot product per weight, sums the lanes of
//! [`LANES`] dot products together in one transpose-and-add.

use crate::activation::exp_nonpositive;
pub use crate::simd::LANES;
use crate::simd::{dispatch, Kernel, Lanes};

type Tile = [f64; LANES];

#[inline(always)]
fn tile(row: &[f64], j0: usize) -> &Tile {
    row[j0..j0 + LANES].try_into().expect("a full tile")
}

#[inline(always)]
fn tile_mut(row: &mut [f64], j0: usize) -> &mut Tile {
    (&mut row[j0..j0 + LANES]).try_into().expect("a full tile")
}

/// z (m × n) = W (m × k) · x (k × n) + b, b added to every column.
pub fn linear_forward(w: &[f64], b: &[f64], x: &[f64], z: &mut [f64]) {
    let k = w.len() / b.len();
    // Depth kk, output row i: W[i][kk].
    dispatch(Product {
        a: w,
        depth_stride: 1,
        row_stride: k,
        rows: b.len(),
        bias: Some(b),
        x,
        out: z,
    });
}

/// From dz (m × n): dW (m × k) = dz · xᵀ, db = row sums of dz, and, if
/// asked, dx (k × n) = Wᵀ · dz. `w` is W (m × k, row-major).
pub fn linear_backward(
    x: &[f64],
    w: &[f64],
    dz: &[f64],
    dw: &mut [f64],
    db: &mut [f64],
    dx: Option<&mut [f64]>,
) {
    dispatch(Backward {
        x,
        w,
        dz,
        dw,
        db,
        dx,
    });
}

/// The operands and results of [`linear_backward`].
struct Backward<'a> {
    x: &'a [f64],
    w: &'a [f64],
    dz: &'a [f64],
    dw: &'a mut [f64],
    db: &'a mut [f64],
    dx: Option<&'a mut [f64]>,
}

impl Kernel for Backward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Lanes>(self) {
        let (m, k) = (self.db.len(), self.w.len() / self.db.len());
        let n = self.dz.len() / m;
        let grads = WeightGrads {
            dz: self.dz,
            x: self.x,
            n,
            k,
        };
        let columns = blocks(k, S::GRAD_COLS);
        for (i0, ri) in blocks(m, S::GRAD_ROWS) {
            for (k0, rk) in columns {
                shaped!(S, grads.block(i0, k0, self.dw), ri, rk);
            }
        }
        let one = S::splat(1.0);
        for (out, rows) in self.db.chunks_mut(LANES).zip(self.dz.chunks(LANES * n)) {
            let mut sums = [[S::dot_zero()]; LANES];
            for ([sum], row) in sums.iter_mut().zip(rows.chunks_exact(n)) {
                for j0 in (0..n).step_by(LANES) {
                    *sum = S::dot_mul_add(*sum, S::load(tile(row, j0)), one);
                }
            }
            for (out, [sum]) in out.iter_mut().zip(S::dot_sums(&sums)) {
                *out = sum;
            }
        }
        if let Some(dx) = self.dx {
            // Depth i, output row kk: W[i][kk], for Wᵀ · dz.
            Product {
                a: self.w,
                depth_stride: k,
                row_stride: 1,
                rows: k,
                bias: None,
                x: self.dz,
                out: dx,
            }
            .run::<S>();
        }
    }
}

/// `(start, len)` of equal blocks of at most `max` covering `0..len`
/// (10 by 4: 4, 4, 2 — 10 by 5: 5, 5). Two divisions when made and none
/// per block, where a `step_by` over a range divides again.
#[derive(Clone, Copy)]
struct Blocks {
    next: usize,
    len: usize,
    per: usize,
}

#[inline(always)]
fn blocks(len: usize, max: usize) -> Blocks {
    let per = len.div_ceil(len.div_ceil(max).max(1)).max(1);
    Blocks { next: 0, len, per }
}

impl Iterator for Blocks {
    type Item = (usize, usize);
    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        let start = self.next;
        (start < self.len).then(|| {
            self.next += self.per;
            (start, self.per.min(self.len - start))
        })
    }
}

/// `$call` with generics `<S, R, C>` for run-time `r` in 1..=5 and `c` in 1..=4.
macro_rules! shaped {
    ($s:ident, $recv:ident . $f:ident ( $($arg:expr),* ), $r:expr, $c:expr) => {
        match $r {
            1 => shaped!(@c $s, $recv.$f, 1, $c, $($arg),*),
            2 => shaped!(@c $s, $recv.$f, 2, $c, $($arg),*),
            3 => shaped!(@c $s, $recv.$f, 3, $c, $($arg),*),
            4 => shaped!(@c $s, $recv.$f, 4, $c, $($arg),*),
            _ => shaped!(@c $s, $recv.$f, 5, $c, $($arg),*),
        }
    };
    (@c $s:ident, $recv:ident . $f:ident, $r:literal, $c:expr, $($arg:expr),*) => {
        match $c {
            1 => $recv.$f::<$s, $r, 1>($($arg),*),
            2 => $recv.$f::<$s, $r, 2>($($arg),*),
            3 => $recv.$f::<$s, $r, 3>($($arg),*),
            _ => $recv.$f::<$s, $r, 4>($($arg),*),
        }
    };
}
use shaped;

/// out (rows × n) = Σ_d a(d, r) · x[d] (+ bias in every column), with
/// a(d, r) = `a[d · depth_stride + r · row_stride]` and `x` depth × n
/// row-major: W and Wᵀ read in place, each weight broadcast once per block.
struct Product<'a> {
    a: &'a [f64],
    depth_stride: usize,
    row_stride: usize,
    rows: usize,
    bias: Option<&'a [f64]>,
    x: &'a [f64],
    out: &'a mut [f64],
}

impl Kernel for Product<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Lanes>(self) {
        if self.rows == 0 {
            return;
        }
        let n = self.out.len() / self.rows;
        let operands = Operands {
            a: self.a,
            depth_stride: self.depth_stride,
            row_stride: self.row_stride,
            bias: self.bias,
            x: self.x,
            n,
        };
        let columns = blocks(n / LANES, S::COLS);
        for (r0, r) in blocks(self.rows, S::ROWS) {
            for (c0, c) in columns {
                shaped!(S, operands.block(r0, c0 * LANES, self.out), r, c);
            }
        }
    }
}

/// The inputs of a [`Product`].
struct Operands<'a> {
    a: &'a [f64],
    depth_stride: usize,
    row_stride: usize,
    bias: Option<&'a [f64]>,
    x: &'a [f64],
    n: usize,
}

impl Operands<'_> {
    /// Rows `r0..r0 + R` of columns `j0..j0 + C · LANES`.
    #[inline(always)]
    fn block<S: Lanes, const R: usize, const C: usize>(
        &self,
        r0: usize,
        j0: usize,
        out: &mut [f64],
    ) {
        let mut acc = [[S::splat(0.0); C]; R];
        if let Some(b) = self.bias {
            for (acc, &b) in acc.iter_mut().zip(&b[r0..r0 + R]) {
                *acc = [S::splat(b); C];
            }
        }
        let n = self.n;
        let (ds, rs) = (self.depth_stride, self.row_stride);
        for (d, xrow) in self.x.chunks_exact(n).enumerate() {
            let xs: [S; C] = std::array::from_fn(|c| S::load(tile(xrow, j0 + c * LANES)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let wv = S::splat(self.a[d * ds + (r0 + r) * rs]);
                for (acc, &xv) in acc.iter_mut().zip(&xs) {
                    *acc = acc.mul_add(wv, xv);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, acc) in acc.iter().enumerate() {
                acc.store(tile_mut(&mut out[(r0 + r) * n..], j0 + c * LANES));
            }
        }
    }
}

/// The operands of dW = dz · xᵀ.
struct WeightGrads<'a> {
    dz: &'a [f64],
    x: &'a [f64],
    n: usize,
    k: usize,
}

impl WeightGrads<'_> {
    /// dW's rows `i0..i0 + R` and columns `k0..k0 + C`: R × C dot products
    /// accumulated over the tiles of the batch, one register each, then
    /// their lanes summed in registers.
    #[inline(always)]
    fn block<S: Lanes, const R: usize, const C: usize>(
        &self,
        i0: usize,
        k0: usize,
        dw: &mut [f64],
    ) {
        let n = self.n;
        let mut acc = [[S::dot_zero(); C]; R];
        for j0 in (0..n).step_by(LANES) {
            let a: [S; R] = std::array::from_fn(|r| S::load(tile(&self.dz[(i0 + r) * n..], j0)));
            for c in 0..C {
                let b = S::load(tile(&self.x[(k0 + c) * n..], j0));
                for (acc, &a) in acc.iter_mut().zip(&a) {
                    acc[c] = S::dot_mul_add(acc[c], a, b);
                }
            }
        }
        for (r, sums) in S::dot_sums(&acc).iter().enumerate() {
            let row = (i0 + r) * self.k + k0;
            dw[row..row + C].copy_from_slice(sums);
        }
    }
}

/// Column-wise softmax of `logits` (K × n) into `probs`, each column
/// shifted by its maximum so exp never overflows; a tile of columns at a
/// time, through a branch-free exp that vectorises.
///
/// Not a dispatched [`Kernel`]: compiled inside the AVX-512 kernel, LLVM
/// left these loops scalar (the epoch several per cent slower); here they
/// vectorise for the instruction sets the build targets.
pub fn softmax_forward(logits: &[f64], probs: &mut [f64], n: usize) {
    for j0 in (0..n).step_by(LANES) {
        let mut max = [f64::NEG_INFINITY; LANES];
        for row in logits.chunks_exact(n) {
            let z = tile(row, j0);
            for t in 0..LANES {
                max[t] = max[t].max(z[t]);
            }
        }
        let mut sum = [0.0; LANES];
        for (prow, zrow) in probs.chunks_exact_mut(n).zip(logits.chunks_exact(n)) {
            let (p, z) = (tile_mut(prow, j0), tile(zrow, j0));
            for t in 0..LANES {
                p[t] = exp_nonpositive(z[t] - max[t]);
                sum[t] += p[t];
            }
        }
        for prow in probs.chunks_exact_mut(n) {
            let p = tile_mut(prow, j0);
            for t in 0..LANES {
                p[t] /= sum[t];
            }
        }
    }
}

/// Mean cross-entropy of the softmax of `logits` (K × n) over the first
/// `labels.len()` columns (the rest is padding): log p_y = z_y − max −
/// log Σ exp(z − max), exact even when p_y underflows.
pub fn cross_entropy(logits: &[f64], labels: &[usize]) -> f64 {
    let n = logits.len() / classes(logits, labels);
    let mut total = 0.0;
    for (j, &y) in labels.iter().enumerate() {
        let column = || logits[j..].iter().step_by(n);
        let max = column().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = column().map(|&z| (z - max).exp()).sum();
        total -= logits[y * n + j] - max - sum.ln();
    }
    total / labels.len() as f64
}

/// Number of rows of a K × n buffer whose n is a padded multiple of LANES ≥ labels.
fn classes(buffer: &[f64], labels: &[usize]) -> usize {
    let n = labels.len().div_ceil(LANES).max(1) * LANES;
    buffer.len() / n
}

/// Softmax and mean cross-entropy backward, fused: dz = (P − Y) / n, zero
/// in the padding columns.
pub fn softmax_cross_entropy_backward(probs: &[f64], labels: &[usize], dz: &mut [f64]) {
    let k = classes(probs, labels);
    let n = probs.len() / k;
    let inv_n = 1.0 / labels.len() as f64;
    for (drow, prow) in dz.chunks_exact_mut(n).zip(probs.chunks_exact(n)) {
        for (j, (d, &p)) in drow.iter_mut().zip(prow).enumerate() {
            *d = if j < labels.len() { p * inv_n } else { 0.0 };
        }
    }
    for (j, &y) in labels.iter().enumerate() {
        dz[y * n + j] -= inv_n;
    }
}

/// Fraction of columns whose largest probability is at the label.
pub fn accuracy(probs: &[f64], labels: &[usize]) -> f64 {
    let n = probs.len() / classes(probs, labels);
    let correct = labels
        .iter()
        .enumerate()
        .filter(|&(j, &y)| {
            let best = probs[j..].iter().step_by(n).enumerate().fold(
                (0, f64::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            );
            best.0 == y
        })
        .count();
    correct as f64 / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::tests::on;
    use nabla_kernels::isa::Isa;

    /// A k × 1 column padded to one tile.
    fn padded(column: &[f64]) -> Vec<f64> {
        column
            .iter()
            .flat_map(|&v| std::iter::once(v).chain([0.0; LANES - 1]))
            .collect()
    }

    #[test]
    fn linear_layer_against_hand_computation() {
        // W = [[1, 2], [3, 4], [5, 6]] (3 × 2), b = [1, 0, -1], one sample x = [1, -1].
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut z = vec![0.0; 3 * LANES];
        let x = padded(&[1.0, -1.0]);
        linear_forward(&w, &[1.0, 0.0, -1.0], &x, &mut z);
        assert_eq!([z[0], z[LANES], z[2 * LANES]], [0.0, -1.0, -2.0]);
        let (mut dw, mut db, mut dx) = ([0.0; 6], [0.0; 3], vec![0.0; 2 * LANES]);
        let dz = padded(&[1.0, 0.0, 2.0]);
        linear_backward(
            &padded(&[1.0, -1.0]),
            &w,
            &dz,
            &mut dw,
            &mut db,
            Some(&mut dx),
        );
        assert_eq!(dw, [1.0, -1.0, 0.0, 0.0, 2.0, -2.0]);
        assert_eq!(db, [1.0, 0.0, 2.0]);
        assert_eq!([dx[0], dx[LANES]], [11.0, 14.0]);
    }

    #[test]
    fn softmax_survives_huge_logits_and_ignores_padding() {
        let mut p = vec![0.0; 3 * LANES];
        let logits = padded(&[1000.0, 0.0, -1000.0]);
        softmax_forward(&logits, &mut p, LANES);
        assert_eq!([p[0], p[LANES], p[2 * LANES]], [1.0, 0.0, 0.0]);
        assert_eq!(cross_entropy(&logits, &[2]), 2000.0);
        let mut dz = vec![9.0; 3 * LANES];
        softmax_cross_entropy_backward(&p, &[2], &mut dz);
        assert_eq!([dz[0], dz[LANES], dz[2 * LANES]], [1.0, 0.0, -1.0]);
        assert!(dz
            .iter()
            .enumerate()
            .all(|(i, &v)| i % LANES == 0 || v == 0.0));
    }

    /// Every blocking of rows (1 to 13 outputs: blocks of 1 to 6), inputs
    /// from 1 to 17 (partial groups of LANES weights), 1 to 5 tiles of
    /// columns, against the definitions summed in plain loops, on every
    /// instruction set this CPU has.
    #[test]
    fn linear_layer_against_plain_loops_over_odd_shapes() {
        for isa in Isa::available() {
            on(isa, || linear_layer_against_plain_loops(isa));
        }
    }

    fn linear_layer_against_plain_loops(isa: Isa) {
        let mut rng = crate::rng::NumpyRandom::new(7);
        for (m, k, n) in [
            (1, 1, 8),
            (3, 10, 32),
            (10, 5, 16),
            (13, 17, 40),
            (7, 9, 24),
            (12, 2, 8),
            (2, 3, 16),
        ] {
            let (w, b) = (rng.randn_vec(m * k), rng.randn_vec(m));
            let (x, dz) = (rng.randn_vec(k * n), rng.randn_vec(m * n));
            let mut z = vec![0.0; m * n];
            linear_forward(&w, &b, &x, &mut z);
            let (mut dw, mut db, mut dx) = (vec![0.0; m * k], vec![0.0; m], vec![0.0; k * n]);
            linear_backward(&x, &w, &dz, &mut dw, &mut db, Some(&mut dx));
            let close = |got: f64, want: f64, what: &str| {
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "{}: {m}×{k}×{n} {what}: {got} vs {want}",
                    isa.name()
                );
            };
            for i in 0..m {
                for j in 0..n {
                    let want = b[i] + (0..k).map(|kk| w[i * k + kk] * x[kk * n + j]).sum::<f64>();
                    close(z[i * n + j], want, "z");
                }
                close(db[i], dz[i * n..(i + 1) * n].iter().sum(), "db");
                for kk in 0..k {
                    let want = (0..n).map(|j| dz[i * n + j] * x[kk * n + j]).sum::<f64>();
                    close(dw[i * k + kk], want, "dW");
                }
            }
            for kk in 0..k {
                for j in 0..n {
                    let want = (0..m).map(|i| w[i * k + kk] * dz[i * n + j]).sum::<f64>();
                    close(dx[kk * n + j], want, "dx");
                }
            }
        }
    }

    #[test]
    fn softmax_of_a_tile_against_libm() {
        let logits: Vec<f64> = (0..3 * LANES)
            .map(|i| (i as f64 * 0.37).sin() * 30.0)
            .collect();
        let mut p = vec![0.0; 3 * LANES];
        softmax_forward(&logits, &mut p, LANES);
        for j in 0..LANES {
            let column = [logits[j], logits[LANES + j], logits[2 * LANES + j]];
            let max = column.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let sum: f64 = column.iter().map(|z| (z - max).exp()).sum();
            for (r, z) in column.iter().enumerate() {
                let want = (z - max).exp() / sum;
                assert!(
                    (p[r * LANES + j] - want).abs() <= 4.0 * f64::EPSILON * want,
                    "{} vs {want}",
                    p[r * LANES + j]
                );
            }
        }
    }
}
