//! Optimizer updates fused into one pass over each parameter. Burn's Adam
//! is a dozen tensor operations, each a pass over the parameter, its
//! gradient or its moments; here one loop reads the four and writes three.

use rayon::prelude::*;

/// Values per parallel task: large enough to pay for the task, small
/// enough that ResNet34's 2.4 M-weight kernels spread over both cores.
const CHUNK: usize = 1 << 15;

/// One Adam step's constants (Kingma and Ba, with Burn's placement of ε).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// The step's number, from 1.
    pub time: i32,
}

/// One Adam step in place: `m₁ ← β₁m₁ + (1 − β₁)g`, `m₂ ← β₂m₂ + (1 − β₂)g²`,
/// `p ← p − lr · m₁c / (√m₂ + ε√(1 − β₂ᵗ))` with `c = √(1 − β₂ᵗ) / (1 − β₁ᵗ)`
/// — the operations of Burn's `Adam`, in its order and precision, so the
/// result is the same bits (moments start at zero).
pub fn adam_step(h: &AdamStep, param: &mut [f32], grad: &[f32], m1: &mut [f32], m2: &mut [f32]) {
    assert!(grad.len() == param.len() && m1.len() == param.len() && m2.len() == param.len());
    let bias_2 = (1.0 - h.beta_2.powi(h.time)).sqrt();
    let factor = bias_2 / (1.0 - h.beta_1.powi(h.time));
    let eps = h.epsilon * bias_2;
    let (f1, f2) = (1.0 - h.beta_1, 1.0 - h.beta_2);
    let (b1, b2, lr) = (h.beta_1, h.beta_2, h.lr);
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m1.par_chunks_mut(CHUNK).zip(m2.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m1, m2))| {
            for (((p, &g), m1), m2) in p.iter_mut().zip(g).zip(m1).zip(m2) {
                *m1 = *m1 * b1 + g * f1;
                *m2 = *m2 * b2 + (g * g) * f2;
                let update = (*m1 * factor) / (m2.sqrt() + eps);
                *p -= update * lr;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adam by its textbook definition in f64 (bias-corrected moments,
    /// `ε̂ = ε √(1 − β₂ᵗ)`, which is where Burn and PyTorch's `eps` differ
    /// only in name), over three steps.
    #[test]
    fn three_steps_match_the_definition() {
        let n = 3 * CHUNK + 5;
        let grads: Vec<Vec<f32>> = (0..3)
            .map(|s| {
                (0..n)
                    .map(|i| ((i * 7 + s * 13) % 29) as f32 / 29.0 - 0.4)
                    .collect()
            })
            .collect();
        let start: Vec<f32> = (0..n).map(|i| (i % 11) as f32 / 11.0 - 0.5).collect();
        let (mut p, mut m1, mut m2) = (start.clone(), vec![0f32; n], vec![0f32; n]);
        let (mut rp, mut r1, mut r2) = (
            start.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            vec![0f64; n],
            vec![0f64; n],
        );
        let (lr, b1, b2, eps) = (1e-2f64, 0.9f64, 0.999f64, 1e-5f64);
        for (t, g) in grads.iter().enumerate() {
            let time = t as i32 + 1;
            let h = AdamStep {
                lr: lr as f32,
                beta_1: b1 as f32,
                beta_2: b2 as f32,
                epsilon: eps as f32,
                time,
            };
            adam_step(&h, &mut p, g, &mut m1, &mut m2);
            for i in 0..n {
                let gi = g[i] as f64;
                r1[i] = b1 * r1[i] + (1.0 - b1) * gi;
                r2[i] = b2 * r2[i] + (1.0 - b2) * gi * gi;
                let m_hat = r1[i] / (1.0 - b1.powi(time));
                let v_hat = r2[i] / (1.0 - b2.powi(time));
                rp[i] -= lr * m_hat / (v_hat.sqrt() + eps);
            }
        }
        for i in 0..n {
            assert!(
                (p[i] as f64 - rp[i]).abs() <= 1e-6,
                "[{i}]: {} vs {}",
                p[i],
                rp[i]
            );
        }
    }
}
