//! ResNet34 against torchvision, and the PyTorch weight readers against
//! files torch wrote (fixtures from tools/gen_resnet_fixtures.py).

mod parity;

use std::path::PathBuf;

use burn::tensor::Device;
use nabla_dense::NumpyRandom;
use nabla_vision::resnet::ResNetConfig;
use nabla_vision::weights::{load_into, read_state_dict, NamedTensor, StateDict, Torchvision};
use parity::{fixture, fixture_weights, json, largest_logit_difference};

const RESNET: Torchvision = Torchvision { linear: &["fc"] };

#[test]
fn resnet34_logits_match_torchvision_on_the_same_weights() {
    let fx = json("resnet34_parity.json");
    let mut rng = NumpyRandom::new(7);
    let dict: StateDict = fixture_weights(&fx, &mut rng).into_iter().collect();
    let device = Device::flex();
    let model = ResNetConfig::new(10).init(&device);
    let model = load_into(model, &dict, &RESNET, &[], "fixture").unwrap();
    let worst = largest_logit_difference(&fx, &mut rng, &device, |x| model.forward(x));
    eprintln!("ResNet34 parity: largest logit difference {worst:e}");
    assert!(worst <= 1e-4, "largest logit difference {worst:e}");
}

#[test]
fn a_state_dict_that_does_not_fit_lists_every_problem() {
    let device = Device::flex();
    let model = ResNetConfig::new(10).init(&device);
    let mut dict = StateDict::new();
    dict.insert(
        "conv1.weight".into(),
        NamedTensor {
            shape: vec![64, 3, 3, 3],
            data: vec![0.0; 64 * 27],
        },
    );
    dict.insert(
        "head.weight".into(),
        NamedTensor {
            shape: vec![2],
            data: vec![0.0; 2],
        },
    );
    let message = load_into(model, &dict, &RESNET, &[], "bad.pth")
        .expect_err("mismatch")
        .to_string();
    assert!(
        message.starts_with("bad.pth: the weights do not fit"),
        "{message}"
    );
    assert!(
        message.contains("conv1.weight: the file has [64, 3, 3, 3], the model needs [64, 3, 7, 7]"),
        "{message}"
    );
    assert!(
        message.contains("unexpected (1):\n    head.weight [2]"),
        "{message}"
    );
    assert!(
        message.contains("layer4.2.bn2.running_var [512]"),
        "{message}"
    );
    assert!(message.contains("fc.weight [10, 512]"), "{message}");
    assert!(message.contains("downsample.1.weight"), "{message}");
}

#[test]
fn pth_and_safetensors_files_read_as_torch_wrote_them() {
    let want = json("small_state_dict.json");
    for file in [
        "small_state_dict.pth",
        "small_state_dict.safetensors",
        "small_state_dict_legacy.pth",
        "small_state_dict_legacy.zip",
    ] {
        let dict = read_state_dict(&fixture(file)).unwrap();
        assert_eq!(dict.len(), 4, "{file}");
        for (name, t) in want.as_object().unwrap() {
            let got = &dict[name];
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let data: Vec<f32> = t["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(got.shape, shape, "{file}: {name}");
            assert_eq!(got.data, data, "{file}: {name}");
        }
    }
}

#[test]
fn a_truncated_legacy_pth_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("small_state_dict_legacy.pth")).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let err = read_state_dict(&cut).unwrap_err().to_string();
    assert!(
        err.contains("cut.pth") && err.contains("ends early"),
        "{err}"
    );
}

#[test]
fn a_pth_whose_pickle_calls_anything_else_is_refused() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("nabla-evil-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("evil.pth");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    zip.start_file("archive/data.pkl", zip::write::SimpleFileOptions::default())
        .unwrap();
    // An object whose __reduce__ is (os.system, ("echo pwned",)), as pickle writes it.
    zip.write_all(b"\x80\x02cposix\nsystem\nq\x00X\n\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.")
        .unwrap();
    zip.finish().unwrap();
    let message = read_state_dict(&path).expect_err("refused").to_string();
    assert!(
        message.contains("refused") && message.contains("posix.system"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A torchvision-style ResNet34 state dict with a 10-class head, written
/// as safetensors; returns the path and the values of `conv1.weight`.
fn pretrained_file(dir: &std::path::Path) -> (PathBuf, Vec<f32>) {
    let weights = fixture_weights(&json("resnet34_parity.json"), &mut NumpyRandom::new(7));
    let conv1 = weights
        .iter()
        .find(|(name, _)| name == "conv1.weight")
        .map(|(_, t)| t.data.clone())
        .unwrap();
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .into_iter()
        .map(|(name, t)| {
            let bytes = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name, t.shape, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let path = dir.join("resnet34.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    (path, conv1)
}

#[test]
fn resnet34_trains_from_scratch_and_from_pretrained_weights_with_a_new_head() {
    use burn::module::Module;
    use nabla_vision::model::{Architecture, ModelConfig, Network};
    use nabla_vision::train::{ImageSet, Normalization, Trainer, VisionTrainConfig};
    let dir = std::env::temp_dir().join(format!("nabla-resnet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (file, conv1) = pretrained_file(&dir);
    let mut rng = NumpyRandom::new(3);
    let set = ImageSet {
        size: 32,
        pixels: (0..8)
            .map(|i| {
                (0..32 * 32 * 3)
                    .map(|_| (rng.below(80) + if i % 2 == 0 { 0 } else { 150 }) as u8)
                    .collect()
            })
            .collect(),
        labels: (0..8).map(|i| i % 2).collect(),
        normalization: Normalization::ImageNet,
    };
    let device = Device::flex().autodiff();
    for pretrained in [None, Some(file.clone())] {
        let model = ModelConfig::new(Architecture::ResNet34, 2)
            .with_image_size(32)
            .with_imagenet_normalization(true);
        let config = VisionTrainConfig {
            batch_size: 4,
            seed: 1,
            pretrained: pretrained.clone(),
            ..VisionTrainConfig::plain(model)
        };
        let mut trainer = Trainer::new(config, &device).unwrap();
        let Network::ResNet(resnet) = trainer.model() else {
            panic!("not a ResNet")
        };
        assert_eq!(resnet.fc.weight.dims(), [512, 2], "a new two-class head");
        let first: Vec<f32> = resnet
            .conv1
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap();
        assert_eq!(first == conv1, pretrained.is_some());
        let record = trainer
            .run_epoch(&set, &set, &device, &mut |_, _| {})
            .unwrap();
        assert!(record.train_loss.is_finite() && record.val_loss.is_finite());
        // torchvision's resnet34(num_classes=2) has 21,285,698 parameters;
        // Burn also counts BatchNorm's running mean and variance (2 × 8,512).
        assert_eq!(trainer.model().num_params(), 21_285_698 + 2 * 8_512);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
