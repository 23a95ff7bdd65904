//! `nabla sgd-rates` (Problem 3) and `nabla dropout` (Problem 4).

use anyhow::Result;
use clap::Args;
use nabla_theory::dropout::default_qs;
use nabla_theory::dropout_experiment::{DropoutReport, DropoutSettings};
use nabla_theory::sgd::{Schedule, SgdConfig};
use nabla_theory::sgd_experiment::{schedules, SgdReport};

use crate::output::OutputArgs;
use crate::CheckFailed;

#[derive(Args, Debug)]
pub struct SgdRatesArgs {
    /// Iterations per run (t goes up to this).
    #[arg(long, default_value_t = 100_000)]
    pub steps: usize,
    /// Independent runs averaged for E‖∇f(w_k)‖².
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// E‖ξ‖² of the Gaussian gradient noise.
    #[arg(long, default_value_t = 1.0)]
    pub noise: f64,
    /// Extra schedules `c/(k+1)^p` (or a number for a constant step), repeatable;
    /// added to the defaults α = 0.05, 0.5, 1.5, 1/(k+1)^0.75, 1/(k+1)^0.5.
    #[arg(long = "schedule", value_name = "c/(k+1)^p")]
    pub schedules: Vec<Schedule>,
    /// Only these schedules, not the defaults.
    #[arg(long)]
    pub only: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn sgd_rates(a: &SgdRatesArgs) -> Result<()> {
    let schedules = schedules(&a.schedules, a.only);
    let config = SgdConfig {
        steps: a.steps,
        runs: a.runs,
        noise: a.noise,
        seed: a.seed,
    };
    let progress = crate::progress::bar(
        (nabla_theory::sgd::Problem::ALL.len() * schedules.len()) as u64,
        a.output.json,
        "sgd-rates",
    );
    let report = SgdReport::run(config, &schedules, &mut |problem| {
        progress.set_message(problem.name());
        progress.inc(1);
    })?;
    progress.finish_and_clear();
    a.output
        .emit(&report, || report.files(), || report.to_text())?;
    if report.all_held() {
        Ok(())
    } else {
        Err(CheckFailed(
            "the bound of 3(iii) failed (beyond 3 standard errors) for some schedule".into(),
        )
        .into())
    }
}

#[derive(Args, Debug)]
pub struct DropoutArgs {
    /// Dropout probabilities q, comma-separated [default: 0.01,0.02,0.05,0.1,0.2,0.3,0.4,0.5].
    #[arg(long, value_delimiter = ',')]
    pub q: Option<Vec<f64>>,
    /// Hidden layer i (1-based) of the sheet's 5-layer net that dropout acts on.
    #[arg(long, default_value_t = DropoutSettings::default().layer)]
    pub layer: usize,
    /// Dropout masks drawn per data point for (ii).
    #[arg(long, default_value_t = DropoutSettings::default().draws)]
    pub draws: usize,
    /// Draws of η for (i) and (iii).
    #[arg(long, default_value_t = DropoutSettings::default().samples)]
    pub samples: usize,
    /// Epochs of SGD on the penguins before (ii) measures the network.
    #[arg(long, default_value_t = DropoutSettings::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = DropoutSettings::default().seed)]
    pub seed: u32,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn dropout(a: &DropoutArgs) -> Result<()> {
    let settings = DropoutSettings {
        qs: a.q.clone().unwrap_or_else(default_qs),
        layer: a.layer,
        draws: a.draws,
        samples: a.samples,
        epochs: a.epochs,
        seed: a.seed,
    };
    let report = DropoutReport::run(&settings)?;
    a.output
        .emit(&report, || report.files(), || report.to_text())?;
    if report.passed() {
        Ok(())
    } else {
        Err(CheckFailed("a dropout check failed (see the tables)".into()).into())
    }
}
