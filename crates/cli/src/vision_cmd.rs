//! `nabla vision`: the sheet's Problem 5 (ii)–(iii) — train the CNNs on an
//! image folder, evaluate a trained model on another.

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;
use clap::{Args, Subcommand};
use nabla_dense::data::stratified_indices;
use nabla_report::{line_chart, LineChart, Series};
use nabla_vision::decode::{decode_all, ImageCache, Skipped};
use nabla_vision::folder::ImageFolder;
use nabla_vision::model::{Architecture, CnnConfig};
use nabla_vision::train::{
    evaluate, load_model, save_model, train, EpochRecord, Evaluation, ImageSet, ModelCard,
    VisionOptimizer, VisionTrainConfig,
};
use serde::Serialize;

use crate::output::{table, write_atomic, OutputArgs};
use crate::InputError;

#[derive(Subcommand, Debug)]
pub enum VisionCommand {
    /// Train `cnn` (the sheet's ii) or `cnn-bn` (iii) on an image folder.
    #[command(
        after_help = "Example:\n  nabla vision train --data data/face-mask --model cnn-bn --epochs 10 --out runs/cnn-bn"
    )]
    Train(TrainArgs),
    /// Loss, accuracy and confusion matrix of a trained model on an image folder.
    #[command(
        after_help = "Example:\n  nabla vision eval --checkpoint runs/cnn-bn --data data/face-mask"
    )]
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// An image folder: one subfolder per class.
    #[arg(long, default_value = "data/face-mask")]
    pub data: PathBuf,
    /// `cnn` or `cnn-bn`.
    #[arg(long, default_value = "cnn-bn", value_parser = parse_architecture)]
    pub model: Architecture,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
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
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Decoded-image cache [default: ~/.cache/nabla/images].
    #[arg(long)]
    pub cache: Option<PathBuf>,
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
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn parse_architecture(s: &str) -> Result<Architecture, String> {
    match s {
        "cnn" => Ok(Architecture::Cnn),
        "cnn-bn" => Ok(Architecture::CnnBn),
        _ => Err(format!("unknown model `{s}`; expected cnn or cnn-bn")),
    }
}

pub fn run(cmd: &VisionCommand) -> Result<()> {
    match cmd {
        VisionCommand::Train(a) => train_cmd(a),
        VisionCommand::Eval(a) => eval_cmd(a),
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
    };
    Ok((folder, set, decoded.skipped))
}

fn subset(set: &ImageSet, rows: &[usize]) -> ImageSet {
    ImageSet {
        size: set.size,
        pixels: rows.iter().map(|&r| set.pixels[r].clone()).collect(),
        labels: rows.iter().map(|&r| set.labels[r]).collect(),
    }
}

#[derive(Serialize)]
struct TrainReport {
    data: String,
    classes: Vec<String>,
    model: String,
    parameters: usize,
    train_images: usize,
    val_images: usize,
    duplicates_removed: usize,
    skipped: Vec<Skipped>,
    config: VisionTrainConfig,
    history: Vec<EpochRecord>,
    best_epoch: usize,
    final_validation: Evaluation,
}

