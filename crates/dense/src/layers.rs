//! Layers as forward/backward pairs over plain slices, llm.c style.
//!
//! Batches are feature-major as in the sheet's numpy code: an m × n buffer
//! holds one row per unit and one column per sample, with n a multiple of
//! [`LANES`] (the workspace pads the batch with zero columns). Every kernel
//! works on tiles of `LANES` columns kept in registers, so the small widths
//! of the sheet's nets (d = 10) still run at vector speed.

/// Columns per tile: two AVX registers of f64, or four SSE2 ones.
pub const LANES: usize = 8;

type Tile = [f64; LANES];

/// a · b + c, fused into one instruction where the CPU has FMA (Rust never
/// fuses on its own); elsewhere a plain multiply and add, since a software
/// fma would be far slower.
#[inline(always)]
fn fmadd(a: f64, b: f64, c: f64) -> f64 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

fn tile(row: &[f64], j0: usize) -> &Tile {
    row[j0..j0 + LANES].try_into().expect("a full tile")
}

fn tile_mut(row: &mut [f64], j0: usize) -> &mut Tile {
    (&mut row[j0..j0 + LANES]).try_into().expect("a full tile")
}

/// z (m × n) = W (m × k) · x (k × n) + b, b added to every column.
pub fn linear_forward(w: &[f64], b: &[f64], x: &[f64], z: &mut [f64]) {
    let (m, k) = (b.len(), w.len() / b.len());
    let n = x.len() / k;
    for j0 in (0..n).step_by(LANES) {
        for (i, zrow) in z.chunks_exact_mut(n).enumerate().take(m) {
            let mut acc: Tile = [b[i]; LANES];
            for (&wv, xrow) in w[i * k..(i + 1) * k].iter().zip(x.chunks_exact(n)) {
                let xs = tile(xrow, j0);
                for t in 0..LANES {
                    acc[t] = fmadd(wv, xs[t], acc[t]);
                }
            }
            *tile_mut(zrow, j0) = acc;
        }
    }
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
    let (m, k) = (db.len(), w.len() / db.len());
    let n = dz.len() / m;
    for ((dzrow, dwrow), dbv) in dz
        .chunks_exact(n)
        .zip(dw.chunks_exact_mut(k))
        .zip(db.iter_mut())
    {
        *dbv = lane_dot(dzrow, None);
        for (d, xrow) in dwrow.iter_mut().zip(x.chunks_exact(n)) {
            *d = lane_dot(dzrow, Some(xrow));
        }
    }
    if let Some(dx) = dx {
        for j0 in (0..n).step_by(LANES) {
            for (kk, dxrow) in dx.chunks_exact_mut(n).enumerate() {
                let mut acc: Tile = [0.0; LANES];
                for (i, dzrow) in dz.chunks_exact(n).enumerate() {
                    let wv = w[i * k + kk];
                    let ds = tile(dzrow, j0);
                    for t in 0..LANES {
                        acc[t] = fmadd(wv, ds[t], acc[t]);
                    }
                }
                *tile_mut(dxrow, j0) = acc;
            }
        }
    }
}

/// Σ_j a[j] · b[j] (or Σ_j a[j] without `b`), accumulated in `LANES`
/// independent sums so the loop vectorises: a single running sum would
/// serialise every addition.
#[inline(always)]
fn lane_dot(a: &[f64], b: Option<&[f64]>) -> f64 {
    let mut acc: Tile = [0.0; LANES];
    match b {
        Some(b) => {
            for (ta, tb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
                for t in 0..LANES {
                    acc[t] = fmadd(ta[t], tb[t], acc[t]);
                }
            }
        }
        None => {
            for ta in a.chunks_exact(LANES) {
                for t in 0..LANES {
                    acc[t] += ta[t];
                }
            }
        }
    }
    acc.iter().sum()
}

/// Column-wise softmax of `logits` (K × n) into `probs`, shifted by each
/// column's maximum so exp never overflows; returns the mean cross-entropy
/// over the first `labels.len()` columns (the rest is padding).
pub fn softmax_cross_entropy_forward(logits: &[f64], labels: &[usize], probs: &mut [f64]) -> f64 {
    let n = logits.len() / classes(logits, labels);
    let mut total = 0.0;
    for (j, &y) in labels.iter().enumerate() {
        let max = logits[j..]
            .iter()
            .step_by(n)
            .fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0;
        for (p, &z) in probs[j..]
            .iter_mut()
            .step_by(n)
            .zip(logits[j..].iter().step_by(n))
        {
            *p = (z - max).exp();
            sum += *p;
        }
        for p in probs[j..].iter_mut().step_by(n) {
            *p /= sum;
        }
        // log p_y = z_y − max − log Σ exp(z − max), exact even when p_y underflows.
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
        linear_forward(&w, &[1.0, 0.0, -1.0], &padded(&[1.0, -1.0]), &mut z);
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
        let loss = softmax_cross_entropy_forward(&padded(&[1000.0, 0.0, -1000.0]), &[2], &mut p);
        assert_eq!(p[0], 1.0);
        assert_eq!(loss, 2000.0);
        let mut dz = vec![9.0; 3 * LANES];
        softmax_cross_entropy_backward(&p, &[2], &mut dz);
        assert_eq!([dz[0], dz[LANES], dz[2 * LANES]], [1.0, 0.0, -1.0]);
        assert!(dz
            .iter()
            .enumerate()
            .all(|(i, &v)| i % LANES == 0 || v == 0.0));
    }
}
