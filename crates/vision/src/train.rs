//! Training and evaluating the CNNs on decoded images, with checkpoints that
//! let a run stop and resume to the same numbers.

use std::path::PathBuf;
use std::time::Instant;

use crate::optim::FusedAdam;
use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{Module, ParamGroup};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use nabla_dense::NumpyRandom;

use crate::augment::{Augmentation, View};
pub use crate::images::ImageSet;
use crate::metrics::ClassificationReport;
pub use crate::model::Normalization;
use crate::model::{choices, ModelConfig, Network};
use crate::schedule::{Rates, ScheduleConfig};
use crate::VisionError;

/// The optimizers of `nabla vision train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VisionOptimizer {
    Sgd,
    Momentum,
    Nesterov,
    Adam,
}

impl VisionOptimizer {
    pub const ALL: [VisionOptimizer; 4] = [
        VisionOptimizer::Sgd,
        VisionOptimizer::Momentum,
        VisionOptimizer::Nesterov,
        VisionOptimizer::Adam,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VisionOptimizer::Sgd => "sgd",
            VisionOptimizer::Momentum => "momentum",
            VisionOptimizer::Nesterov => "nesterov",
            VisionOptimizer::Adam => "adam",
        }
    }
}

impl std::str::FromStr for VisionOptimizer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let names = VisionOptimizer::ALL.map(VisionOptimizer::name);
        VisionOptimizer::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .ok_or_else(|| format!("unknown optimizer `{s}`; expected {}", choices(&names)))
    }
}

/// Everything a run needs besides the data.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct VisionTrainConfig {
    pub model: ModelConfig,
    /// Epochs in all (a resumed run counts the ones already done).
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: VisionOptimizer,
    /// ρ for momentum and Nesterov.
    pub momentum: f64,
    pub seed: u32,
    pub augmentation: Augmentation,
    /// ImageNet weights (`.pth` or `.safetensors`) that initialise
    /// everything but the new head (ResNet34, EfficientNet-Lite0).
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// Train the head only (a linear probe): the backbone stays as loaded,
    /// its features are computed once per image in evaluation mode and
    /// cached, so augmentation does not apply.
    #[serde(default)]
    pub freeze_backbone: bool,
    /// The backbone's learning rate as a multiple of `lr` (the head's), for
    /// fine-tuning pretrained weights more gently than the new head.
    #[serde(default = "one")]
    pub backbone_lr_mult: f64,
    /// The learning rate's course over the run, stepped per batch.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Stop once the validation loss has not improved for this many epochs.
    #[serde(default)]
    pub patience: Option<usize>,
    /// fastai's `fine_tune`: this many epochs with the backbone frozen (the
    /// probe on cached features), then every layer, the backbone at
    /// `backbone_lr_mult`, with the schedule started again.
    #[serde(default)]
    pub fine_tune: Option<usize>,
}

fn one() -> f64 {
    1.0
}

impl VisionTrainConfig {
    /// A plain run of `model`: one epoch of batch 32, Adam at 1e-3 (ρ 0.9
    /// for when the optimizer is changed to momentum), seed 0, and nothing
    /// else: no augmentation, pretrained weights, frozen backbone,
    /// schedule or early stopping. Set the fields that differ on top.
    pub fn plain(model: ModelConfig) -> Self {
        VisionTrainConfig {
            model,
            epochs: 1,
            batch_size: 32,
            lr: 1e-3,
            optimizer: VisionOptimizer::Adam,
            momentum: 0.9,
            seed: 0,
            augmentation: Augmentation::NONE,
            pretrained: None,
            freeze_backbone: false,
            backbone_lr_mult: 1.0,
            schedule: ScheduleConfig::default(),
            patience: None,
            fine_tune: None,
        }
    }

    pub(crate) fn optimizer(&self) -> ModuleOptimizer {
        match self.optimizer {
            VisionOptimizer::Sgd => SgdConfig::new().init(),
            VisionOptimizer::Momentum | VisionOptimizer::Nesterov => SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0)
                        .with_nesterov(self.optimizer == VisionOptimizer::Nesterov),
                ))
                .init(),
            VisionOptimizer::Adam => FusedAdam::default().init(),
        }
    }
}

/// One epoch's numbers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
    /// The head's learning rate at each training step of the epoch.
    #[serde(default)]
    pub lrs: Vec<f64>,
}

/// Loss, accuracy and confusion matrix (rows true class, columns predicted).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub confusion: Vec<Vec<usize>>,
    /// Precision, recall and F1 per class, when the class names are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<ClassificationReport>,
}

impl Evaluation {
    /// With the per-class scores of its confusion matrix, named.
    pub fn named(mut self, classes: &[String]) -> Self {
        self.per_class = Some(ClassificationReport::new(&self.confusion, classes));
        self
    }
}

