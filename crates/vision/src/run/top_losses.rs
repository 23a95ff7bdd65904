//! The images a model got most wrong: highest cross-entropy first, each with
//! the thumbnail the model saw, for `vision eval --out` and the report.

use std::path::PathBuf;

use burn::tensor::Device;

use super::{run_data, Progress, RunDir};
use crate::decode::Skipped;
use crate::identity::read_json;
use crate::report::{TopLoss, TrainReport};
use crate::train::{most_probable, predict, EpochRecord, ImageSet};
use crate::VisionError;

/// Images listed as the highest losses.
pub const TOP_LOSSES: usize = 16;

/// The [`TOP_LOSSES`] images of `set` with the highest cross-entropy under
/// `probs`, highest first; `file(r)` names image `r`.
pub(crate) fn top_losses(
    probs: &[Vec<f32>],
    set: &ImageSet,
    classes: &[String],
    file: impl Fn(usize) -> PathBuf,
) -> Vec<TopLoss> {
    let mut rows: Vec<usize> = (0..set.len()).collect();
    let loss = |r: usize| -f64::from(probs[r][set.labels[r]]).max(1e-30).ln();
    rows.sort_by(|&a, &b| loss(b).total_cmp(&loss(a)));
    rows.into_iter()
        .take(TOP_LOSSES)
        .map(|r| {
            let predicted = most_probable(&probs[r]);
            TopLoss {
                file: file(r),
                true_class: classes[set.labels[r]].clone(),
                predicted: classes[predicted].clone(),
                probability: probs[r][predicted],
                loss: loss(r),
                thumbnail: thumbnail(&set.pixels[r], set.size),
            }
        })
        .collect()
}

/// No progress to show (work on cached images that takes seconds).
pub struct Silent;

impl Progress for Silent {
    fn decoded(&self, _: usize) {}
    fn batch(&self, _: usize, _: usize) {}
    fn epoch(&self, _: &EpochRecord, _: usize) {}
    fn skipped(&self, _: &Skipped) {}
}

/// The highest-loss images of the validation split a finished `run` was
/// trained and validated on, under its best epoch's model, on `flex`.
pub fn validation_top_losses(run: &RunDir) -> Result<Vec<TopLoss>, VisionError> {
    let report: TrainReport = read_json(&run.path.join("train.json"))?;
    let spec = run.spec()?;
    let device = Device::flex();
    let (card, model) = run.load_best(&device)?;
    let data = run_data(&spec, &report.config, &Silent)?;
    let probs = predict(&model, &data.val, report.config.batch_size, &device);
    Ok(top_losses(&probs, &data.val, &card.classes, |r| {
        data.val_files[r].clone()
    }))
}

/// `pixels` (RGB8, `size × size`) as a PNG file's bytes.
fn thumbnail(pixels: &[u8], size: usize) -> Vec<u8> {
    image::RgbImage::from_raw(size as u32, size as u32, pixels.to_vec())
        .map_or_else(Vec::new, |image| crate::images::png_bytes(&image))
}
