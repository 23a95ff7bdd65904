//! Tiny generated images and a tiny CNN shared by the training tests.

#![allow(dead_code)] // each test binary uses its own subset

use burn::tensor::Tensor;
use nabla_dense::NumpyRandom;
use nabla_vision::model::{Architecture, ModelConfig, Network};
use nabla_vision::train::ImageSet;
use nabla_vision::train::{VisionOptimizer, VisionTrainConfig};

/// Class 0: a bright left half; class 1: a bright right half; plus noise.
pub fn synthetic(n: usize, size: usize, seed: u32) -> ImageSet {
    let mut rng = NumpyRandom::new(seed);
    let mut set = ImageSet {
        size,
        ..ImageSet::default()
    };
    for i in 0..n {
        let class = i % 2;
        let mut img = vec![0u8; size * size * 3];
        for y in 0..size {
            for x in 0..size {
                let bright = (x < size / 2) == (class == 0);
                for c in 0..3 {
                    let noise = rng.random_sample() * 60.0;
                    img[(y * size + x) * 3 + c] = (if bright { 170.0 } else { 40.0 } + noise) as u8;
                }
            }
        }
        set.pixels.push(img);
        set.labels.push(class);
    }
    set
}

pub fn tiny(architecture: Architecture) -> ModelConfig {
    ModelConfig::new(architecture, 2)
        .with_image_size(16)
        .with_channels([4, 8, 8, 8])
        .with_hidden(16)
}

/// EfficientNet-Lite0 on 32-pixel images with a two-class head.
pub fn lite0(
    freeze_backbone: bool,
    backbone_lr_mult: f64,
    optimizer: VisionOptimizer,
) -> VisionTrainConfig {
    VisionTrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 1e-2,
        optimizer,
        seed: 8,
        freeze_backbone,
        backbone_lr_mult,
        ..VisionTrainConfig::plain(
            ModelConfig::new(Architecture::EfficientNetLite0, 2).with_image_size(32),
        )
    }
}

/// A convolution's weights, a BatchNorm's running mean (both backbone) and
/// the head's matrix.
pub fn snapshot(network: &Network) -> [Vec<f32>; 3] {
    let Network::EfficientNet(m) = network else {
        panic!("not EfficientNet-Lite0");
    };
    let values = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    [
        values(m.blocks[4].depthwise_conv.weight.val().flatten(0, 3)),
        values(m.blocks[4].bn1.running_mean.value()),
        values(m.fc.weight.val().flatten(0, 1)),
    ]
}

/// Published weights as `nabla weights download MODEL` leaves them in the
/// weights folder. CI downloads them and sets NABLA_REQUIRE_PRETRAINED=1, so
/// there a missing file fails the test; elsewhere it is skipped with a note.
pub fn published_weights(file: &str, model: &str) -> Option<std::path::PathBuf> {
    let path = nabla_vision::pretrained::default_dir().join(file);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("NABLA_REQUIRE_PRETRAINED").is_none(),
        "{} is missing; run `nabla weights download {model}`",
        path.display()
    );
    eprintln!(
        "skipped: {} is missing (nabla weights download {model})",
        path.display()
    );
    None
}
