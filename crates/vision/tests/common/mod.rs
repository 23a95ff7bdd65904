//! Tiny generated images and a tiny CNN shared by the training tests.

use nabla_dense::NumpyRandom;
use nabla_vision::model::{Architecture, ModelConfig};
use nabla_vision::train::ImageSet;

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
