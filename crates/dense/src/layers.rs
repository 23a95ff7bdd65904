//! Layers as forward/backward pairs over plain arrays (samples are columns).

use ndarray::{Array1, Array2, Axis};

/// Z = W X + b, with b added to every column.
pub fn linear_forward(w: &Array2<f64>, b: &Array1<f64>, x: &Array2<f64>) -> Array2<f64> {
    let mut z = w.dot(x);
    z += &b.view().insert_axis(Axis(1));
    z
}

/// Gradients of a linear layer: (dW, db, dX) from dZ.
pub fn linear_backward(
    w: &Array2<f64>,
    x: &Array2<f64>,
    dz: &Array2<f64>,
) -> (Array2<f64>, Array1<f64>, Array2<f64>) {
    (dz.dot(&x.t()), dz.sum_axis(Axis(1)), w.t().dot(dz))
}

/// Column-wise softmax, shifted by each column's maximum so exp never overflows.
pub fn softmax_forward(z: &Array2<f64>) -> Array2<f64> {
    let mut p = z.clone();
    for mut col in p.columns_mut() {
        let max = col.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        col.mapv_inplace(|v| (v - max).exp());
        let sum = col.sum();
        col /= sum;
    }
    p
}

/// Mean cross-entropy of the probabilities `p` (classes × samples) at `labels`.
pub fn cross_entropy(p: &Array2<f64>, labels: &[usize]) -> f64 {
    let n = labels.len() as f64;
    -labels
        .iter()
        .enumerate()
        .map(|(i, &y)| p[[y, i]].max(f64::MIN_POSITIVE).ln())
        .sum::<f64>()
        / n
}

/// Softmax and mean cross-entropy backward, fused: dZ = (P − Y) / n.
pub fn softmax_cross_entropy_backward(p: &Array2<f64>, labels: &[usize]) -> Array2<f64> {
    let n = labels.len() as f64;
    let mut dz = p / n;
    for (i, &y) in labels.iter().enumerate() {
        dz[[y, i]] -= 1.0 / n;
    }
    dz
}

/// Fraction of columns whose largest probability is at the label.
pub fn accuracy(p: &Array2<f64>, labels: &[usize]) -> f64 {
    let correct = p
        .columns()
        .into_iter()
        .zip(labels)
        .filter(|(col, &y)| {
            let best = col
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (k, &v)| if v > b.1 { (k, v) } else { b },
                );
            best.0 == y
        })
        .count();
    correct as f64 / labels.len() as f64
}