/// Class probabilities of `model` (in evaluation mode) for every image of `set`.
pub fn predict(
    model: &Network,
    set: &ImageSet,
    batch_size: usize,
    device: &Device,
) -> Vec<Vec<f32>> {
    predict_view(model, set, batch_size, device, View::identity(set.size))
}

/// Class probabilities with test-time augmentation: the mean of the
/// image's and its mirror's (the one view every training run also saw).
pub fn predict_tta(
    model: &Network,
    set: &ImageSet,
    batch_size: usize,
    device: &Device,
) -> Vec<Vec<f32>> {
    let plain = predict(model, set, batch_size, device);
    let mirror = View {
        flip: true,
        ..View::identity(set.size)
    };
    let mirrored = predict_view(model, set, batch_size, device, mirror);
    plain
        .into_iter()
        .zip(mirrored)
        .map(|(a, b)| a.iter().zip(&b).map(|(x, y)| 0.5 * (x + y)).collect())
        .collect()
}

fn predict_view(
    model: &Network,
    set: &ImageSet,
    batch_size: usize,
    device: &Device,
    view: View,
) -> Vec<Vec<f32>> {
    let model = model.valid();
    let rows: Vec<usize> = (0..set.len()).collect();
    let mut out = Vec::with_capacity(set.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let views = vec![view; chunk.len()];
        let (images, _) = set.batch(chunk, &views, device);
        let probs = burn::tensor::activation::softmax(model.forward(images), 1);
        let classes = probs.dims()[1];
        let flat = probs
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 data");
        out.extend(flat.chunks(classes).map(<[f32]>::to_vec));
    }
    out
}

/// The index of the largest of `probabilities` (the last on ties, as
/// `Iterator::max_by` picks; 0 when empty).
pub fn most_probable(probabilities: &[f32]) -> usize {
    (0..probabilities.len())
        .max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]))
        .unwrap_or(0)
}

/// Mean loss and accuracy of `model` (in evaluation mode) on `set`.
pub fn evaluate(
    model: &Network,
    set: &ImageSet,
    classes: usize,
    batch_size: usize,
    device: &Device,
) -> Evaluation {
    scores(&predict(model, set, batch_size, device), set, classes)
}

/// Loss, accuracy and confusion matrix of class probabilities `probs` of `set`.
pub fn scores(probs: &[Vec<f32>], set: &ImageSet, classes: usize) -> Evaluation {
    let mut confusion = vec![vec![0; classes]; classes];
    let mut total = 0.0;
    for (p, &label) in probs.iter().zip(&set.labels) {
        // Cross-entropy from the probabilities, floored so that a confident
        // mistake costs a large finite loss rather than infinity.
        total -= f64::from(p[label]).max(1e-30).ln();
        confusion[label][most_probable(p)] += 1;
    }
    let n = set.len().max(1) as f64;
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    Evaluation {
        loss: total / n,
        accuracy: correct as f64 / n,
        confusion,
        per_class: None,
    }
}

/// A training run in progress: model, optimizer state and the epochs so far.
/// Every epoch draws its shuffling, augmentation and dropout from seeds
/// derived from (seed, epoch), so the random state at an epoch boundary is a
/// function of those two numbers, and a resumed run repeats an uninterrupted
/// one exactly.
pub struct Trainer {
    pub config: VisionTrainConfig,
    pub(crate) model: Option<Network>,
    pub(crate) optim: ModuleOptimizer,
    pub history: Vec<EpochRecord>,
    /// With a frozen backbone: its features of the training and validation
    /// images, computed at the first epoch of this process.
    pub(crate) features: Option<(Features, Features)>,
}

/// Backbone features of a set of images, row-major `[n, dim]`.
pub(crate) struct Features {
    pub(crate) data: Vec<f32>,
    pub(crate) dim: usize,
}

impl Features {
    pub(crate) fn rows(&self, rows: &[usize], device: &Device) -> Tensor<2> {
        let mut data = Vec::with_capacity(rows.len() * self.dim);
        for &r in rows {
            data.extend_from_slice(&self.data[r * self.dim..(r + 1) * self.dim]);
        }
        Tensor::from_data(TensorData::new(data, [rows.len(), self.dim]), device)
    }
}

