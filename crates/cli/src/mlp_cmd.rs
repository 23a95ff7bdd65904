//! `nabla mlp`: the sheet's Problem 2 — forward pass, gradient norms, training.

use anyhow::Result;
use clap::{Args, Subcommand};
use nabla_dense::gradnorms::NormSetup;
use nabla_dense::report::{load_data, ForwardReport, GradNormReport, TrainReport};
use nabla_dense::train::TrainConfig;
use nabla_dense::{Activation, Init, Optimizer};

use crate::output::OutputArgs;

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

fn forward(a: &ForwardArgs) -> Result<()> {
    let report = ForwardReport::run(
        &a.sample.input,
        a.net.layers.unwrap_or(5),
        a.net.width,
        a.sample.classes,
        a.activation,
        a.init,
        a.net.seed,
    )?;
    if a.json {
        return OutputArgs::print_json(&report);
    }
    print!("{}", report.to_text());
    Ok(())
}

fn grad_norms(a: &GradNormArgs) -> Result<()> {
    let setup = NormSetup {
        layers: a.net.layers.unwrap_or(30),
        width: a.net.width,
        classes: a.sample.classes,
        input: a.sample.input.clone(),
        target: a.target,
        seed: a.net.seed,
    };
    let report = GradNormReport::run(setup, &a.activation, &a.init)?;
    a.output
        .emit(&report, || report.files(), || report.to_text())
}

fn train_cmd(a: &TrainArgs) -> Result<()> {
    let data = load_data(&a.data, a.target.as_deref())?;
    let config = TrainConfig {
        layers: a.net.layers.unwrap_or(5),
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
    let report = TrainReport::run(
        &a.data,
        &data,
        a.test_fraction,
        !a.no_standardize,
        config,
        &a.optimizer,
        &mut |optimizer| {
            progress.set_message(optimizer.name());
            progress.inc(1);
        },
    )?;
    progress.finish_and_clear();
    a.output
        .emit(&report, || report.files(), || report.to_text())
}
