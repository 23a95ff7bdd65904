//! Against numpy and PyTorch, frozen by `tools/gen_dense_fixtures.py`
//! (its docstring says how to rerun it).

use nabla_dense::gradnorms::gradient_norms;
use nabla_dense::{Activation, Grads, Init, Mlp, NumpyRandom, Optimizer, OptimizerState};
use ndarray::Array2;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fnv1a(values: &[f64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for byte in v.to_le_bytes() {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn numpy_streams_are_bit_identical() {
    let doc = fixture("numpy_rng.json");
    for case in doc["seeds"].as_array().unwrap() {
        let seed = case["seed"].as_u64().unwrap() as u32;
        for (kind, draw) in [
            (
                "random_sample",
                NumpyRandom::random_sample as fn(&mut NumpyRandom) -> f64,
            ),
            ("randn", NumpyRandom::randn),
        ] {
            let want = &case[kind];
            let count = want["count"].as_u64().unwrap() as usize;
            assert!(count >= 10_000);
            let mut rng = NumpyRandom::new(seed);
            let got: Vec<f64> = (0..count).map(|_| draw(&mut rng)).collect();
            for (i, b) in want["first_bits"].as_array().unwrap().iter().enumerate() {
                assert_eq!(
                    got[i].to_bits(),
                    b.as_u64().unwrap(),
                    "seed {seed} {kind} draw {i}"
                );
            }
            assert_eq!(
                fnv1a(&got),
                want["fnv1a"].as_u64().unwrap(),
                "seed {seed} {kind}"
            );
        }
    }
}

#[test]
fn sheet_initialisation_and_forward_pass() {
    let doc = fixture("sheet_forward.json");
    let dims: Vec<usize> = serde_json::from_value(doc["layer_dims"].clone()).unwrap();
    let net = Mlp::initialize(&dims, Init::He, Activation::Elu, 42);
    let want_bits: Vec<Vec<u64>> = serde_json::from_value(doc["weights_bits"].clone()).unwrap();
    for (l, (w, bits)) in net.weights.iter().zip(&want_bits).enumerate() {
        let got: Vec<u64> = w.iter().map(|v| v.to_bits()).collect();
        assert_eq!(&got, bits, "W{}", l + 1);
    }
    let x = Array2::from_shape_vec((5, 1), vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let probs = net.forward(&x);
    let want: Vec<f64> = serde_json::from_value(doc["probs"].clone()).unwrap();
    for (g, w) in probs.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}

#[test]
fn thirty_layer_gradient_norms_match_pytorch_autograd() {
    let doc = fixture("grad_norms.json");
    let layers = doc["layers"].as_u64().unwrap() as usize;
    let width = doc["width"].as_u64().unwrap() as usize;
    let dims = Mlp::dims(5, layers, width, 3);
    for curve in doc["curves"].as_array().unwrap() {
        let act: Activation = curve["activation"].as_str().unwrap().parse().unwrap();
        let init: Init = curve["init"].as_str().unwrap().parse().unwrap();
        let net = Mlp::initialize(&dims, init, act, 42);
        let norms = gradient_norms(&net, &[1.0, 2.0, 3.0, 4.0, 5.0], 0);
        let want: Vec<f64> = serde_json::from_value(curve["norms"].clone()).unwrap();
        assert_eq!(norms.len(), layers + 1);
        for (l, (g, w)) in norms.iter().zip(&want).enumerate() {
            assert!(
                close(*g, *w, 1e-9),
                "{act}/{init} layer {}: {g} vs torch {w}",
                l + 1
            );
        }
    }
}

#[test]
fn optimizers_follow_pytorch_sgd_trajectories() {
    let doc = fixture("optimizer_trajectories.json");
    let dims: Vec<usize> = serde_json::from_value(doc["layer_dims"].clone()).unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(doc["x"].clone()).unwrap();
    let x = Array2::from_shape_vec((rows.len(), rows[0].len()), rows.concat()).unwrap();
    let labels: Vec<usize> = serde_json::from_value(doc["labels"].clone()).unwrap();
    let (lr, rho) = (
        doc["lr"].as_f64().unwrap(),
        doc["momentum"].as_f64().unwrap(),
    );
    for run in doc["runs"].as_array().unwrap() {
        let kind: Optimizer = run["optimizer"].as_str().unwrap().parse().unwrap();
        let want: Vec<f64> = serde_json::from_value(run["losses"].clone()).unwrap();
        let mut net = Mlp::initialize(&dims, Init::He, Activation::Elu, 7);
        let mut opt = OptimizerState::new(
            kind,
            lr,
            if kind == Optimizer::Sgd { 0.0 } else { rho },
            &net,
        );
        let mut grads = Grads::zeros_like(&net);
        for (t, want_loss) in want.iter().enumerate() {
            // PyTorch's Nesterov keeps the look-ahead point w + ρv as its parameters.
            let seen = if kind == Optimizer::Nesterov {
                opt.look_ahead(&net)
            } else {
                net.clone()
            };
            let loss = seen.evaluate(&x, &labels).0;
            assert!(
                close(loss, *want_loss, 1e-10),
                "{kind} t={t}: {loss} vs torch {want_loss}"
            );
            if t + 1 < want.len() {
                opt.step(&mut net, &mut grads, |at, g| {
                    *g = at.loss_and_grads(&x, &labels).1
                });
            }
        }
        let final_net = if kind == Optimizer::Nesterov {
            opt.look_ahead(&net)
        } else {
            net.clone()
        };
        let want_w: Vec<Vec<f64>> = serde_json::from_value(run["final_weights"].clone()).unwrap();
        for (w, want) in final_net.weights.iter().zip(&want_w) {
            for (g, e) in w.iter().zip(want) {
                assert!((g - e).abs() < 1e-10, "{kind}: weight {g} vs torch {e}");
            }
        }
    }
}