impl Trainer {
    /// A fresh run from the seeded initialisation, with the pretrained
    /// weights loaded when the configuration names them.
    pub fn new(config: VisionTrainConfig, device: &Device) -> Result<Self, VisionError> {
        crate::device::check_training_device(device, config.batch_size, config.model.image_size)?;
        // Drawn on the CPU, then forked: the same weights on every device.
        let mut model = config.model.init_on_cpu(config.seed, device.is_autodiff());
        if let Some(path) = &config.pretrained {
            model = crate::load::load_pretrained(model, path, true)?;
        }
        let model = model.fork(device);
        if (config.freeze_backbone || config.fine_tune.is_some()) && model.head().is_none() {
            return Err(VisionError::Store(format!(
                "{} has no backbone to freeze",
                config.model.architecture.name()
            )));
        }
        let optim = config.optimizer();
        Ok(Trainer {
            config,
            model: Some(model),
            optim,
            history: Vec::new(),
            features: None,
        })
    }

    pub fn model(&self) -> &Network {
        self.model
            .as_ref()
            .expect("the model is only taken during a step")
    }

    pub fn epochs_done(&self) -> usize {
        self.history.len()
    }

    /// The best epoch so far by validation accuracy (the first on ties).
    pub fn best(&self) -> Option<&EpochRecord> {
        self.history.iter().reduce(|a, b| {
            if b.val_accuracy > a.val_accuracy {
                b
            } else {
                a
            }
        })
    }

    /// Trains one more epoch and evaluates on `val_set`. `on_batch(done,
    /// total)` reports progress.
    pub fn run_epoch(
        &mut self,
        train_set: &ImageSet,
        val_set: &ImageSet,
        device: &Device,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> Result<EpochRecord, VisionError> {
        if self.frozen(self.history.len() + 1) {
            return self.run_probe_epoch(train_set, val_set, device, on_batch);
        }
        let epoch = self.history.len() + 1;
        let start = Instant::now();
        device.seed((u64::from(self.config.seed) << 32) | epoch as u64);
        let (mut rng, order) = self.shuffled(epoch, train_set.len());
        let batch = self.config.batch_size.max(1);
        let rates = self.learning_rates();
        let batches = order.len().div_ceil(batch);
        let head_lrs: Vec<f64> = (0..batches)
            .map(|i| self.scheduled(epoch, i, batches))
            .collect();
        let augmentation = self.config.augmentation;
        let model = self.model.take().expect("model present between epochs");
        let (model, mut tally, finished) = train_pass(
            &mut self.optim,
            model,
            &Pass {
                order: &order,
                batch,
                epoch,
            },
            device,
            &mut |i| rates.at(head_lrs[i]),
            &mut |model: &Network, rows| {
                let (images, labels) = augmented(&augmentation, &mut rng, train_set, rows, device);
                (model.forward(images), labels)
            },
            on_batch,
        );
        self.model = Some(model);
        finished?;
        tally.lrs = head_lrs;
        let val = evaluate(
            self.model(),
            val_set,
            self.config.model.classes,
            batch,
            device,
        );
        Ok(self.finish_epoch(
            epoch,
            start,
            &tally,
            train_set.len(),
            val.loss,
            val.accuracy,
        ))
    }

    /// The epoch's random stream and the training order it shuffles: both
    /// a function of (seed, epoch) alone, which is what makes a resumed run
    /// repeat an uninterrupted one.
    pub(crate) fn shuffled(&self, epoch: usize, n: usize) -> (NumpyRandom, Vec<usize>) {
        let mut rng = NumpyRandom::new(self.config.seed ^ (epoch as u32).wrapping_mul(0x9E37_79B9));
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        (rng, order)
    }

    /// Records an epoch's numbers in the history.
    pub(crate) fn finish_epoch(
        &mut self,
        epoch: usize,
        start: Instant,
        tally: &Tally,
        train_images: usize,
        val_loss: f64,
        val_accuracy: f64,
    ) -> EpochRecord {
        let n = train_images.max(1) as f64;
        let record = EpochRecord {
            epoch,
            train_loss: tally.loss_sum / n,
            train_accuracy: tally.correct as f64 / n,
            val_loss,
            val_accuracy,
            seconds: start.elapsed().as_secs_f64(),
            lrs: tally.lrs.clone(),
        };
        self.history.push(record.clone());
        record
    }

    /// The head's rate and `backbone_lr_mult` times it for everything else.
    pub(crate) fn learning_rates(&self) -> Rates {
        Rates {
            head: self
                .model()
                .head()
                .map(|head| ParamGroup::ids_from_module(head.clone())),
            backbone_mult: self.config.backbone_lr_mult,
        }
    }

    /// Whether `epoch` trains the head alone on frozen features.
    fn frozen(&self, epoch: usize) -> bool {
        self.config.freeze_backbone || self.config.fine_tune.is_some_and(|n| epoch <= n)
    }

    /// The head's learning rate at batch `batch` of `batches` in `epoch`:
    /// the schedule runs over the whole run, or with `fine_tune` over each
    /// of its two phases.
    pub(crate) fn scheduled(&self, epoch: usize, batch: usize, batches: usize) -> f64 {
        let epochs = self.config.epochs.max(epoch);
        let (first, length) = match self.config.fine_tune {
            Some(n) if epoch <= n => (1, n),
            Some(n) => (n + 1, epochs - n),
            None => (1, epochs),
        };
        let step = (epoch - first) * batches + batch;
        let total = length * batches;
        self.config
            .schedule
            .rate(self.config.lr, step, total, batches)
    }
}

/// A batch's logits and labels.
type Batch = (Tensor<2>, Tensor<1, Int>);

/// The batches of one epoch: `order` cut into batches of `batch`.
pub(crate) struct Pass<'a> {
    pub(crate) order: &'a [usize],
    pub(crate) batch: usize,
    pub(crate) epoch: usize,
}