fn train_cmd(a: &TrainArgs) -> Result<()> {
    if a.image_size < 16 || a.image_size % 16 != 0 {
        return Err(
            InputError("--image-size must be a multiple of 16 (four 2×2 poolings)".into()).into(),
        );
    }
    let channels: [usize; 4] = a
        .channels
        .clone()
        .try_into()
        .map_err(|_| InputError("--channels takes four numbers, e.g. 32,64,128,128".into()))?;
    let valid = a.val_fraction > 0.0
        && a.val_fraction < 1.0
        && a.lr > 0.0
        && a.lr.is_finite()
        && a.epochs > 0;
    if !valid {
        return Err(InputError(
            "--val-fraction must be in (0, 1), --lr positive, --epochs at least 1".into(),
        )
        .into());
    }
    let quiet = a.output.json;
    let (folder, all, skipped) = load_folder(&a.data, a.image_size, a.cache.as_ref(), quiet)?;
    let (train_rows, val_rows) =
        stratified_indices(&all.labels, folder.classes.len(), a.val_fraction, a.seed);
    let (train_set, val_set) = (subset(&all, &train_rows), subset(&all, &val_rows));
    let model_config = CnnConfig::new(a.model, folder.classes.len())
        .with_image_size(a.image_size)
        .with_channels(channels)
        .with_hidden(a.hidden)
        .with_dropout(a.dropout);
    let config = VisionTrainConfig {
        model: model_config.clone(),
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        optimizer: a.optimizer,
        momentum: a.momentum,
        seed: a.seed,
        flip: !a.no_flip,
    };
    let device = Device::flex().autodiff();
    let card = ModelCard {
        model: model_config.clone(),
        classes: folder.classes.clone(),
    };
    if let Some(dir) = &a.output.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| InputError(format!("cannot create {}: {e}", dir.display())))?;
        write_atomic(
            &dir.join("model.json"),
            serde_json::to_string_pretty(&card)?.as_bytes(),
        )?;
    }
    let bar = crate::progress::bar(0, quiet, a.model.name());
    let mut best = (0usize, f64::NEG_INFINITY);
    let out = a.output.out.clone();
    let mut lines: Vec<EpochRecord> = Vec::new();
    let (model, history) = train(
        &config,
        &train_set,
        &val_set,
        &device,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        &mut |record, model| {
            let line = format!(
                "epoch {:>3}: train loss {:.4} acc {:.2}% | val loss {:.4} acc {:.2}% ({:.0} s)",
                record.epoch,
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
            lines.push(record.clone());
            if let Some(dir) = &out {
                save_model(model, &dir.join("last.bpk"))?;
                if record.val_accuracy > best.1 {
                    best = (record.epoch, record.val_accuracy);
                    save_model(model, &dir.join("best.bpk"))?;
                }
                write_metrics(dir, &lines)
                    .map_err(|e| nabla_vision::VisionError::Store(format!("{e:#}")))?;
            } else if record.val_accuracy > best.1 {
                best = (record.epoch, record.val_accuracy);
            }
            Ok(())
        },
    )
    .map_err(|e| InputError(e.to_string()))?;
    bar.finish_and_clear();
    let final_validation = evaluate(
        &model,
        &val_set,
        folder.classes.len(),
        a.batch_size,
        &device,
    );
    let report = TrainReport {
        data: a.data.display().to_string(),
        classes: folder.classes.clone(),
        model: a.model.name().to_string(),
        parameters: model.num_params(),
        train_images: train_set.len(),
        val_images: val_set.len(),
        duplicates_removed: folder.duplicate_groups.iter().map(|g| g.len() - 1).sum(),
        skipped,
        config,
        history,
        best_epoch: best.0,
        final_validation,
    };
    if a.output.out.is_some() {
        write_plots(&a.output, &report.history, a.model.name())?;
        a.output.write_file(
            "train.json",
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
    }
    if a.output.json {
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
    type Pick = fn(&EpochRecord) -> (f64, f64);
    let plots: [(&str, &str, Pick); 2] = [
        ("loss.svg", "cross-entropy", |r| (r.train_loss, r.val_loss)),
        ("accuracy.svg", "accuracy", |r| {
            (r.train_accuracy, r.val_accuracy)
        }),
    ];
    for (file, what, pick) in plots {
        let mut chart = LineChart::new(
            &format!("{name}: {what} (train solid, validation dashed)"),
            "epoch",
            what,
        );
        let pts = |second: bool| {
            history
                .iter()
                .map(|r| {
                    let (t, v) = pick(r);
                    (r.epoch as f64, if second { v } else { t })
                })
                .collect()
        };
        chart.series.push(Series {
            name: "train".into(),
            points: pts(false),
            color: 0,
            dashed: false,
        });
        chart.series.push(Series {
            name: "validation".into(),
            points: pts(true),
            color: 0,
            dashed: true,
        });
        out.write_file(file, line_chart(&chart)?.as_bytes())?;
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

fn eval_cmd(a: &EvalArgs) -> Result<()> {
    let card_path = a.checkpoint.join("model.json");
    let card: ModelCard = serde_json::from_str(
        &std::fs::read_to_string(&card_path)
            .map_err(|e| InputError(format!("cannot read {}: {e}", card_path.display())))?,
    )
    .map_err(|e| InputError(format!("{}: {e}", card_path.display())))?;
    let weights = a.checkpoint.join("best.bpk");
    let device = Device::flex();
    let model = load_model(&card, &weights, &device).map_err(|e| InputError(e.to_string()))?;
    let (folder, set, _) = load_folder(&a.data, card.model.image_size, None, a.json)?;
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
