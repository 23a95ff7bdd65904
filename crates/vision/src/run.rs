//! A training run as a Rust user drives it, without the binary: settings
//! checked into a configuration, the run directory that holds everything a
//! run needs to be resumed, evaluated or used, and the loop that trains into it.
//!
//! A run directory holds `model.json` (the [`ModelCard`]), `run.json` (the
//! [`RunSpec`]: where the data is and how it was split), `checkpoints/`
//! (the latest complete epoch, see [`Trainer::save_checkpoint`]),
//! `best.bpk` (the weights of the best epoch by validation accuracy) and
//! `best.json` (its epoch, checksum and run: see [`crate::identity`]),
//! `metrics.csv` (one row per epoch), `lr.csv` (the learning rate of every
//! step), and at the end `train.json`, `loss.svg`, `accuracy.svg` and `lr.svg`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use nabla_dense::data::stratified_indices;
use nabla_report::write_atomic;
use serde::Serialize;

use crate::checkpoint::{load_model, save_model};
use crate::decode::{decode_all, decode_resized, ImageCache, Skipped};
use crate::device::Accelerator;
use crate::folder::ImageFolder;
use crate::identity::{
    best_part, check_parts, file_crc, read_json, BestRecord, BEST_RECORD, BEST_WEIGHTS,
};
use crate::model::Network;
use crate::report::{
    history_charts, lr_chart, lr_table, metrics_table, Prediction, TopLoss, TrainReport,
};
pub use crate::settings::{RunSpec, TrainSettings};
use crate::train::{
    evaluate, most_probable, predict, predict_tta, scores, EpochRecord, Evaluation, ImageSet,
    ModelCard, Trainer, VisionTrainConfig,
};
use crate::VisionError;

mod lock;
mod top_losses;

pub use lock::RunLock;
use top_losses::top_losses;
pub use top_losses::{validation_top_losses, Silent, TOP_LOSSES};

/// A run directory (see the module's documentation).
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), VisionError> {
        write_into(&self.path, name, bytes)
    }

    pub fn card(&self) -> Result<ModelCard, VisionError> {
        read_json(&self.path.join("model.json"))
    }

    pub fn spec(&self) -> Result<RunSpec, VisionError> {
        read_json(&self.path.join("run.json"))
    }

    /// Whether it holds a complete checkpoint to resume from.
    pub fn has_checkpoint(&self) -> bool {
        crate::checkpoint::has_checkpoint(&self.path)
    }

    /// Whether any part of a run is there (its card, weights or checkpoints).
    pub fn holds_run(&self) -> bool {
        ["model.json", "run.json", "best.bpk", "checkpoints"]
            .iter()
            .any(|p| self.path.join(p).exists())
    }

    /// Creates the directory and writes `model.json` and `run.json`.
    fn start(&self, card: &ModelCard, spec: &RunSpec) -> Result<(), VisionError> {
        std::fs::create_dir_all(&self.path).map_err(|source| VisionError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.write("model.json", pretty(card).as_bytes())?;
        self.write("run.json", pretty(spec).as_bytes())
    }

    /// After an epoch: `best.bpk` when this epoch is the best so far,
    /// `metrics.csv`, `lr.csv`, and last the checkpoint. The checkpoint is
    /// what a resume starts from, so everything derived from the epoch is
    /// written before it: a run killed in between repeats the epoch (the
    /// same numbers) and writes them again, while the other order left a
    /// finished run with a stale `metrics.csv` and `best.bpk` (the kill
    /// test found it).
    fn record_epoch(
        &self,
        trainer: &Trainer,
        record: &EpochRecord,
        id: Option<&str>,
    ) -> Result<(), VisionError> {
        if trainer.best().map(|b| b.epoch) == Some(record.epoch) {
            let weights = self.path.join(BEST_WEIGHTS);
            save_model(trainer.model(), &weights)?;
            let best = BestRecord {
                run: id.map(String::from),
                epoch: record.epoch,
                crc32: file_crc(&weights)?,
            };
            self.write(BEST_RECORD, pretty(&best).as_bytes())?;
        }
        self.write("metrics.csv", &metrics_table(&trainer.history).to_csv())?;
        self.write("lr.csv", &lr_table(&trainer.history).to_csv())?;
        trainer.save_checkpoint(&self.path, id)?;
        Ok(())
    }

    /// At the end: `train.json`, the two history charts and `lr.svg`.
    fn finish(&self, report: &TrainReport) -> Result<(), VisionError> {
        let charts = history_charts(&report.model, &[("", &report.history)]);
        write_charts(
            &self.path,
            charts
                .into_iter()
                .chain([("lr.svg", lr_chart(&report.history))]),
        )?;
        self.write("train.json", pretty(report).as_bytes())
    }

    /// The model card and the best epoch's weights, once the run's parts
    /// are checked to agree.
    pub fn load_best(&self, device: &Device) -> Result<(ModelCard, Network), VisionError> {
        let card = self.card()?;
        self.check_parts(&card)?;
        let model = load_model(&card, &self.path.join(BEST_WEIGHTS), device)?;
        Ok((card, model))
    }

    /// Whether every part of the run that names its run names the same one
    /// ([`crate::identity`]): `model.json` (given), `run.json`, `best.json`
    /// (and that `best.bpk` is the file it describes) and the latest
    /// checkpoint.
    pub fn check_parts(&self, card: &ModelCard) -> Result<(), VisionError> {
        let mut parts = vec![(self.path.join("model.json"), card.run.clone())];
        if self.path.join("run.json").exists() {
            parts.push((self.path.join("run.json"), self.spec()?.run));
        }
        match best_part(&self.path)? {
            Some(part) => parts.push(part),
            None if self.path.join(BEST_WEIGHTS).exists() => {
                parts.push((self.path.join(BEST_WEIGHTS), None))
            }
            None => {}
        }
        parts.extend(crate::checkpoint::latest_checkpoint_run(&self.path)?);
        check_parts(&self.path, &parts)
    }
}