/// One epoch's training steps, for the whole network or the probe's head
/// alike: `forward` gives a batch's logits and labels, then loss, backward
/// and one optimizer step at the learning rate `lr(batch)` gives. The module comes
/// back with the steps' tally whether or not the pass finished (a
/// non-finite loss ends it).
pub(crate) fn train_pass<M: Module>(
    optim: &mut ModuleOptimizer,
    mut module: M,
    pass: &Pass,
    device: &Device,
    lr: &mut dyn FnMut(usize) -> ModuleLearningRate,
    forward: &mut dyn FnMut(&M, &[usize]) -> Batch,
    on_batch: &mut dyn FnMut(usize, usize),
) -> (M, Tally, Result<(), VisionError>) {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let batches = pass.order.len().div_ceil(pass.batch);
    let mut tally = Tally::default();
    for (i, rows) in pass.order.chunks(pass.batch).enumerate() {
        let (logits, labels) = forward(&module, rows);
        let loss = loss_fn.forward(logits.clone(), labels.clone());
        if let Err(e) = tally.add(&loss, logits, labels, pass.epoch, i + 1) {
            return (module, tally, Err(e));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &module);
        module = optim.step(lr(i), module, grads);
        on_batch(i + 1, batches);
    }
    (module, tally, Ok(()))
}

/// Running sums of an epoch's training batches.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) loss_sum: f64,
    pub(crate) correct: usize,
    /// The head's learning rate of each step.
    pub(crate) lrs: Vec<f64>,
    /// Each step's mean loss.
    pub(crate) losses: Vec<f64>,
}

impl Tally {
    /// Adds a batch's mean loss and hits; a loss that is not finite ends
    /// the run with the epoch and batch it happened in.
    fn add(
        &mut self,
        loss: &Tensor<1>,
        logits: Tensor<2>,
        labels: Tensor<1, Int>,
        epoch: usize,
        batch: usize,
    ) -> Result<(), VisionError> {
        let value: f32 = loss.clone().into_scalar();
        if !value.is_finite() {
            return Err(VisionError::Diverged {
                epoch,
                batch,
                loss: f64::from(value),
            });
        }
        let rows = labels.dims()[0];
        self.correct += hits(logits, labels);
        self.loss_sum += f64::from(value) * rows as f64;
        self.losses.push(f64::from(value));
        Ok(())
    }
}

/// The images at `rows`, each through a freshly drawn view, and their labels.
pub(crate) fn augmented(
    augmentation: &Augmentation,
    rng: &mut NumpyRandom,
    set: &ImageSet,
    rows: &[usize],
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let views: Vec<View> = rows
        .iter()
        .map(|_| augmentation.draw(rng, set.size))
        .collect();
    set.batch(rows, &views, device)
}

/// The labels of `rows` as a tensor.
pub(crate) fn labels_of(set: &ImageSet, rows: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = rows.iter().map(|&r| set.labels[r] as i64).collect();
    Tensor::from_data(TensorData::new(labels, [rows.len()]), device)
}

/// How many rows of `logits` have their largest value at the label.
pub(crate) fn hits(logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let n: i64 = logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(labels)
        .int()
        .sum()
        .into_scalar();
    n as usize
}

/// Trains `config.epochs` epochs from the seeded initialisation without
/// checkpoints; `on_epoch` sees each record.
pub fn train(
    config: &VisionTrainConfig,
    train_set: &ImageSet,
    val_set: &ImageSet,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<Trainer, VisionError> {
    let mut trainer = Trainer::new(config.clone(), device)?;
    while trainer.epochs_done() < config.epochs {
        let record = trainer.run_epoch(train_set, val_set, device, &mut |_, _| {})?;
        on_epoch(&record);
    }
    Ok(trainer)
}

/// What `eval` and `predict` need to rebuild a trained model: its
/// configuration and class names.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    pub model: ModelConfig,
    pub classes: Vec<String>,
    /// The run's identity ([`crate::identity`]); none in runs from before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}
