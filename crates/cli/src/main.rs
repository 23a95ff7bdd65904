//! `nabla`: the exercise sheet's computations from one command line.
//! Each subcommand parses its arguments, calls its part's crate and prints.

mod all_cmd;
mod bench;
mod child;
mod compare_cmd;
mod data_cmd;
mod devices_cmd;
mod faces_cmd;
mod graph_cmd;
mod mlp_cmd;
mod output;
mod progress;
mod theory_cmd;
mod vision_cmd;
mod weights_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Burn's CPU backend allocates and frees many large buffers per training
/// step; with glibc's allocator each one is a fresh `mmap` whose pages fault
/// in again, which cost a third of the step time (measured in README).
/// mimalloc, told never to return freed pages to the system (see
/// `keep_freed_memory`), keeps and reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets mimalloc's `purge_delay` option to −1 ("no purging at all"): the
/// step's buffers come back every step, so returning them costs page faults
/// and saves nothing. The option's number is fixed by mimalloc's C header
/// (`mi_option_purge_delay`, 15 in v2 and v3); the Rust binding has no name for it.
fn keep_freed_memory() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Makes this (the main) thread one of the global rayon pool's threads, so
/// that a kernel called from it works on its share instead of handing the
/// whole job to the pool and sleeping until it is done: otherwise a
/// 2-core machine runs three threads (this one and two workers), and every
/// kernel call costs a wake-up on each side. Fails only if the pool was
/// already built, which nothing does before `main`.
fn join_rayon_pool() {
    let _ = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global();
}

/// Exit code 2: the input or the usage was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Exit code 1: the command ran, but a check it was asked to make failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

#[derive(Parser, Debug)]
#[command(
    name = "nabla",
    version,
    about = "A deep-learning workbench for exercise sheet 2, built from scratch in Rust",
    after_help = "Output convention: tables on stdout; --json prints one JSON document instead; \
--out DIR receives files (each written to a temporary name, then renamed into place).\n\
Exit codes: 0 success, 1 a requested check failed, 2 bad input or usage, \
3 the work could not be completed (a training run diverged, a file could not be written).\n\n\
Example:\n  nabla graph --example sheet --steps --check"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole sheet on built-in defaults, written up as report/index.html and report/report.md.
    All(all_cmd::AllArgs),
    /// Problem 1: a scalar computational graph — expressions, forward values, gradients, picture.
    #[command(after_help = graph_cmd::LANGUAGE_HELP)]
    Graph(graph_cmd::GraphArgs),
    /// Problem 2: dense networks from scratch — forward pass, gradient norms, SGD/momentum/Nesterov.
    #[command(subcommand)]
    Mlp(mlp_cmd::MlpCommand),
    /// Problem 3: SGD convergence — the bound of 3(iii) against simulation, per step-size schedule.
    #[command(
        after_help = "Example:\n  nabla sgd-rates --out runs/sgd\n  nabla sgd-rates --steps 10000 --runs 200 --schedule \"0.5/(k+1)^0.6\" --json"
    )]
    SgdRates(theory_cmd::SgdRatesArgs),
    /// Problem 4: dropout as multiplicative noise — η's moments, the second-order penalty, the linear case.
    #[command(
        after_help = "Example:\n  nabla dropout --out runs/dropout\n  nabla dropout --q 0.05,0.1,0.5 --layer 3 --json"
    )]
    Dropout(theory_cmd::DropoutArgs),
    /// Problem 5: train, evaluate, export and compare the CNNs on an image folder; faces in whole photos (CPU, or --device wgpu|cuda).
    #[command(subcommand)]
    Vision(vision_cmd::VisionCommand),
    /// Problem 5's data: inspect an image folder, fetch the face-mask photos.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Pretrained weights: ResNet34 and EfficientNet-Lite0 for Problem 5 (iv), MTCNN for `vision detect`.
    #[command(subcommand)]
    Weights(weights_cmd::WeightsCommand),
    /// Speed and memory benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The backends of `--device` in this build and the adapters this machine has.
    #[command(after_help = "Example:\n  nabla devices\n  nabla devices --json")]
    Devices(devices_cmd::DevicesArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    join_rayon_pool();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::All(args) => all_cmd::run(args),
        Command::Graph(args) => graph_cmd::run(args),
        Command::Mlp(cmd) => mlp_cmd::run(cmd),
        Command::SgdRates(args) => theory_cmd::sgd_rates(args),
        Command::Dropout(args) => theory_cmd::dropout(args),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Vision(cmd) => vision_cmd::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Weights(cmd) => weights_cmd::run(cmd),
        Command::Devices(args) => devices_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            if code == 1 {
                eprintln!("{e}");
            } else {
                eprintln!("error: {}", message(&e));
            }
            ExitCode::from(code)
        }
    }
}

/// The error and its causes, each cause once: library errors such as
/// `VisionError::Io` already name their source in their own text, which
/// anyhow's `{:#}` would repeat.
fn message(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// A write that failed for want of room, not because of the input.
fn out_of_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        StorageFull | FileTooLarge | QuotaExceeded | ReadOnlyFilesystem
    )
}

/// The exit code of an error, from the first cause in its chain whose kind
/// is known: 1 a requested check failed, 2 the input or settings were
/// wrong, 3 the work could not be completed (a run diverged, an output
/// could not be written, anything unforeseen).
fn exit_code(e: &anyhow::Error) -> u8 {
    use nabla_vision::VisionError;
    for cause in e.chain() {
        if cause.is::<CheckFailed>() {
            return 1;
        }
        if let Some(v) = cause.downcast_ref::<VisionError>() {
            return match v {
                VisionError::Diverged { .. } | VisionError::Fetch(_) | VisionError::Plot { .. } => {
                    3
                }
                VisionError::Io { source, .. } if out_of_space(source) => 3,
                VisionError::Record { what, .. } if what.starts_with("cannot save") => 3,
                _ => 2,
            };
        }
        if let Some(t) = cause.downcast_ref::<nabla_dense::report::TrainError>() {
            return match t {
                nabla_dense::report::TrainError::Setup(_) => 2,
                nabla_dense::report::TrainError::Diverged(_) => 3,
            };
        }
        let input = cause.is::<InputError>()
            || cause.is::<nabla_graph::GraphError>()
            || cause.is::<nabla_dense::report::SetupError>()
            || cause.is::<nabla_dense::data::DataError>()
            || cause.is::<nabla_theory::sgd_experiment::SetupError>()
            || cause.is::<nabla_theory::dropout_experiment::SetupError>();
        if input {
            return 2;
        }
    }
    3
}
