//! `nabla vision`: the sheet's Problem 5 — train the CNNs (ii, iii), ResNet34
//! and EfficientNet-Lite0 (iv) on an image folder, evaluate a trained model on
//! another, predict, and compare them all.

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;
use clap::{Args, Subcommand};
use nabla_dense::data::stratified_indices;
use nabla_vision::augment::Augmentation;
use nabla_vision::decode::{decode_all, decode_resized, ImageCache, Skipped};
use nabla_vision::device::Accelerator;
use nabla_vision::folder::ImageFolder;
use nabla_vision::model::{Architecture, ModelConfig, Network};
use nabla_vision::train::{
    evaluate, load_model, most_probable, predict, save_model, EpochRecord, Evaluation, ImageSet,
    ModelCard, Trainer, VisionOptimizer, VisionTrainConfig,
};
use serde::{Deserialize, Serialize};

use crate::charts::history_charts;
use crate::output::{table, write_atomic, OutputArgs};
use crate::InputError;

#[derive(Subcommand, Debug)]
pub enum VisionCommand {
    /// Train `cnn` (the sheet's ii), `cnn-bn` (iii), `resnet34` or
    /// `efficientnet-lite0` (iv) on an image folder.
    #[command(
        after_help = "Examples:\n  nabla vision train --data data/face-mask --model cnn-bn --epochs 10 --out runs/cnn-bn\n  nabla vision train --resume runs/cnn-bn --epochs 15\n  nabla vision train --model efficientnet-lite0 --pretrained ~/.cache/nabla/weights/efficientnet-lite0.safetensors --freeze-backbone --out runs/probe"
    )]
    Train(TrainArgs),
    /// Loss, accuracy and confusion matrix of a trained model on an image folder.
    #[command(
        after_help = "Example:\n  nabla vision eval --checkpoint runs/cnn-bn --data data/face-mask"
    )]
    Eval(EvalArgs),
    /// Class and probability for each image, from a trained model.
    #[command(
        after_help = "Example:\n  nabla vision predict --checkpoint runs/cnn-bn photo1.jpg photo2.png"
    )]
    Predict(PredictArgs),
    /// Problem 5 (iv): every model from scratch and from ImageNet weights on
    /// the same split, image size and epoch budget; a table, overlaid curves
    /// and a reading of the numbers.
    Compare(crate::compare_cmd::CompareArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// An image folder: one subfolder per class.
    #[arg(long, default_value = "data/face-mask")]
    pub data: PathBuf,
    /// cnn, cnn-bn, resnet34 or efficientnet-lite0.
    #[arg(long, default_value = "cnn-bn")]
    pub model: Architecture,
    /// Epochs in all [default: 10]; with --resume, the new total.
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// sgd, momentum, nesterov or adam.
    #[arg(long, default_value = "adam")]
    pub optimizer: VisionOptimizer,
    /// ρ for momentum and Nesterov.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Side of the square images the photos are resized to.
    #[arg(long, default_value_t = 128)]
    pub image_size: usize,
    /// Fraction held out for validation, stratified by class.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Output channels of the four convolutions.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128,128")]
    pub channels: Vec<usize>,
    /// Units of the hidden dense layer.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Dropout on the first dense layer (cnn-bn).
    #[arg(long, default_value_t = 0.5)]
    pub dropout: f64,
    /// No random horizontal flips of training images.
    #[arg(long)]
    pub no_flip: bool,
    /// Random resized crops of training images keeping at least this
    /// fraction of the area (e.g. 0.5); off by default.
    #[arg(long, value_name = "MIN_SCALE")]
    pub random_crop: Option<f64>,
    /// ImageNet weights (.pth or .safetensors) for resnet34 or
    /// efficientnet-lite0 (`nabla weights download`): every layer but the new
    /// head starts from them; resnet34's inputs then use ImageNet normalisation.
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,
    /// Train the new head only (a linear probe) on backbone features
    /// computed once; augmentation does not apply.
    #[arg(long)]
    pub freeze_backbone: bool,
    /// The backbone's learning rate as a multiple of --lr (e.g. 0.1), for
    /// fine-tuning pretrained weights more gently than the new head.
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub backbone_lr_mult: f64,
    /// Stop after the first epoch whose validation accuracy reaches this
    /// fraction (e.g. 0.95), before --epochs.
    #[arg(long, value_name = "FRACTION")]
    pub target_accuracy: Option<f64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Decoded-image cache [default: ~/.cache/nabla/images].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint (its
    /// model, data and settings; only --epochs may change).
    #[arg(long, value_name = "RUN", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// cpu, cuda or wgpu (the last two need a build with that feature).
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run directory written by `nabla vision train --out`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// An image folder with the same classes.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// cpu, cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run directory written by `nabla vision train --out`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files (any format `data inspect` reads).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// cpu, cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: &VisionCommand) -> Result<()> {
    match cmd {
        VisionCommand::Train(a) => train_cmd(a),
        VisionCommand::Eval(a) => eval_cmd(a),
        VisionCommand::Predict(a) => predict_cmd(a),
        VisionCommand::Compare(a) => crate::compare_cmd::run(a),
    }
}

/// Scans, decodes (through the cache) and reports skipped files on stderr.
fn load_folder(
    dir: &Path,
    size: usize,
    cache: Option<&PathBuf>,
    quiet: bool,
) -> Result<(ImageFolder, ImageSet, Vec<Skipped>)> {
    let folder = ImageFolder::scan(dir).map_err(|e| InputError(format!("{e}")))?;
    let cache = cache.map_or_else(
        || ImageCache::default_location(dir),
        |d| ImageCache { dir: d.clone() },
    );
    let progress = crate::progress::bar(folder.files.len() as u64, quiet, "decoding");
    let decoded = decode_all(&folder.files, size as u32, Some(&cache), &|| {
        progress.inc(1)
    });
    progress.finish_and_clear();
    for s in &decoded.skipped {
        eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
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
    Ok((folder, set, decoded.skipped))
}

fn subset(set: &ImageSet, rows: &[usize]) -> ImageSet {
    ImageSet {
        size: set.size,
        normalization: set.normalization,
        pixels: rows.iter().map(|&r| set.pixels[r].clone()).collect(),
        labels: rows.iter().map(|&r| set.labels[r]).collect(),
    }
}

#[derive(Serialize)]
struct TrainReport {
    data: String,
    classes: Vec<String>,
    model: String,
    device: String,
    parameters: usize,
    train_images: usize,
    val_images: usize,
    duplicates_removed: usize,
    skipped: Vec<Skipped>,
    config: VisionTrainConfig,
    resumed_from_epoch: Option<usize>,
    /// Seconds from the start of the command to the end of the last epoch,
    /// decoding included.
    wall_seconds: f64,
    history: Vec<EpochRecord>,
    best_epoch: usize,
    final_validation: Evaluation,
}

/// What a run directory needs besides its checkpoint to be resumed: where
/// the data is and how it was split.
#[derive(Serialize, Deserialize)]
struct RunSpec {
    data: PathBuf,
    val_fraction: f64,
    cache: Option<PathBuf>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError(format!("cannot read {}: {e}", path.display())))?;
    Ok(serde_json::from_str(&text).map_err(|e| InputError(format!("{}: {e}", path.display())))?)
}

fn new_run(a: &TrainArgs) -> Result<(VisionTrainConfig, RunSpec)> {
    let backbone = a.model.has_backbone();
    if !backbone && (a.image_size < 16 || !a.image_size.is_multiple_of(16)) {
        return Err(
            InputError("--image-size must be a multiple of 16 (four 2×2 poolings)".into()).into(),
        );
    }
    if backbone && a.image_size < 32 {
        return Err(InputError(format!(
            "--image-size must be at least 32 for {}",
            a.model.name()
        ))
        .into());
    }
    if !backbone && (a.pretrained.is_some() || a.freeze_backbone || a.backbone_lr_mult != 1.0) {
        return Err(InputError(
            "--pretrained, --freeze-backbone and --backbone-lr-mult need --model resnet34 or efficientnet-lite0"
                .into(),
        )
        .into());
    }
    if a.freeze_backbone && (a.random_crop.is_some() || a.backbone_lr_mult != 1.0) {
        return Err(InputError(
            "--freeze-backbone trains the head on features computed once: it takes neither \
             --random-crop nor --backbone-lr-mult"
                .into(),
        )
        .into());
    }
    if a.freeze_backbone && a.pretrained.is_none() {
        return Err(InputError(
            "--freeze-backbone needs --pretrained: a random backbone's features are no use".into(),
        )
        .into());
    }
    if !(a.backbone_lr_mult >= 0.0 && a.backbone_lr_mult.is_finite()) {
        return Err(InputError("--backbone-lr-mult must be a number ≥ 0".into()).into());
    }
    let channels: [usize; 4] = a
        .channels
        .clone()
        .try_into()
        .map_err(|_| InputError("--channels takes four numbers, e.g. 32,64,128,128".into()))?;
    let epochs = a.epochs.unwrap_or(10);
    let valid = a.val_fraction > 0.0
        && a.val_fraction < 1.0
        && a.lr > 0.0
        && a.lr.is_finite()
        && epochs > 0
        && a.random_crop.is_none_or(|s| s > 0.0 && s <= 1.0);
    if !valid {
        return Err(InputError(
            "--val-fraction must be in (0, 1), --lr positive, --epochs at least 1, \
             --random-crop in (0, 1]"
                .into(),
        )
        .into());
    }
    let config = VisionTrainConfig {
        model: ModelConfig::new(a.model, 0)
            .with_image_size(a.image_size)
            .with_channels(channels)
            .with_hidden(a.hidden)
            .with_dropout(a.dropout)
            .with_imagenet_normalization(a.pretrained.is_some()),
        epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        optimizer: a.optimizer,
        momentum: a.momentum,
        seed: a.seed,
        augmentation: if a.freeze_backbone {
            Augmentation::NONE
        } else {
            Augmentation {
                flip: !a.no_flip,
                crop_min_scale: a.random_crop,
            }
        },
        pretrained: a.pretrained.clone(),
        freeze_backbone: a.freeze_backbone,
        backbone_lr_mult: a.backbone_lr_mult,
    };
    let spec = RunSpec {
        data: a.data.clone(),
        val_fraction: a.val_fraction,
        cache: a.cache.clone(),
    };
    Ok((config, spec))
}

fn train_cmd(a: &TrainArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let device = a.device.device().map_err(InputError)?.autodiff();
    let quiet = a.output.json;
    let mut output = a.output.clone();
    // A resumed run brings its trainer; a new one is built once the folder
    // is scanned (the scan reads every file to find duplicates, so once only).
    let (resumed, spec, mut config) = match &a.resume {
        Some(run) => {
            let spec: RunSpec = read_json(&run.join("run.json"))?;
            let mut trainer =
                Trainer::resume(run, &device).map_err(|e| InputError(e.to_string()))?;
            if let Some(epochs) = a.epochs {
                trainer.config.epochs = epochs;
            }
            output.out = Some(run.clone());
            let config = trainer.config.clone();
            (Some(trainer), spec, config)
        }
        None => {
            let (config, spec) = new_run(a)?;
            (None, spec, config)
        }
    };
    let resumed_from = resumed.as_ref().map(Trainer::epochs_done);
    let (folder, mut all, skipped) = load_folder(
        &spec.data,
        config.model.image_size,
        spec.cache.as_ref(),
        quiet,
    )?;
    all.normalization = config.model.normalization();
    let mut trainer = match resumed {
        Some(trainer) => trainer,
        None => {
            config.model.classes = folder.classes.len();
            Trainer::new(config.clone(), &device).map_err(|e| InputError(e.to_string()))?
        }
    };
    if folder.classes.len() != config.model.classes {
        return Err(InputError(format!(
            "{} has {} classes, the run was started with {}",
            spec.data.display(),
            folder.classes.len(),
            config.model.classes
        ))
        .into());
    }
    let (train_rows, val_rows) = stratified_indices(
        &all.labels,
        folder.classes.len(),
        spec.val_fraction,
        config.seed,
    );
    let (train_set, val_set) = (subset(&all, &train_rows), subset(&all, &val_rows));
    let card = ModelCard {
        model: config.model.clone(),
        classes: folder.classes.clone(),
    };
    let name = config.model.architecture.name();
    if let Some(dir) = &output.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| InputError(format!("cannot create {}: {e}", dir.display())))?;
        write_atomic(
            &dir.join("model.json"),
            serde_json::to_string_pretty(&card)?.as_bytes(),
        )?;
        write_atomic(
            &dir.join("run.json"),
            serde_json::to_string_pretty(&spec)?.as_bytes(),
        )?;
    }
    let bar = crate::progress::bar(0, quiet, name);
    while trainer.epochs_done() < config.epochs {
        let record = trainer
            .run_epoch(&train_set, &val_set, &device, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .map_err(|e| InputError(e.to_string()))?;
        let line = format!(
            "epoch {:>3}/{}: train loss {:.4} acc {:.2}% | val loss {:.4} acc {:.2}% ({:.0} s)",
            record.epoch,
            config.epochs,
            record.train_loss,
            100.0 * record.train_accuracy,
            record.val_loss,
            100.0 * record.val_accuracy,
            record.seconds
        );
        // Plain lines when there is no progress bar (no terminal), none with --json.
        if !bar.is_hidden() {
            bar.println(line);
        } else if !quiet {
            eprintln!("{line}");
        }
        if let Some(dir) = &output.out {
            trainer
                .save_checkpoint(dir)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if trainer.best().map(|b| b.epoch) == Some(record.epoch) {
                save_model(trainer.model(), &dir.join("best.bpk"))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            write_metrics(dir, &trainer.history)?;
        }
        if a.target_accuracy.is_some_and(|t| record.val_accuracy >= t) {
            break;
        }
    }
    bar.finish_and_clear();
    let wall_seconds = started.elapsed().as_secs_f64();
    let final_validation = evaluate(
        trainer.model(),
        &val_set,
        folder.classes.len(),
        config.batch_size,
        &device,
    );
    let report = TrainReport {
        data: spec.data.display().to_string(),
        classes: folder.classes.clone(),
        model: name.to_string(),
        device: a.device.name().to_string(),
        parameters: trainer.model().num_params(),
        train_images: train_set.len(),
        val_images: val_set.len(),
        duplicates_removed: folder.duplicate_groups.iter().map(|g| g.len() - 1).sum(),
        skipped,
        config,
        resumed_from_epoch: resumed_from,
        wall_seconds,
        best_epoch: trainer.best().map_or(0, |b| b.epoch),
        history: trainer.history.clone(),
        final_validation,
    };
    if output.out.is_some() {
        write_plots(&output, &report.history, name)?;
        output.write_file(
            "train.json",
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
    }
    if output.json {
        return OutputArgs::print_json(&report);
    }
    println!(
        "{} on {}: {} train / {} validation images ({} duplicates removed, {} skipped), {} parameters",
        report.model,
        report.data,
        report.train_images,
        report.val_images,
        report.duplicates_removed,
        report.skipped.len(),
        report.parameters
    );
    print_confusion(&report.classes, &report.final_validation);
    println!("best validation accuracy in epoch {}", report.best_epoch);
    Ok(())
}

fn write_metrics(dir: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "seconds",
    ])?;
    for r in history {
        csv.write_record([
            r.epoch.to_string(),
            format!("{:e}", r.train_loss),
            format!("{:e}", r.train_accuracy),
            format!("{:e}", r.val_loss),
            format!("{:e}", r.val_accuracy),
            format!("{:.3}", r.seconds),
        ])?;
    }
    write_atomic(&dir.join("metrics.csv"), &csv.into_inner()?)
}

