//! `nabla mlp`: the sheet's Problem 2 — forward pass, gradient norms, training.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use nabla_dense::data::{load_csv, penguins, stratified_split, Dataset, Standardizer};
use nabla_dense::gradnorms::{describe, NormCurve, NormSetup};
use nabla_dense::train::{train, Record, TrainConfig};
use nabla_dense::{Activation, Init, Mlp, Optimizer};
use nabla_report::{history_series, line_chart, History, LineChart, Series};
use ndarray::Array2;
use serde::Serialize;

use crate::output::{number, table, OutputArgs};
use crate::InputError;

#[derive(Subcommand, Debug)]
pub enum MlpCommand {
    /// (i) The network's output for one input, with the sheet's initialisation.
    #[command(
        after_help = "Example:\n  nabla mlp forward --layers 5 --width 10 --input 1,2,3,4,5"
    )]
    Forward(ForwardArgs),
    /// (ii) Per-layer gradient norms δ_l of a deep net, plotted and explained.
    #[command(
        after_help = "Example:\n  nabla mlp grad-norms --layers 30 --width 10 --input 1,2,3,4,5 --target 0 \\\n      --activation elu,sigmoid,tanh,relu --init he,xavier --out runs/grad-norms"
    )]
    GradNorms(GradNormArgs),
    /// (iii) Train with SGD, momentum and Nesterov on real data; weight norm, loss and accuracy per iteration.
    #[command(
        after_help = "Example:\n  nabla mlp train --data penguins --optimizer sgd,momentum,nesterov --out runs/penguins\n  nabla mlp train --data my.csv --target label --lr 0.05 --epochs 100 --json"
    )]
    Train(TrainArgs),
}

/// The network's shape and initialisation, shared by the three commands.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Number of hidden layers L [default: 5; 30 for grad-norms].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Width d of every hidden layer.
    #[arg(long, default_value_t = 10)]
    pub width: usize,
    /// Seed of numpy's generator for the weights (the sheet uses 42).
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
}

/// The one sample of (i) and (ii), and the number of classes.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// The input x, comma-separated; its length is d_in.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,3,4,5",
        allow_hyphen_values = true
    )]
    pub input: Vec<f64>,
    /// Number of classes K.
    #[arg(long, default_value_t = 3)]
    pub classes: usize,
}

