//! `vision export` against PyTorch and an independent ONNX runtime: each of
//! the four models, with the parity fixtures' weights (drawn as
//! tools/gen_resnet_fixtures.py, gen_efficientnet_fixtures.py and
//! gen_export_fixtures.py draw them), exported as safetensors holds exactly
//! the keys, shapes and values of PyTorch's state dict, and exported as ONNX
//! and run by tract gives PyTorch's logits.

mod parity;

use burn::tensor::Device;
use nabla_dense::NumpyRandom;
use nabla_vision::export::{export_bytes, ExportFormat};
use nabla_vision::load::torch_names;
use nabla_vision::model::{Architecture, ModelConfig, Network};
use nabla_vision::train::ModelCard;
use nabla_vision::weights::{load_into, StateDict};
use parity::{fixture_weights, json, largest_logit_difference};
use tract_onnx::prelude::*;

const CASES: [(&str, Architecture); 4] = [
    ("cnn_parity.json", Architecture::Cnn),
    ("cnn_bn_parity.json", Architecture::CnnBn),
    ("resnet34_parity.json", Architecture::ResNet34),
    (
        "efficientnet_lite0_parity.json",
        Architecture::EfficientNetLite0,
    ),
];

/// The fixture's model with its weights, the card it is exported with, the
/// weights as a state dict, and the generator positioned at the input.
fn fixture_model(
    name: &str,
    architecture: Architecture,
) -> (
    serde_json::Value,
    Network,
    ModelCard,
    StateDict,
    NumpyRandom,
) {
    let fx = json(name);
    let mut rng = NumpyRandom::new(7);
    let dict: StateDict = fixture_weights(&fx, &mut rng).into_iter().collect();
    let config = ModelConfig::new(architecture, 10).with_image_size(64);
    let network = config.init(&Device::flex());
    let names = torch_names(&network);
    let network = match network {
        Network::Cnn(m) => Network::Cnn(load_into(m, &dict, names, &[], name).unwrap()),
        Network::ResNet(m) => Network::ResNet(load_into(m, &dict, names, &[], name).unwrap()),
        Network::EfficientNet(m) => {
            Network::EfficientNet(load_into(m, &dict, names, &[], name).unwrap())
        }
    };
    let card = ModelCard {
        run: None,
        model: config,
        classes: (0..10).map(|i| format!("class {i}")).collect(),
    };
    (fx, network, card, dict, rng)
}

fn fixture_logits(fx: &serde_json::Value) -> Vec<f64> {
    fx["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect()
}

fn largest_difference(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).abs())
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

#[test]
fn safetensors_export_is_pytorchs_state_dict() {
    for (name, architecture) in CASES {
        let (fx, network, card, dict, _) = fixture_model(name, architecture);
        let exported = export_bytes(&network, &card, ExportFormat::Safetensors).unwrap();
        let file = safetensors::SafeTensors::deserialize(&exported.bytes).unwrap();
        let keys = fx["keys"].as_array().unwrap();
        assert_eq!(file.len(), keys.len(), "{name}: tensor count");
        assert_eq!(exported.tensors, keys.len());
        for key in keys {
            let torch = key[0].as_str().unwrap();
            let view = file
                .tensor(torch)
                .unwrap_or_else(|e| panic!("{name}: PyTorch's {torch} is not in the file: {e}"));
            let shape: Vec<usize> = serde_json::from_value(key[1].clone()).unwrap();
            assert_eq!(view.shape(), shape, "{name}: {torch}");
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert!(values == dict[torch].data, "{name}: {torch} values differ");
        }
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&exported.bytes).unwrap();
        let metadata = metadata.metadata().clone().unwrap();
        assert_eq!(metadata["model"], architecture.name());
        assert_eq!(metadata["image_size"], "64");
        let classes: Vec<String> = serde_json::from_str(&metadata["classes"]).unwrap();
        assert_eq!(classes, card.classes);
    }
}

#[test]
fn onnx_export_gives_pytorchs_logits_in_tract() {
    for (name, architecture) in CASES {
        let (fx, network, card, _, mut rng) = fixture_model(name, architecture);
        let exported = export_bytes(&network, &card, ExportFormat::Onnx).unwrap();
        let mut input_rng = rng.clone();
        let input: Vec<f32> = rng
            .randn_vec(2 * 3 * 64 * 64)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let model = tract_onnx::onnx()
            .model_for_read(&mut exported.bytes.as_slice())
            .unwrap()
            .with_input_fact(0, f32::fact([2, 3, 64, 64]).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x = tract_ndarray::Array4::from_shape_vec((2, 3, 64, 64), input).unwrap();
        let out = model.run(tvec!(x.into_tensor().into())).unwrap();
        let tract: Vec<f32> = out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let worst = largest_difference(&tract, &fixture_logits(&fx));
        eprintln!("{name}: tract against PyTorch, largest logit difference {worst:e}");
        assert!(worst <= 1e-4, "{name}: tract against PyTorch {worst:e}");
        // nabla on the same input, for the record beside it.
        let device = Device::flex();
        let nabla = largest_logit_difference(&fx, &mut input_rng, &device, |x| network.forward(x));
        eprintln!("{name}: nabla against PyTorch, largest logit difference {nabla:e}");
        assert!(nabla <= 1e-4, "{name}: nabla against PyTorch {nabla:e}");
        // The graph's weights are the state dict's, constants aside.
        assert_eq!(exported.tensors, fx["keys"].as_array().unwrap().len());
    }
}