fn write_plots(out: &OutputArgs, history: &[EpochRecord], name: &str) -> Result<()> {
    for (file, svg) in history_charts(name, &[("", history)])? {
        out.write_file(file, svg.as_bytes())?;
    }
    Ok(())
}

fn print_confusion(classes: &[String], eval: &Evaluation) {
    println!(
        "validation: loss {:.4}, accuracy {:.2}%",
        eval.loss,
        100.0 * eval.accuracy
    );
    let mut headers = vec!["true \\ predicted".to_string()];
    headers.extend(classes.iter().cloned());
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = classes
        .iter()
        .zip(&eval.confusion)
        .map(|(c, row)| {
            std::iter::once(c.clone())
                .chain(row.iter().map(usize::to_string))
                .collect()
        })
        .collect();
    print!("{}", table(&header_refs, &rows));
}

/// The model card and best weights of a run directory.
fn load_run(run: &Path, device: &Device) -> Result<(ModelCard, Network)> {
    let card: ModelCard = read_json(&run.join("model.json"))?;
    let model =
        load_model(&card, &run.join("best.bpk"), device).map_err(|e| InputError(e.to_string()))?;
    Ok((card, model))
}

fn eval_cmd(a: &EvalArgs) -> Result<()> {
    let device = a.device.device().map_err(InputError)?;
    let (card, model) = load_run(&a.checkpoint, &device)?;
    let (folder, mut set, _) = load_folder(&a.data, card.model.image_size, None, a.json)?;
    set.normalization = card.model.normalization();
    if folder.classes != card.classes {
        return Err(InputError(format!(
            "{} has classes {:?}, the model was trained on {:?}",
            a.data.display(),
            folder.classes,
            card.classes
        ))
        .into());
    }
    let eval = evaluate(&model, &set, card.classes.len(), a.batch_size, &device);
    if a.json {
        return OutputArgs::print_json(&eval);
    }
    println!("{} images of {}", set.len(), a.data.display());
    print_confusion(&card.classes, &eval);
    Ok(())
}