/// Writes `dir/name` atomically.
pub(crate) fn write_into(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), VisionError> {
    let path = dir.join(name);
    write_atomic(&path, bytes).map_err(|source| VisionError::Io { path, source })
}

/// Writes each drawn chart as `dir/name`, or fails with the one that could not be drawn.
pub(crate) fn write_charts<'a>(
    dir: &Path,
    charts: impl IntoIterator<Item = (&'a str, Result<String, nabla_report::PlotError>)>,
) -> Result<(), VisionError> {
    for (name, svg) in charts {
        let svg = svg.map_err(|source| VisionError::Plot {
            path: dir.join(name),
            source,
        })?;
        write_into(dir, name, svg.as_bytes())?;
    }
    Ok(())
}

fn pretty(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).expect("plain data serialises")
}

/// How a training run reports what it is doing.
pub trait Progress: Sync {
    /// One more image decoded, of `total`.
    fn decoded(&self, total: usize);
    /// `done` of `total` batches of the current epoch.
    fn batch(&self, done: usize, total: usize);
    /// An epoch finished, of `epochs`.
    fn epoch(&self, record: &EpochRecord, epochs: usize);
    /// A file of the folder could not be read and is left out.
    fn skipped(&self, file: &Skipped);
}

/// Why training should stop before its last epoch: the validation loss has
/// not improved on its best for `patience` epochs.
pub fn early_stop(history: &[EpochRecord], patience: Option<usize>) -> Option<String> {
    let patience = patience?;
    let best = history
        .iter()
        .reduce(|a, b| if b.val_loss < a.val_loss { b } else { a })?;
    let last = history.last()?;
    (last.epoch - best.epoch >= patience).then(|| {
        format!(
            "stopped after epoch {}: the validation loss has not improved on epoch {}'s {:.4} for {patience} epochs (--patience {patience})",
            last.epoch, best.epoch, best.val_loss
        )
    })
}

/// An image folder decoded for a model: the set's row `r` is the folder's
/// file `files[r]`; the files it could not read are listed, not fatal.
pub struct Loaded {
    pub folder: ImageFolder,
    pub set: ImageSet,
    pub skipped: Vec<Skipped>,
    pub files: Vec<usize>,
}

/// Scans and decodes (through the cache) an image folder for a model of
/// `size` pixels.
pub fn load_folder(
    dir: &Path,
    size: usize,
    cache: Option<&PathBuf>,
    progress: &dyn Progress,
) -> Result<Loaded, VisionError> {
    let folder = ImageFolder::scan(dir)?;
    let cache = cache.map_or_else(
        || ImageCache::default_location(dir),
        |d| ImageCache { dir: d.clone() },
    );
    let total = folder.files.len();
    let decoded = decode_all(&folder.files, size as u32, Some(&cache), &|| {
        progress.decoded(total)
    });
    for s in &decoded.skipped {
        progress.skipped(s);
    }
    let set = ImageSet {
        size,
        labels: decoded
            .indices
            .iter()
            .map(|&i| folder.files[i].class)
            .collect(),
        pixels: decoded.pixels,
        normalization: Default::default(),
    };
    Ok(Loaded {
        folder,
        set,
        skipped: decoded.skipped,
        files: decoded.indices,
    })
}

/// A run's data: its folder decoded for the model, split into training and
/// validation images (stratified by class, seeded by the run's seed).
pub(crate) struct RunData {
    pub(crate) folder: ImageFolder,
    pub(crate) skipped: Vec<Skipped>,
    pub(crate) train: ImageSet,
    pub(crate) val: ImageSet,
    /// The file of each validation image.
    pub(crate) val_files: Vec<PathBuf>,
}

