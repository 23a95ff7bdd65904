//! Problem 4: dropout as multiplicative noise h ↦ (1 + η) ⊙ h, its exact
//! moments, the second-order approximation of the loss it adds, and the
//! linear case where that approximation is exact. Derivations in
//! docs/theory/dropout.md.

use std::ops::{Add, Div, Mul, Neg, Sub};

use nabla_dense::{Activation, Mlp, NumpyRandom};
use ndarray::Array2;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

/// One draw of η: −1 with probability q, q/(1−q) otherwise.
pub fn sample_eta(q: f64, rng: &mut SmallRng) -> f64 {
    if rng.random::<f64>() < q {
        -1.0
    } else {
        q / (1.0 - q)
    }
}

/// Var η = q/(1−q) (and E η = 0).
pub fn eta_variance(q: f64) -> f64 {
    q / (1.0 - q)
}

/// Sample moments of η against their exact values, and the check that
/// 1 + η is inverted dropout's mask/(1−q).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EtaCheck {
    pub q: f64,
    pub samples: usize,
    pub mean: f64,
    pub mean_se: f64,
    pub variance: f64,
    pub variance_exact: f64,
    pub variance_se: f64,
    /// Fraction of draws with 1 + η = 0 (dropped units), against q.
    pub dropped: f64,
    pub dropped_se: f64,
    /// Every kept draw has 1 + η exactly 1/(1−q).
    pub kept_scale_exact: bool,
    /// All three within 4 standard errors and the kept scale exact.
    pub passed: bool,
}

pub fn check_eta(q: f64, samples: usize, seed: u64) -> EtaCheck {
    let mut rng = SmallRng::seed_from_u64(seed);
    let draws: Vec<f64> = (0..samples).map(|_| sample_eta(q, &mut rng)).collect();
    let n = samples as f64;
    let mean = draws.iter().sum::<f64>() / n;
    let second = draws.iter().map(|e| e * e).sum::<f64>() / n;
    let variance = second - mean * mean;
    let exact = eta_variance(q);
    // SE of the sample variance: √((μ₄ − σ⁴)/n) with μ₄ = E η⁴ known exactly,
    // plus σ²/n for the plug-in estimator's bias (the whole error at q = 1/2,
    // where η² = 1 always).
    let mu4 = q + (1.0 - q) * (q / (1.0 - q)).powi(4);
    let variance_se = ((mu4 - exact * exact) / n).sqrt() + exact / n;
    let mean_se = (exact / n).sqrt();
    let dropped = draws.iter().filter(|&&e| 1.0 + e == 0.0).count() as f64 / n;
    let dropped_se = (q * (1.0 - q) / n).sqrt();
    let kept_scale_exact = draws
        .iter()
        .filter(|&&e| 1.0 + e != 0.0)
        .all(|&e| 1.0 + e == 1.0 / (1.0 - q));
    let passed = mean.abs() <= 4.0 * mean_se
        && (variance - exact).abs() <= 4.0 * variance_se
        && (dropped - q).abs() <= 4.0 * dropped_se
        && kept_scale_exact;
    EtaCheck {
        q,
        samples,
        mean,
        mean_se,
        variance,
        variance_exact: exact,
        variance_se,
        dropped,
        dropped_se,
        kept_scale_exact,
        passed,
    }
}

/// What the forward-over-reverse Hessian needs of a number type.
pub trait Scalar:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    fn from_f64(v: f64) -> Self;
    fn value(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn tanh(self) -> Self;
}

impl Scalar for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn value(self) -> f64 {
        self
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
}

/// A dual number v + d·ε (ε² = 0): running the backward pass on duals
/// differentiates the gradient once more, exactly (forward-over-reverse).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dual {
    pub v: f64,
    pub d: f64,
}

