//! Training and evaluating the CNNs on decoded images.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use nabla_dense::NumpyRandom;

use crate::model::{Cnn, CnnConfig};
use crate::VisionError;

/// Square RGB images (row-major, channels last) with their labels.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    pub size: usize,
    pub pixels: Vec<Vec<u8>>,
    pub labels: Vec<usize>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images at `rows` as a `[n, 3, size, size]` tensor scaled to [−1, 1],
    /// each mirrored left–right where `flip` says so.
    fn batch(&self, rows: &[usize], flip: &[bool], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let s = self.size;
        let mut data = vec![0f32; rows.len() * 3 * s * s];
        for (b, (&r, &mirror)) in rows.iter().zip(flip).enumerate() {
            let img = &self.pixels[r];
            for y in 0..s {
                for x in 0..s {
                    let sx = if mirror { s - 1 - x } else { x };
                    for c in 0..3 {
                        let v = f32::from(img[(y * s + sx) * 3 + c]);
                        data[((b * 3 + c) * s + y) * s + x] = v / 127.5 - 1.0;
                    }
                }
            }
        }
        let images = Tensor::<4>::from_data(TensorData::new(data, [rows.len(), 3, s, s]), device);
        let labels: Vec<i64> = rows.iter().map(|&r| self.labels[r] as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [rows.len()]), device);
        (images, labels)
    }
}

/// The optimizers of `nabla vision train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VisionOptimizer {
    Sgd,
    Momentum,
    Nesterov,
    Adam,
}

impl std::str::FromStr for VisionOptimizer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sgd" => Ok(Self::Sgd),
            "momentum" => Ok(Self::Momentum),
            "nesterov" => Ok(Self::Nesterov),
            "adam" => Ok(Self::Adam),
            _ => Err(format!(
                "unknown optimizer `{s}`; expected sgd, momentum, nesterov or adam"
            )),
        }
    }
}

/// Everything a run needs besides the data.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VisionTrainConfig {
    #[serde(skip)]
    pub model: CnnConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: VisionOptimizer,
    /// ρ for momentum and Nesterov.
    pub momentum: f64,
    pub seed: u32,
    /// Random horizontal flips of training images.
    pub flip: bool,
}

/// One epoch's numbers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

/// Loss, accuracy and confusion matrix (rows true class, columns predicted).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub confusion: Vec<Vec<usize>>,
}

/// Mean loss and accuracy of `model` (in evaluation mode) on `set`.
pub fn evaluate(
    model: &Cnn,
    set: &ImageSet,
    classes: usize,
    batch_size: usize,
    device: &Device,
) -> Evaluation {
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut confusion = vec![vec![0; classes]; classes];
    let mut total = 0.0;
    let rows: Vec<usize> = (0..set.len()).collect();
    for chunk in rows.chunks(batch_size.max(1)) {
        let (images, labels) = set.batch(chunk, &vec![false; chunk.len()], device);
        let logits = model.forward(images);
        let loss: f32 = loss_fn.forward(logits.clone(), labels).into_scalar();
        total += f64::from(loss) * chunk.len() as f64;
        let predicted = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("i64 data");
        for (&r, p) in chunk.iter().zip(predicted) {
            confusion[set.labels[r]][p as usize] += 1;
        }
    }
    let n = set.len().max(1) as f64;
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    Evaluation {
        loss: total / n,
        accuracy: correct as f64 / n,
        confusion,
    }
}

/// Trains from the seeded initialisation. `on_batch(done, total)` reports
/// progress; `on_epoch` sees each epoch's record and model.
pub fn train(
    config: &VisionTrainConfig,
    train_set: &ImageSet,
    val_set: &ImageSet,
    device: &Device,
    on_batch: &mut dyn FnMut(usize, usize),
    on_epoch: &mut dyn FnMut(&EpochRecord, &Cnn) -> Result<(), VisionError>,
) -> Result<(Cnn, Vec<EpochRecord>), VisionError> {
    device.seed(u64::from(config.seed));
    let mut model = config.model.init(device);
    let mut optim = match config.optimizer {
        VisionOptimizer::Sgd => SgdConfig::new().init(),
        VisionOptimizer::Momentum | VisionOptimizer::Nesterov => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(config.optimizer == VisionOptimizer::Nesterov),
            ))
            .init(),
        VisionOptimizer::Adam => AdamConfig::new().init(),
    };
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut rng = NumpyRandom::new(config.seed.wrapping_add(1));
    let batch = config.batch_size.max(1);
    let mut history = Vec::new();
    for epoch in 1..=config.epochs {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        rng.shuffle(&mut order);
        let batches = order.len().div_ceil(batch);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        for (i, rows) in order.chunks(batch).enumerate() {
            let flips: Vec<bool> = rows
                .iter()
                .map(|_| config.flip && rng.random_sample() < 0.5)
                .collect();
            let (images, labels) = train_set.batch(rows, &flips, device);
            let logits = model.forward(images);
            let loss = loss_fn.forward(logits.clone(), labels.clone());
            let value: f32 = loss.clone().into_scalar();
            if !value.is_finite() {
                return Err(VisionError::Diverged {
                    epoch,
                    batch: i + 1,
                    loss: f64::from(value),
                });
            }
            let hits: i64 = logits
                .argmax(1)
                .squeeze_dim::<1>(1)
                .equal(labels)
                .int()
                .sum()
                .into_scalar();
            correct += hits as usize;
            loss_sum += f64::from(value) * rows.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.lr, model, grads);
            on_batch(i + 1, batches);
        }
        let val = evaluate(&model, val_set, config.model.classes, batch, device);
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / train_set.len().max(1) as f64,
            train_accuracy: correct as f64 / train_set.len().max(1) as f64,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&record, &model)?;
        history.push(record);
    }
    Ok((model, history))
}

/// What `eval` needs to rebuild a trained model: its configuration and class names.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    pub model: CnnConfig,
    pub classes: Vec<String>,
}

/// Writes the model's parameters to `path` (burnpack) through a temporary
/// file and a rename, so an interrupted save never leaves a torn file.
pub fn save_model(model: &Cnn, path: &std::path::Path) -> Result<(), VisionError> {
    let tmp = path.with_extension(format!("partial{}", std::process::id()));
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| VisionError::Store(format!("{}: {e:?}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Rebuilds the model described by `card` and loads its parameters from `path`.
pub fn load_model(
    card: &ModelCard,
    path: &std::path::Path,
    device: &Device,
) -> Result<Cnn, VisionError> {
    card.model.init(device).try_load_file(path).map_err(|e| {
        VisionError::Store(format!("{}: cannot load the model: {e:?}", path.display()))
    })
}