pub(crate) fn run_data(
    spec: &RunSpec,
    config: &VisionTrainConfig,
    progress: &dyn Progress,
) -> Result<RunData, VisionError> {
    let Loaded {
        folder,
        set: mut all,
        skipped,
        files,
    } = load_folder(
        &spec.data,
        config.model.image_size,
        spec.cache.as_ref(),
        progress,
    )?;
    all.normalization = config.model.normalization();
    let (train_rows, val_rows) = stratified_indices(
        &all.labels,
        folder.classes.len(),
        spec.val_fraction,
        config.seed,
    );
    Ok(RunData {
        train: all.subset(&train_rows),
        val: all.subset(&val_rows),
        val_files: val_rows
            .iter()
            .map(|&r| folder.files[files[r]].path.clone())
            .collect(),
        folder,
        skipped,
    })
}

/// How a training run begins.
pub enum Start {
    /// A fresh run from these settings, into a directory that holds no run.
    New(Box<TrainSettings>),
    /// A fresh run that replaces the run its directory holds, if any.
    Replace(Box<TrainSettings>),
    /// The run in this directory from its latest checkpoint, with a new
    /// total of epochs if given.
    Resume { epochs: Option<usize> },
}

/// Trains a run to its epoch total (or until validation accuracy reaches
/// `target_accuracy`), writing every epoch into `out` when given (a resumed
/// run writes into its own directory, which `out` must then be), and
/// evaluates the final model on the validation split.
pub fn train_run(
    start: Start,
    out: Option<&RunDir>,
    accelerator: Accelerator,
    target_accuracy: Option<f64>,
    progress: &dyn Progress,
) -> Result<TrainReport, VisionError> {
    let started = Instant::now();
    let device = accelerator.device().map_err(VisionError::Setup)?.autodiff();
    // A resumed run brings its trainer; a new one is built once the folder
    // is scanned (the scan reads every file to find duplicates, so once only).
    // One writer per run directory, and never two runs mixed in one.
    let mut _lock = None;
    let (resumed, spec, mut config) = match start {
        Start::Resume { epochs } => {
            let dir =
                out.ok_or_else(|| VisionError::Setup("resuming needs the run directory".into()))?;
            _lock = Some(dir.lock()?);
            let spec = dir.spec()?;
            dir.check_parts(&dir.card()?)?;
            let mut trainer = Trainer::resume(&dir.path, &device)?;
            if let Some(epochs) = epochs {
                trainer.config.epochs = epochs;
            }
            let config = trainer.config.clone();
            (Some(trainer), spec, config)
        }
        Start::New(settings) => {
            let (config, spec) = settings.validate()?;
            _lock = out.map(|dir| dir.take_for_new_run(false)).transpose()?;
            (None, spec, config)
        }
        Start::Replace(settings) => {
            let (config, spec) = settings.validate()?;
            _lock = out.map(|dir| dir.take_for_new_run(true)).transpose()?;
            (None, spec, config)
        }
    };
    let resumed_from = resumed.as_ref().map(Trainer::epochs_done);
    let RunData {
        folder,
        skipped,
        train: train_set,
        val: val_set,
        ..
    } = run_data(&spec, &config, progress)?;
    let mut trainer = match resumed {
        Some(trainer) => trainer,
        None => {
            config.model.classes = folder.classes.len();
            Trainer::new(config.clone(), &device)?
        }
    };
    if folder.classes.len() != config.model.classes {
        return Err(VisionError::Layout {
            path: spec.data.clone(),
            message: format!(
                "{} classes, the run was started with {}",
                folder.classes.len(),
                config.model.classes
            ),
        });
    }
    let card = ModelCard {
        model: config.model.clone(),
        classes: folder.classes.clone(),
        run: spec.run.clone(),
    };
    if let Some(dir) = out {
        dir.start(&card, &spec)?;
    }
    let mut stopped = early_stop(&trainer.history, config.patience);
    while trainer.epochs_done() < config.epochs && stopped.is_none() {
        let record = trainer.run_epoch(&train_set, &val_set, &device, &mut |done, total| {
            progress.batch(done, total)
        })?;
        progress.epoch(&record, config.epochs);
        if let Some(dir) = out {
            dir.record_epoch(&trainer, &record, spec.run.as_deref())?;
        }
        stopped = early_stop(&trainer.history, config.patience);
        if let Some(t) = target_accuracy.filter(|&t| record.val_accuracy >= t) {
            stopped = Some(format!(
                "validation accuracy {:.2}% reached the target {:.2}% in epoch {}",
                100.0 * record.val_accuracy,
                100.0 * t,
                record.epoch
            ));
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let final_validation = evaluate(
        trainer.model(),
        &val_set,
        folder.classes.len(),
        config.batch_size,
        &device,
    )
    .named(&folder.classes);
    let report = TrainReport {
        run: spec.run.clone(),
        data: spec.data.display().to_string(),
        classes: folder.classes.clone(),
        model: config.model.architecture.name().to_string(),
        device: accelerator.name().to_string(),
        parameters: trainer.model().num_params(),
        train_images: train_set.len(),
        val_images: val_set.len(),
        duplicates_removed: folder.duplicate_groups.iter().map(|g| g.len() - 1).sum(),
        skipped,
        config,
        resumed_from_epoch: resumed_from,
        stopped_early: stopped,
        wall_seconds,
        best_epoch: trainer.best().map_or(0, |b| b.epoch),
        history: trainer.history.clone(),
        final_validation,
    };
    if let Some(dir) = out {
        dir.finish(&report)?;
    }
    Ok(report)
}

/// What `evaluate_run` found.
pub struct EvalRun {
    pub card: ModelCard,
    pub images: usize,
    pub evaluation: Evaluation,
    /// The images the model got most wrong, highest loss first.
    pub top_losses: Vec<TopLoss>,
}

/// The best model of `run` on every image of the folder `data` (decoded
/// through the cache the run was trained with); `tta` averages each
/// image's and its mirror's probabilities.
pub fn evaluate_run(
    run: &RunDir,
    data: &Path,
    batch_size: usize,
    accelerator: Accelerator,
    tta: bool,
    progress: &dyn Progress,
) -> Result<EvalRun, VisionError> {
    let device = accelerator.device().map_err(VisionError::Setup)?;
    let (card, model) = run.load_best(&device)?;
    let cache = run.spec().ok().and_then(|s| s.cache);
    let Loaded {
        folder,
        mut set,
        files,
        ..
    } = load_folder(data, card.model.image_size, cache.as_ref(), progress)?;
    set.normalization = card.model.normalization();
    if folder.classes != card.classes {
        return Err(VisionError::Layout {
            path: data.to_path_buf(),
            message: format!(
                "classes {:?}, the model was trained on {:?}",
                folder.classes, card.classes
            ),
        });
    }
    let probs = if tta {
        predict_tta(&model, &set, batch_size, &device)
    } else {
        predict(&model, &set, batch_size, &device)
    };
    let evaluation = scores(&probs, &set, card.classes.len()).named(&card.classes);
    let top_losses = top_losses(&probs, &set, &card.classes, |r| {
        folder.files[files[r]].path.clone()
    });
    Ok(EvalRun {
        images: set.len(),
        card,
        evaluation,
        top_losses,
    })
}

/// The best model of `run` on each image; the images it could not read
/// come back as `file: reason`.
pub fn predict_images(
    run: &RunDir,
    images: &[PathBuf],
    accelerator: Accelerator,
    tta: bool,
) -> Result<(Vec<Prediction>, Vec<String>), VisionError> {
    let device = accelerator.device().map_err(VisionError::Setup)?;
    let (card, model) = run.load_best(&device)?;
    let size = card.model.image_size;
    let mut set = ImageSet {
        size,
        normalization: card.model.normalization(),
        ..ImageSet::default()
    };
    let mut names = Vec::new();
    let mut failed = Vec::new();
    for path in images {
        match decode_resized(path, size as u32) {
            Ok(pixels) => {
                set.pixels.push(pixels);
                set.labels.push(0);
                names.push(path.display().to_string());
            }
            Err(reason) => failed.push(format!("{}: {reason}", path.display())),
        }
    }
    let probs = if tta {
        predict_tta(&model, &set, 32, &device)
    } else {
        predict(&model, &set, 32, &device)
    };
    let predictions = names
        .into_iter()
        .zip(probs)
        .map(|(image, p)| {
            let best = most_probable(&p);
            Prediction {
                image,
                class: card.classes[best].clone(),
                probability: p[best],
                probabilities: p,
            }
        })
        .collect();
    Ok((predictions, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(val_losses: &[f64]) -> Vec<EpochRecord> {
        val_losses
            .iter()
            .enumerate()
            .map(|(i, &val_loss)| EpochRecord {
                epoch: i + 1,
                train_loss: 0.0,
                train_accuracy: 0.0,
                val_loss,
                val_accuracy: 0.0,
                seconds: 0.0,
                lrs: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn patience_counts_epochs_since_the_best_validation_loss() {
        assert_eq!(early_stop(&history(&[0.5, 0.4, 0.45]), None), None);
        assert_eq!(early_stop(&history(&[0.5, 0.4, 0.45]), Some(2)), None);
        let why = early_stop(&history(&[0.5, 0.4, 0.45, 0.41]), Some(2)).unwrap();
        assert!(
            why.contains("after epoch 4") && why.contains("epoch 2's 0.4000"),
            "{why}"
        );
        assert_eq!(early_stop(&[], Some(1)), None);
    }
}