impl Add for Dual {
    type Output = Dual;
    fn add(self, o: Dual) -> Dual {
        Dual {
            v: self.v + o.v,
            d: self.d + o.d,
        }
    }
}
impl Sub for Dual {
    type Output = Dual;
    fn sub(self, o: Dual) -> Dual {
        Dual {
            v: self.v - o.v,
            d: self.d - o.d,
        }
    }
}
impl Mul for Dual {
    type Output = Dual;
    fn mul(self, o: Dual) -> Dual {
        Dual {
            v: self.v * o.v,
            d: self.d * o.v + self.v * o.d,
        }
    }
}
impl Div for Dual {
    type Output = Dual;
    fn div(self, o: Dual) -> Dual {
        Dual {
            v: self.v / o.v,
            d: (self.d * o.v - self.v * o.d) / (o.v * o.v),
        }
    }
}
impl Neg for Dual {
    type Output = Dual;
    fn neg(self) -> Dual {
        Dual {
            v: -self.v,
            d: -self.d,
        }
    }
}
impl Scalar for Dual {
    fn from_f64(v: f64) -> Self {
        Dual { v, d: 0.0 }
    }
    fn value(self) -> f64 {
        self.v
    }
    fn exp(self) -> Self {
        let e = self.v.exp();
        Dual {
            v: e,
            d: self.d * e,
        }
    }
    fn ln(self) -> Self {
        Dual {
            v: self.v.ln(),
            d: self.d / self.v,
        }
    }
    fn tanh(self) -> Self {
        let t = self.v.tanh();
        Dual {
            v: t,
            d: self.d * (1.0 - t * t),
        }
    }
}

/// The activation and its derivative on any [`Scalar`].
fn act<T: Scalar>(a: Activation, z: T) -> (T, T) {
    let one = T::from_f64(1.0);
    let positive = z.value() > 0.0;
    match a {
        Activation::Elu if positive => (z, one),
        Activation::Elu => {
            let e = z.exp();
            (e - one, e)
        }
        Activation::Relu if positive => (z, one),
        Activation::Relu => (T::from_f64(0.0), T::from_f64(0.0)),
        Activation::LeakyRelu if positive => (z, one),
        Activation::LeakyRelu => (T::from_f64(0.01) * z, T::from_f64(0.01)),
        Activation::Tanh => {
            let t = z.tanh();
            (t, one - t * t)
        }
        Activation::Sigmoid => {
            let s = one / (one + (-z).exp());
            (s, s * (one - s))
        }
        Activation::Selu => {
            let (lambda, alpha) = (
                T::from_f64(1.050_700_987_355_480_5),
                T::from_f64(1.673_263_242_354_377_3),
            );
            if positive {
                (lambda * z, lambda)
            } else {
                let e = z.exp();
                (lambda * alpha * (e - one), lambda * alpha * e)
            }
        }
    }
}

/// ℓ(F_i(h), y) and ∇_h of it, where F_i is the part of `net` after hidden
/// layer `i` (1-based) and ℓ the cross-entropy at class `y`.
pub fn loss_and_grad_from_hidden<T: Scalar>(net: &Mlp, i: usize, h: &[T], y: usize) -> (T, Vec<T>) {
    let last = net.weights.len() - 1;
    let mut inputs: Vec<Vec<T>> = vec![h.to_vec()];
    let mut derivs: Vec<Vec<T>> = Vec::new();
    let mut logits = Vec::new();
    for l in i..=last {
        let w = &net.weights[l];
        let z: Vec<T> = (0..w.nrows())
            .map(|r| {
                inputs[l - i]
                    .iter()
                    .zip(w.row(r))
                    .fold(T::from_f64(net.biases[l][r]), |acc, (&a, &wv)| {
                        acc + T::from_f64(wv) * a
                    })
            })
            .collect();
        if l == last {
            logits = z;
        } else {
            let (a, d): (Vec<T>, Vec<T>) = z.into_iter().map(|z| act(net.activation, z)).unzip();
            inputs.push(a);
            derivs.push(d);
        }
    }
    let max = logits
        .iter()
        .map(|z| z.value())
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<T> = logits
        .iter()
        .map(|&z| (z - T::from_f64(max)).exp())
        .collect();
    let sum = exps.iter().fold(T::from_f64(0.0), |a, &e| a + e);
    let loss = sum.ln() - (logits[y] - T::from_f64(max));
    // Backward: dz = p − onehot(y), then through each layer down to h.
    let mut dz: Vec<T> = exps.iter().map(|&e| e / sum).collect();
    dz[y] = dz[y] - T::from_f64(1.0);
    for l in (i..=last).rev() {
        let w = &net.weights[l];
        let mut da = vec![T::from_f64(0.0); w.ncols()];
        for (r, &g) in dz.iter().enumerate() {
            for (c, d) in da.iter_mut().enumerate() {
                *d = *d + T::from_f64(w[[r, c]]) * g;
            }
        }
        dz = if l > i {
            da.iter()
                .zip(&derivs[l - i - 1])
                .map(|(&g, &d)| g * d)
                .collect()
        } else {
            da
        };
    }
    (loss, dz)
}

