//! Fixtures shared by the parity tests: weights drawn from the numpy-compatible
//! generator as the tools/ scripts draw them, and logits compared with the
//! reference's.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use nabla_dense::NumpyRandom;
use nabla_vision::weights::NamedTensor;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// The fixture's weights, drawn exactly as tools/gen_resnet_fixtures.py and
/// tools/gen_efficientnet_fixtures.py draw them (`bn2.` matches ResNet's
/// `.bn2.` and EfficientNet's `._bn2.` alike).
pub fn scaled(name: &str, shape: &[usize], v: Vec<f64>) -> Vec<f32> {
    let leaf = name.rsplit('.').next().unwrap();
    let fan_in: usize = shape[1..].iter().product();
    v.into_iter()
        .map(|x| {
            (match leaf {
                "running_var" => 0.5 + 0.5 * x * x,
                "running_mean" | "bias" => 0.1 * x,
                _ if shape.len() == 1 && name.contains("bn2.") => 0.3 + 0.05 * x,
                _ if shape.len() == 1 => 1.0 + 0.1 * x,
                _ => x * (2.0 / fan_in as f64).sqrt(),
            }) as f32
        })
        .collect()
}

/// The fixture's keys with their weights, drawn from `rng` in key order.
pub fn fixture_weights(
    fx: &serde_json::Value,
    rng: &mut NumpyRandom,
) -> Vec<(String, NamedTensor)> {
    fx["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            let name = key[0].as_str().unwrap().to_string();
            let shape: Vec<usize> = key[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let data = scaled(&name, &shape, rng.randn_vec(shape.iter().product()));
            (name, NamedTensor { shape, data })
        })
        .collect()
}

/// The largest absolute difference between `forward` on the fixture's input
/// (the next `2·3·64·64` draws of `rng`) and the fixture's logits.
pub fn largest_logit_difference(
    fx: &serde_json::Value,
    rng: &mut NumpyRandom,
    device: &Device,
    forward: impl Fn(Tensor<4>) -> Tensor<2>,
) -> f64 {
    let x: Vec<f32> = rng
        .randn_vec(2 * 3 * 64 * 64)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, 64, 64]), device);
    let got = forward(x)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let want: Vec<f64> = fx["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        // NaN wins, so a model that produces NaN fails the comparison.
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}
