//! Backprop against central finite differences in f64, every parameter,
//! every activation.

use nabla_dense::{Activation, Init, Mlp};
use ndarray::Array2;

#[test]
fn every_parameter_matches_finite_differences_for_every_activation() {
    let x = Array2::from_shape_fn((4, 5), |(i, j)| ((i * 5 + j) as f64 * 0.37).sin());
    let labels = [0, 2, 1, 2, 0];
    for act in Activation::ALL {
        let mut net = Mlp::initialize(&Mlp::dims(4, 3, 6, 3), Init::Xavier, act, 3);
        // Non-zero biases so every bias gradient is exercised away from zero inputs.
        for (l, b) in net.biases.iter_mut().enumerate() {
            b.mapv_inplace(|_| 0.05 * (l as f64 + 1.0));
        }
        let (_, grads) = net.loss_and_grads(&x, &labels);
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        let loss = |n: &Mlp| n.evaluate(&x, &labels).0;
        for l in 0..net.weights.len() {
            for idx in 0..net.weights[l].len() {
                let (r, c) = (idx / net.weights[l].ncols(), idx % net.weights[l].ncols());
                let mut plus = net.clone();
                plus.weights[l][[r, c]] += h;
                let mut minus = net.clone();
                minus.weights[l][[r, c]] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                worst = worst.max((fd - grads.weights[l][[r, c]]).abs());
            }
            for i in 0..net.biases[l].len() {
                let mut plus = net.clone();
                plus.biases[l][i] += h;
                let mut minus = net.clone();
                minus.biases[l][i] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                worst = worst.max((fd - grads.biases[l][i]).abs());
            }
        }
        assert!(worst < 1e-8, "{act}: largest |fd - backprop| = {worst:e}");
    }
}