/// diag ∇²_h ℓ(F_i(h), y) exactly, by forward-over-reverse: the gradient
/// computed on duals h + ε e_k has ∂²ℓ/∂h_k² as the tangent of entry k.
pub fn hessian_diagonal_dual(net: &Mlp, i: usize, h: &[f64], y: usize) -> Vec<f64> {
    (0..h.len())
        .map(|k| {
            let hd: Vec<Dual> = h
                .iter()
                .enumerate()
                .map(|(j, &v)| Dual {
                    v,
                    d: f64::from(u8::from(j == k)),
                })
                .collect();
            loss_and_grad_from_hidden(net, i, &hd, y).1[k].d
        })
        .collect()
}

/// The same by central differences of the analytic gradient, as a cross-check.
pub fn hessian_diagonal_fd(net: &Mlp, i: usize, h: &[f64], y: usize) -> Vec<f64> {
    (0..h.len())
        .map(|k| {
            let eps = 1e-5 * h[k].abs().max(1.0);
            let (mut plus, mut minus) = (h.to_vec(), h.to_vec());
            plus[k] += eps;
            minus[k] -= eps;
            let gp = loss_and_grad_from_hidden(net, i, &plus, y).1[k];
            let gm = loss_and_grad_from_hidden(net, i, &minus, y).1[k];
            (gp - gm) / (2.0 * eps)
        })
        .collect()
}

/// h_i(x) for every column of `x`: the output of hidden layer `i` (1-based).
pub fn hidden_outputs(net: &Mlp, i: usize, x: &Array2<f64>) -> Vec<Vec<f64>> {
    x.columns()
        .into_iter()
        .map(|col| {
            let mut a = col.to_vec();
            for l in 0..i {
                a = net.weights[l]
                    .rows()
                    .into_iter()
                    .zip(net.biases[l].iter())
                    .map(|(row, &b)| {
                        net.activation
                            .apply(row.dot(&ndarray::ArrayView1::from(&a)) + b)
                    })
                    .collect();
            }
            a
        })
        .collect()
}

/// One q of the sheet's 4(ii): Monte-Carlo gap against the second-order formula.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GapPoint {
    pub q: f64,
    /// E_η[ℓ(F(x, η), y)] − ℓ(F(x), y), averaged over the data.
    pub monte_carlo: f64,
    pub standard_error: f64,
    /// q/(2(1−q)) ⟨D²ℓ, diag(h ⊙ h)⟩, averaged over the data.
    pub second_order: f64,
    /// q · D'(0), the exact first-order term in q: q Σ_k [ℓ(h − h_k e_k) − ℓ(h) + ∂_kℓ h_k]
    /// (one unit dropped, the rest scaled by 1/(1−q)), averaged over the data.
    pub first_order_in_q: f64,
    /// |MC − formula| / formula.
    pub relative_gap: f64,
}