#[derive(Serialize)]
struct Prediction {
    image: String,
    class: String,
    probability: f32,
    probabilities: Vec<f32>,
}

fn predict_cmd(a: &PredictArgs) -> Result<()> {
    let device = a.device.device().map_err(InputError)?;
    let (card, model) = load_run(&a.checkpoint, &device)?;
    let size = card.model.image_size;
    let mut set = ImageSet {
        size,
        normalization: card.model.normalization(),
        ..ImageSet::default()
    };
    let mut names = Vec::new();
    let mut failed = Vec::new();
    for path in &a.images {
        match decode_resized(path, size as u32) {
            Ok(pixels) => {
                set.pixels.push(pixels);
                set.labels.push(0);
                names.push(path.display().to_string());
            }
            Err(reason) => failed.push(format!("{}: {reason}", path.display())),
        }
    }
    let probs = predict(&model, &set, 32, &device);
    let predictions: Vec<Prediction> = names
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
    if a.json {
        OutputArgs::print_json(&predictions)?;
    } else {
        let rows: Vec<Vec<String>> = predictions
            .iter()
            .map(|p| {
                vec![
                    p.image.clone(),
                    p.class.clone(),
                    format!("{:.4}", p.probability),
                ]
            })
            .collect();
        print!("{}", table(&["image", "class", "probability"], &rows));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(InputError(format!("cannot read {}", failed.join("; "))).into())
    }
}
