//! Decoded images as the networks take them.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::augment::{render, View};
use crate::model::Normalization;

/// Square RGB images (row-major, channels last) with their labels.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    pub size: usize,
    pub pixels: Vec<Vec<u8>>,
    pub labels: Vec<usize>,
    /// How pixels become the model's input.
    pub normalization: Normalization,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images at `rows`, in that order.
    pub fn subset(&self, rows: &[usize]) -> ImageSet {
        ImageSet {
            size: self.size,
            normalization: self.normalization,
            pixels: rows.iter().map(|&r| self.pixels[r].clone()).collect(),
            labels: rows.iter().map(|&r| self.labels[r]).collect(),
        }
    }

    /// The images at `rows`, each seen through its view, as a
    /// `[n, 3, size, size]` tensor scaled to [−1, 1].
    pub(crate) fn batch(
        &self,
        rows: &[usize],
        views: &[View],
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let s = self.size;
        let mut data = vec![0f32; rows.len() * 3 * s * s];
        for ((&r, view), out) in rows.iter().zip(views).zip(data.chunks_mut(3 * s * s)) {
            render(&self.pixels[r], s, view, out);
            self.normalization.apply(out, s * s);
        }
        let images = Tensor::<4>::from_data(TensorData::new(data, [rows.len(), 3, s, s]), device);
        let labels: Vec<i64> = rows.iter().map(|&r| self.labels[r] as i64).collect();
        let labels = Tensor::from_data(TensorData::new(labels, [rows.len()]), device);
        (images, labels)
    }
}

/// `image` as a PNG file's bytes (the report's inline pictures, `--out`'s
/// files); encoding an image in memory does not fail.
pub(crate) fn png_bytes(image: &image::RgbImage) -> Vec<u8> {
    let mut png = Vec::new();
    let _ = image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png);
    png
}