/// Evaluates 4(ii) at each q; `draws` masks per sample.
pub fn dropout_gap(
    net: &Mlp,
    layer: usize,
    hidden: &[Vec<f64>],
    labels: &[usize],
    qs: &[f64],
    draws: usize,
    seed: u64,
) -> Vec<GapPoint> {
    // The curvature term Σ_k H_kk h_k² per sample does not depend on q.
    let curvature: Vec<f64> = hidden
        .par_iter()
        .zip(labels)
        .map(|(h, &y)| {
            hessian_diagonal_dual(net, layer, h, y)
                .iter()
                .zip(h)
                .map(|(hkk, hk)| hkk * hk * hk)
                .sum()
        })
        .collect();
    let mean_curvature = curvature.iter().sum::<f64>() / hidden.len() as f64;
    // D'(0): every moment of η is O(q), so the loss change to first order in q
    // is one unit dropped (probability ≈ q each) plus the 1/(1−q) rescaling of the rest.
    let slope_at_zero = hidden
        .par_iter()
        .zip(labels)
        .map(|(h, &y)| {
            let (base, grad) = loss_and_grad_from_hidden(net, layer, h, y);
            (0..h.len())
                .map(|k| {
                    let mut dropped = h.clone();
                    dropped[k] = 0.0;
                    loss_and_grad_from_hidden(net, layer, &dropped, y).0 - base + grad[k] * h[k]
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / hidden.len() as f64;
    qs.iter()
        .enumerate()
        .map(|(qi, &q)| {
            // Per sample: mean and variance of the loss change over `draws` masks.
            let per_sample: Vec<(f64, f64)> = hidden
                .par_iter()
                .zip(labels)
                .enumerate()
                .map(|(n, (h, &y))| {
                    let mut rng = SmallRng::seed_from_u64(seed ^ ((qi as u64) << 40) ^ n as u64);
                    let base = loss_and_grad_from_hidden(net, layer, h, y).0;
                    let (mut s, mut s2) = (0.0, 0.0);
                    let mut dropped = vec![0.0; h.len()];
                    for _ in 0..draws {
                        for (d, &v) in dropped.iter_mut().zip(h) {
                            *d = (1.0 + sample_eta(q, &mut rng)) * v;
                        }
                        let diff = loss_and_grad_from_hidden(net, layer, &dropped, y).0 - base;
                        s += diff;
                        s2 += diff * diff;
                    }
                    let m = draws as f64;
                    (s / m, (s2 / m - (s / m).powi(2)).max(0.0) * m / (m - 1.0))
                })
                .collect();
            let n = per_sample.len() as f64;
            let monte_carlo = per_sample.iter().map(|p| p.0).sum::<f64>() / n;
            let standard_error =
                (per_sample.iter().map(|p| p.1).sum::<f64>() / draws as f64).sqrt() / n;
            let second_order = q / (2.0 * (1.0 - q)) * mean_curvature;
            GapPoint {
                q,
                monte_carlo,
                standard_error,
                second_order,
                first_order_in_q: q * slope_at_zero,
                relative_gap: (monte_carlo - second_order).abs() / second_order.abs(),
            }
        })
        .collect()
}

/// 4(iii): F(h) = W h with ℓ = ‖F(h) − y‖²: the exact dropout penalty.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LinearPoint {
    pub q: f64,
    pub monte_carlo: f64,
    pub standard_error: f64,
    /// q/(1−q) Σ_k ‖W_{:,k}‖² h_k².
    pub closed_form: f64,
    /// The second-order formula with the exact Hessian 2WᵀW: equal to the closed form.
    pub second_order: f64,
    pub within_4_se: bool,
}

/// A seeded random linear model (K × d), input h and target y, checked at each q.
pub fn linear_case(
    outputs: usize,
    inputs: usize,
    qs: &[f64],
    draws: usize,
    seed: u32,
) -> Vec<LinearPoint> {
    let mut np = NumpyRandom::new(seed);
    let w =
        Array2::from_shape_vec((outputs, inputs), np.randn_vec(outputs * inputs)).expect("K × d");
    let h = np.randn_vec(inputs);
    let y = np.randn_vec(outputs);
    let loss = |hh: &[f64]| -> f64 {
        w.rows()
            .into_iter()
            .zip(&y)
            .map(|(row, yk)| (row.iter().zip(hh).map(|(a, b)| a * b).sum::<f64>() - yk).powi(2))
            .sum()
    };
    let base = loss(&h);
    let column_norms: Vec<f64> = w.columns().into_iter().map(|c| c.dot(&c)).collect();
    let weighted: f64 = column_norms.iter().zip(&h).map(|(c, hk)| c * hk * hk).sum();
    // Hessian of ‖Wh − y‖² in h is 2WᵀW; its diagonal is 2‖W_{:,k}‖².
    let hessian_term: f64 = column_norms
        .iter()
        .zip(&h)
        .map(|(c, hk)| 2.0 * c * hk * hk)
        .sum();
    qs.iter()
        .enumerate()
        .map(|(qi, &q)| {
            let mut rng = SmallRng::seed_from_u64(u64::from(seed) ^ ((qi as u64) << 32));
            let (mut s, mut s2) = (0.0, 0.0);
            let mut dropped = vec![0.0; inputs];
            for _ in 0..draws {
                for (d, &v) in dropped.iter_mut().zip(&h) {
                    *d = (1.0 + sample_eta(q, &mut rng)) * v;
                }
                let diff = loss(&dropped) - base;
                s += diff;
                s2 += diff * diff;
            }
            let m = draws as f64;
            let monte_carlo = s / m;
            let standard_error = ((s2 / m - monte_carlo.powi(2)).max(0.0) / (m - 1.0)).sqrt();
            let closed_form = eta_variance(q) * weighted;
            LinearPoint {
                q,
                monte_carlo,
                standard_error,
                closed_form,
                second_order: q / (2.0 * (1.0 - q)) * hessian_term,
                within_4_se: (monte_carlo - closed_form).abs() <= 4.0 * standard_error,
            }
        })
        .collect()
}

/// The q values of the sheet's range 0.01 … 0.5.
pub fn default_qs() -> Vec<f64> {
    vec![0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5]
}

#[cfg(test)]
mod tests {
    use super::*;
    use nabla_dense::Init;

    #[test]
    fn eta_has_mean_zero_variance_q_over_1_minus_q_and_is_inverted_dropout() {
        for q in default_qs() {
            let c = check_eta(q, 200_000, 3);
            assert!(c.passed, "{c:?}");
        }
    }

    #[test]
    fn linear_case_monte_carlo_agrees_with_the_closed_form_at_every_q() {
        for p in linear_case(3, 6, &default_qs(), 200_000, 5) {
            assert!(p.within_4_se, "{p:?}");
            assert!((p.second_order - p.closed_form).abs() <= 1e-12 * p.closed_form);
        }
    }

    #[test]
    fn dual_hessian_matches_differences_of_the_gradient() {
        for act in Activation::ALL {
            let net = Mlp::initialize(&Mlp::dims(5, 4, 6, 3), Init::He, act, 11);
            let x = Array2::from_shape_fn((5, 3), |(r, c)| ((r + 2 * c) as f64 * 0.61).sin());
            for (n, h) in hidden_outputs(&net, 2, &x).iter().enumerate() {
                let exact = hessian_diagonal_dual(&net, 2, h, n % 3);
                let fd = hessian_diagonal_fd(&net, 2, h, n % 3);
                for (e, f) in exact.iter().zip(&fd) {
                    assert!((e - f).abs() < 1e-6 * e.abs().max(1.0), "{act}: {e} vs {f}");
                }
            }
        }
    }

    #[test]
    fn monte_carlo_matches_the_exact_first_order_term_at_small_q() {
        let net = Mlp::initialize(&Mlp::dims(5, 4, 8, 3), Init::He, Activation::Elu, 4);
        let x = Array2::from_shape_fn((5, 40), |(r, c)| {
            ((r * 7 + c * 3) as f64 * 0.37).sin() * 1.5
        });
        let labels: Vec<usize> = (0..40).map(|n| n % 3).collect();
        let hidden = hidden_outputs(&net, 2, &x);
        let gap = dropout_gap(&net, 2, &hidden, &labels, &[0.005], 4000, 9);
        let g = &gap[0];
        assert!(
            (g.monte_carlo - g.first_order_in_q).abs()
                <= 4.0 * g.standard_error + 0.02 * g.first_order_in_q.abs(),
            "{g:?}"
        );
    }

    #[test]
    fn gradient_from_hidden_matches_the_network_backprop() {
        // With i = 0 the "hidden" vector is the input itself; compare ∇_x ℓ by differences.
        let net = Mlp::initialize(&Mlp::dims(4, 3, 5, 3), Init::He, Activation::Elu, 2);
        let x = [0.3, -1.2, 0.8, 0.1];
        let (loss, grad) = loss_and_grad_from_hidden(&net, 0, &x, 1);
        let col = Array2::from_shape_vec((4, 1), x.to_vec()).unwrap();
        assert!((loss - net.evaluate(&col, &[1]).0).abs() < 1e-12);
        for k in 0..4 {
            let (mut p, mut m) = (x, x);
            p[k] += 1e-6;
            m[k] -= 1e-6;
            let fd = (loss_and_grad_from_hidden(&net, 0, &p, 1).0
                - loss_and_grad_from_hidden(&net, 0, &m, 1).0)
                / 2e-6;
            assert!((fd - grad[k]).abs() < 1e-8, "{fd} vs {}", grad[k]);
        }
    }
}