#[derive(Args, Debug)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Hidden activation: elu, relu, leaky-relu, tanh, sigmoid, selu.
    #[arg(long, default_value = "elu")]
    pub activation: Activation,
    /// Weight initialisation: he (the sheet's), xavier, normal.
    #[arg(long, default_value = "he")]
    pub init: Init,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GradNormArgs {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// The class y is one-hot at.
    #[arg(long, default_value_t = 0)]
    pub target: usize,
    /// Activations to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "elu")]
    pub activation: Vec<Activation>,
    /// Initialisations to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "he")]
    pub init: Vec<Init>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// `penguins` (bundled) or a CSV file with a header row.
    #[arg(long, default_value = "penguins")]
    pub data: String,
    /// The label column (default `species` for penguins).
    #[arg(long)]
    pub target: Option<String>,
    /// Optimizers to run, comma-separated; each starts from the same weights and sees the same batches.
    #[arg(long, value_delimiter = ',', default_value = "sgd,momentum,nesterov")]
    pub optimizer: Vec<Optimizer>,
    /// Learning rate α (constant).
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    /// Momentum ρ for momentum and Nesterov.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Samples per update; 0 = the full training split.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Hidden activation.
    #[arg(long, default_value = "elu")]
    pub activation: Activation,
    /// Weight initialisation.
    #[arg(long, default_value = "he")]
    pub init: Init,
    /// Fraction held out for testing, stratified by class; 0 = no test split.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Keep the training rows in file order instead of reshuffling every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Use the raw features instead of standardising them with training statistics.
    #[arg(long)]
    pub no_standardize: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(cmd: &MlpCommand) -> Result<()> {
    match cmd {
        MlpCommand::Forward(a) => forward(a),
        MlpCommand::GradNorms(a) => grad_norms(a),
        MlpCommand::Train(a) => train_cmd(a),
    }
}

fn check_shape(input: &[f64], classes: usize, layers: usize, width: usize) -> Result<()> {
    if input.is_empty() || input.iter().any(|v| !v.is_finite()) {
        return Err(InputError("--input must be finite numbers, e.g. 1,2,3,4,5".into()).into());
    }
    if classes < 2 || width == 0 || layers == 0 {
        return Err(InputError(
            "--classes must be at least 2, --width and --layers at least 1".into(),
        )
        .into());
    }
    Ok(())
}

#[derive(Serialize)]
struct ForwardReport {
    layer_dims: Vec<usize>,
    activation: Activation,
    init: Init,
    seed: u32,
    input: Vec<f64>,
    probabilities: Vec<f64>,
}

fn forward(a: &ForwardArgs) -> Result<()> {
    let layers = a.net.layers.unwrap_or(5);
    check_shape(&a.sample.input, a.sample.classes, layers, a.net.width)?;
    let dims = Mlp::dims(a.sample.input.len(), layers, a.net.width, a.sample.classes);
    let net = Mlp::initialize(&dims, a.init, a.activation, a.net.seed);
    let x = Array2::from_shape_vec((a.sample.input.len(), 1), a.sample.input.clone())?;
    let probs = net.forward(&x);
    let report = ForwardReport {
        layer_dims: dims,
        activation: a.activation,
        init: a.init,
        seed: a.net.seed,
        input: a.sample.input.clone(),
        probabilities: probs.iter().copied().collect(),
    };
    if a.json {
        return OutputArgs::print_json(&report);
    }
    println!(
        "Network {:?}: {} hidden layers of {} ({}), softmax output; {} init, numpy seed {}",
        report.layer_dims, layers, a.net.width, a.activation, a.init, a.net.seed
    );
    let rows: Vec<Vec<String>> = report
        .probabilities
        .iter()
        .enumerate()
        .map(|(k, p)| vec![k.to_string(), format!("{p:.12}")])
        .collect();
    print!("{}", table(&["class", "f(x) = softmax output"], &rows));
    Ok(())
}

#[derive(Serialize)]
struct GradNormReport {
    setup: NormSetup,
    curves: Vec<NormCurve>,
    explanation: Vec<String>,
}

fn grad_norms(a: &GradNormArgs) -> Result<()> {
    let layers = a.net.layers.unwrap_or(30);
    check_shape(&a.sample.input, a.sample.classes, layers, a.net.width)?;
    if a.target >= a.sample.classes {
        return Err(InputError(format!(
            "--target {} is not a class of 0..{}",
            a.target, a.sample.classes
        ))
        .into());
    }
    let setup = NormSetup {
        layers,
        width: a.net.width,
        classes: a.sample.classes,
        input: a.sample.input.clone(),
        target: a.target,
        seed: a.net.seed,
    };
    let curves: Vec<NormCurve> = a
        .init
        .iter()
        .flat_map(|&init| a.activation.iter().map(move |&act| (act, init)))
        .map(|(act, init)| setup.curve(act, init))
        .collect();
    let explanation: Vec<String> = curves.iter().map(describe).collect();
    let report = GradNormReport {
        setup,
        curves,
        explanation,
    };

    if a.output.out.is_some() {
        let mut chart = LineChart::new(
            &format!("Gradient norms of a {layers}-layer net, δ_l = ‖∇W_l ℓ‖_F"),
            "layer l (1 = first hidden, L+1 = output)",
            "δ_l (log scale)",
        );
        chart.log_y = true;
        let acts: Vec<Activation> = a.activation.clone();
        for (i, c) in report.curves.iter().enumerate() {
            let color = acts.iter().position(|x| *x == c.activation).unwrap_or(i);
            chart.series.push(Series {
                name: format!("{}/{}", c.activation, c.init),
                points: c
                    .norms
                    .iter()
                    .enumerate()
                    .map(|(l, v)| ((l + 1) as f64, *v))
                    .collect(),
                color,
                dashed: c.init != a.init[0],
            });
        }
        a.output
            .write_file("grad_norms.svg", line_chart(&chart)?.as_bytes())?;
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(["activation", "init", "layer", "norm"])?;
        for c in &report.curves {
            for (l, v) in c.norms.iter().enumerate() {
                csv.write_record([
                    c.activation.name(),
                    c.init.name(),
                    &(l + 1).to_string(),
                    &format!("{v:e}"),
                ])?;
            }
        }
        a.output.write_file("grad_norms.csv", &csv.into_inner()?)?;
    }
    if a.output.json {
        return OutputArgs::print_json(&report);
    }
    let mut headers = vec!["layer".to_string()];
    headers.extend(
        report
            .curves
            .iter()
            .map(|c| format!("{}/{}", c.activation, c.init)),
    );
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = (0..=layers)
        .map(|l| {
            let mut row = vec![(l + 1).to_string()];
            row.extend(report.curves.iter().map(|c| format!("{:.3e}", c.norms[l])));
            row
        })
        .collect();
    println!(
        "δ_l = ‖∇_W_l ℓ(f(x), y)‖_F, x = {:?}, y one-hot at {}, {} hidden layers of {}",
        a.sample.input, a.target, layers, a.net.width
    );
    print!("{}", table(&header_refs, &rows));
    println!();
    for line in &report.explanation {
        println!("{line}");
    }
    Ok(())
}

#[derive(Serialize)]
struct Run {
    optimizer: Optimizer,
    history: Vec<Record>,
}

#[derive(Serialize)]
struct TrainReport {
    data: String,
    features: Vec<String>,
    classes: Vec<String>,
    train_samples: usize,
    test_samples: usize,
    config: TrainConfig,
    runs: Vec<Run>,
}

fn load_data(a: &TrainArgs) -> Result<Dataset> {
    if a.data == "penguins" {
        if let Some(t) = &a.target {
            if t != "species" {
                return Err(InputError(format!(
                    "--target {t}: the penguins data's target is `species`"
                ))
                .into());
            }
        }
        return Ok(penguins());
    }
    let target = a
        .target
        .as_deref()
        .ok_or_else(|| InputError(format!("--target COLUMN is needed for {}", a.data)))?;
    load_csv(&PathBuf::from(&a.data), target).map_err(|e| InputError(e.to_string()).into())
}

fn train_cmd(a: &TrainArgs) -> Result<()> {
    if !(0.0..1.0).contains(&a.test_fraction) {
        return Err(InputError("--test-fraction must be in [0, 1)".into()).into());
    }
    if !(a.lr > 0.0 && a.lr.is_finite() && (0.0..1.0).contains(&a.momentum)) {
        return Err(InputError("--lr must be positive and --momentum in [0, 1)".into()).into());
    }
    let layers = a.net.layers.unwrap_or(5);
    if layers == 0 || a.net.width == 0 {
        return Err(InputError("--layers and --width must be at least 1".into()).into());
    }
    let data = load_data(a)?;
    let (train_set, test_set) = stratified_split(&data, a.test_fraction, a.net.seed);
    let (train_set, test_set) = if a.no_standardize {
        (train_set, test_set)
    } else {
        let s = Standardizer::fit(&train_set);
        let test_set = test_set.map(|t| s.apply(&t));
        (s.apply(&train_set), test_set)
    };
    let config = TrainConfig {
        layers,
        width: a.net.width,
        activation: a.activation,
        init: a.init,
        lr: a.lr,
        momentum: a.momentum,
        epochs: a.epochs,
        batch_size: a.batch_size,
        seed: a.net.seed,
        shuffle: !a.no_shuffle,
    };
    let progress = crate::progress::bar(
        (a.epochs * a.optimizer.len()) as u64,
        a.output.json,
        "training",
    );
    let runs: Vec<Run> = a
        .optimizer
        .iter()
        .map(|&opt| {
            progress.set_message(opt.name());
            let (_, history) = train(&train_set, test_set.as_ref(), opt, &config, |_| {
                progress.inc(1)
            });
            Run {
                optimizer: opt,
                history,
            }
        })
        .collect();
    progress.finish_and_clear();
    let report = TrainReport {
        data: a.data.clone(),
        features: data.feature_names.clone(),
        classes: data.class_names.clone(),
        train_samples: train_set.len(),
        test_samples: test_set.as_ref().map_or(0, Dataset::len),
        config,
        runs,
    };
    write_train_files(&a.output, &report)?;
    if a.output.json {
        return OutputArgs::print_json(&report);
    }
    println!(
        "{}: {} train / {} test samples, features {}, classes {}",
        report.data,
        report.train_samples,
        report.test_samples,
        report.features.join(", "),
        report.classes.join(", ")
    );
    println!(
        "net: {} hidden layers of {} ({}, {} init), lr {}, momentum {}, {} epochs, batch {}",
        layers,
        a.net.width,
        a.activation,
        a.init,
        a.lr,
        a.momentum,
        a.epochs,
        if a.batch_size == 0 {
            "full".to_string()
        } else {
            a.batch_size.to_string()
        }
    );
    let opt_text = |v: Option<f64>| v.map_or("—".to_string(), number);
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .map(|r| {
            let last = r.history.last().expect("history starts with t = 0");
            vec![
                r.optimizer.name().to_string(),
                last.iteration.to_string(),
                number(last.weight_norm),
                number(last.train_loss),
                format!("{:.1}%", 100.0 * last.train_accuracy),
                opt_text(last.test_loss),
                last.test_accuracy
                    .map_or("—".into(), |v| format!("{:.1}%", 100.0 * v)),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "optimizer",
                "iterations",
                "‖W‖₂",
                "train loss",
                "train acc",
                "test loss",
                "test acc"
            ],
            &rows
        )
    );
    Ok(())
}

fn write_train_files(out: &OutputArgs, report: &TrainReport) -> Result<()> {
    if out.out.is_none() {
        return Ok(());
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "optimizer",
        "iteration",
        "weight_norm",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
    ])?;
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:e}"));
    for run in &report.runs {
        for r in &run.history {
            csv.write_record([
                run.optimizer.name().to_string(),
                r.iteration.to_string(),
                format!("{:e}", r.weight_norm),
                format!("{:e}", r.train_loss),
                format!("{:e}", r.train_accuracy),
                opt(r.test_loss),
                opt(r.test_accuracy),
            ])?;
        }
    }
    out.write_file("history.csv", &csv.into_inner()?)?;

    type Metric = fn(&Record) -> (f64, Option<f64>);
    let plots: [(&str, &str, &str, bool, Metric); 3] = [
        (
            "weight_norm.svg",
            "Weight norm ‖W_t‖₂",
            "‖W_t‖₂",
            false,
            |r| (r.weight_norm, None),
        ),
        (
            "loss.svg",
            "Cross-entropy loss (train solid, test dashed)",
            "mean cross-entropy (log scale)",
            true,
            |r| (r.train_loss, r.test_loss),
        ),
        (
            "accuracy.svg",
            "Accuracy (train solid, test dashed)",
            "accuracy",
            false,
            |r| (r.train_accuracy, r.test_accuracy),
        ),
    ];
    for (file, title, y_label, log_y, metric) in plots {
        let mut chart = LineChart::new(title, "iteration t (one update each)", y_label);
        chart.log_y = log_y;
        let runs: Vec<History> = report
            .runs
            .iter()
            .map(|run| {
                let points = run.history.iter().map(|r| {
                    let (train, test) = metric(r);
                    (r.iteration as f64, train, test)
                });
                (run.optimizer.to_string(), points.collect())
            })
            .collect();
        chart.series = history_series(&runs, "test");
        out.write_file(file, line_chart(&chart)?.as_bytes())?;
    }
    out.write_file(
        "train.json",
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    Ok(())
}
