//! Problem 3's experiment: every problem × step-size schedule simulated,
//! as one typed result with its terminal text, its charts and its part of
//! the report.

use std::time::Instant;

use nabla_report::{line_chart, number, LineChart, Outcome, OutputFile, Section, Series, Table};
use serde::{Deserialize, Serialize};

use crate::sgd::{default_schedules, simulate, Problem, RateCurve, Schedule, SgdConfig};

/// Settings that cannot run, named by the option a user gave.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SgdReport {
    pub config: SgdConfig,
    pub seconds: f64,
    /// Problems outermost, schedules in the order given.
    pub records: Vec<RateCurve>,
}

/// The defaults of 3(iv) (unless `only`), then `extra`.
pub fn schedules(extra: &[Schedule], only: bool) -> Vec<Schedule> {
    let mut all = if only {
        Vec::new()
    } else {
        default_schedules()
    };
    all.extend_from_slice(extra);
    all
}

impl SgdReport {
    /// Simulates every problem under every schedule; `on_curve` is called
    /// before each one with its problem.
    pub fn run(
        config: SgdConfig,
        schedules: &[Schedule],
        on_curve: &mut dyn FnMut(Problem),
    ) -> Result<Self, SetupError> {
        if config.steps < 100
            || config.runs < 2
            || !(config.noise >= 0.0 && config.noise.is_finite())
        {
            return Err(SetupError(
                "--steps must be at least 100, --runs at least 2, --noise ≥ 0".into(),
            ));
        }
        if schedules.is_empty() {
            return Err(SetupError("--only needs at least one --schedule".into()));
        }
        let start = Instant::now();
        let mut records = Vec::new();
        for problem in Problem::ALL {
            for &schedule in schedules {
                on_curve(problem);
                records.push(simulate(problem, schedule, &config));
            }
        }
        Ok(SgdReport {
            config,
            seconds: start.elapsed().as_secs_f64(),
            records,
        })
    }

    /// Whether the bound held for every schedule.
    pub fn all_held(&self) -> bool {
        self.records.iter().all(|r| r.bound_held)
    }

    /// For each problem, `sgd_PROBLEM.svg`: measured (solid) and bound (dashed) per schedule.
    pub fn charts(&self) -> Vec<(Problem, String, Result<String, nabla_report::PlotError>)> {
        Problem::ALL
            .iter()
            .map(|&problem| {
                let mut chart = LineChart::new(
                    &format!(
                        "{problem}: min_(k<t) E‖∇f(w_k)‖² (solid) and the bound of 3(iii) (dashed)"
                    ),
                    "iteration t",
                    "E‖∇f‖² (log scale)",
                );
                (chart.log_x, chart.log_y) = (true, true);
                for (i, r) in self
                    .records
                    .iter()
                    .filter(|r| r.problem == problem)
                    .enumerate()
                {
                    let pts = |v: &[f64]| r.t.iter().zip(v).map(|(&t, &y)| (t as f64, y)).collect();
                    chart.series.push(Series {
                        name: r.schedule_label.clone(),
                        points: pts(&r.measured),
                        color: i,
                        dashed: false,
                    });
                    chart.series.push(Series {
                        name: format!("bound, {}", r.schedule_label),
                        points: pts(&r.bound),
                        color: i,
                        dashed: true,
                    });
                }
                (problem, format!("sgd_{problem}.svg"), line_chart(&chart))
            })
            .collect()
    }

    /// The charts and `sgd_rates.json`.
    pub fn files(&self) -> Result<Vec<OutputFile>, nabla_report::PlotError> {
        let mut files = Vec::new();
        for (_, name, svg) in self.charts() {
            files.push(OutputFile::new(name, svg?));
        }
        files.push(OutputFile::json("sgd_rates.json", self));
        Ok(files)
    }

    pub fn to_text(&self) -> String {
        let c = &self.config;
        let rows = self
            .records
            .iter()
            .map(|r| {
                let last = r.measured.len() - 1;
                vec![
                    r.problem.to_string(),
                    r.schedule_label.clone(),
                    number(r.measured[last]),
                    number(r.bound[last]),
                    format!("{:+.2}", r.fitted_slope),
                    format!("{:+.2}", r.bound_slope),
                    format!("{:+.2}", r.predicted_rate),
                    r.plateau.map_or("—".into(), number),
                    nabla_report::yes_no(r.bound_held),
                ]
            })
            .collect();
        let table = Table::new(
            "",
            &[
                "problem",
                "schedule",
                "min E‖∇f‖² at t",
                "bound at t",
                "slope",
                "bound slope",
                "predicted",
                "σ²Lα/2",
                "held",
            ],
            rows,
        );
        format!(
            "SGD with gradient noise E‖ξ‖² = {}: {} runs × {} steps per schedule, {:.1} s\n{}\
             slopes are fitted over the last two decades of t; L = 1, f* = 0, σ² = {} for both problems\n{}\n",
            c.noise,
            c.runs,
            c.steps,
            self.seconds,
            table.to_text(),
            self.records.first().map_or(f64::NAN, |r| r.sigma2),
            self.summary()
        )
    }

    /// A reading of the table, from its numbers.
    fn summary(&self) -> String {
        let mut lines = Vec::new();
        for r in &self.records {
            let verdict = if r.predicted_rate == 0.0 {
                match r.plateau {
                    Some(p) => format!(
                        "levels off (slope {:+.2}); the bound tends to σ²Lα/2 = {} instead of 0",
                        r.fitted_slope,
                        number(p)
                    ),
                    None => format!("slope {:+.2}", r.fitted_slope),
                }
            } else if r.fitted_slope <= r.predicted_rate + 0.05 {
                format!(
                    "decays at slope {:+.2}, at least as fast as the bound's t^{:+.2}",
                    r.fitted_slope, r.predicted_rate
                )
            } else {
                format!(
                    "decays at slope {:+.2}, slower than the bound's t^{:+.2} so far",
                    r.fitted_slope, r.predicted_rate
                )
            };
            lines.push(format!(
                "{} {}: {verdict}; measured/bound at most {:.2}.",
                r.problem, r.schedule_label, r.worst_ratio
            ));
        }
        lines.join("\n")
    }
}

/// Problem 3's report section.
pub fn section(outcome: &Outcome<SgdReport>) -> Section {
    let mut s = Section::new("problem-3", "Problem 3: Stochastic Gradient Descent");
    s.text("(i)–(iii) are proved in docs/theory/sgd.md. Here the bound of (iii) is checked by simulation on two problems that satisfy Assumptions 1 and 2 exactly, and (iv)'s rates are measured.");
    let (r, run) = match outcome {
        Ok(o) => o,
        Err(reason) => {
            s.failure(reason);
            return s;
        }
    };
    let records = &r.records;
    let held = records.iter().filter(|r| r.bound_held).count();
    let mut bound = Section::new(
        "problem-3-iii",
        "(i)–(iii) The bound, checked by simulation",
    );
    bound.note(format!(
        "The bound of (iii) held in {held} of {} simulated schedules ({} runs × {} steps each); the measured min E‖∇f‖² never exceeded {:.2} of the bound.",
        records.len(),
        r.config.runs,
        r.config.steps,
        records.iter().map(|r| r.worst_ratio).fold(0.0, f64::max)
    ));
    let rows = records
        .iter()
        .map(|r| {
            vec![
                r.problem.to_string(),
                r.schedule_label.clone(),
                nabla_report::yes_no(r.bound_held),
                format!("{:.2}", r.worst_ratio),
            ]
        })
        .collect();
    bound.push_table(Table::new(
        "Measured min E‖∇f(w_k)‖² against the bound",
        &["problem", "α_k", "bound held", "max measured/bound"],
        rows,
    ));
    for (problem, file, svg) in r.charts() {
        let problem = match problem {
            Problem::HuberQuadratic => "Huber-quadratic",
            Problem::Cosine => "Cosine",
        };
        bound.chart(
            &format!("{problem} problem: min E‖∇f(w_k)‖² (solid) and the bound (dashed)."),
            &format!("p3-{file}"),
            svg,
        );
    }
    let mut rates = Section::new(
        "problem-3-iv",
        "(iv) The right-hand side for constant and decaying α",
    );
    rates.text("With a constant α the right-hand side tends to σ²Lα/2 (no convergence, slope 0); with α_k = 1/k^{3/4} it decays like t^{−1/4}; with α_k = 1/k^{1/2} like log t / √t. Slopes are fitted on log–log axes over the last two decades of t.");
    let rows = records
        .iter()
        .map(|r| {
            vec![
                r.problem.to_string(),
                r.schedule_label.clone(),
                format!("{:.2}", r.predicted_rate),
                format!("{:.2}", r.bound_slope),
                format!("{:.2}", r.fitted_slope),
            ]
        })
        .collect();
    rates.push_table(Table::new(
        "Log–log slopes over the last two decades of t",
        &[
            "problem",
            "α_k",
            "(iv) predicted for the bound",
            "bound, computed",
            "measured",
        ],
        rows,
    ));
    let close = records
        .iter()
        .filter(|r| (r.bound_slope - r.predicted_rate).abs() < 0.1)
        .count();
    let faster = records
        .iter()
        .filter(|r| r.fitted_slope < r.bound_slope - 0.1)
        .count();
    rates.text(format!(
        "The computed bound's slope is within 0.1 of (iv)'s rate in {close} of {} schedules (log factors and the finite t account for the rest). The measured quantity falls faster than its bound in {faster} of them: the bound is an upper bound, not the rate.",
        records.len()
    ));
    s.command(&run.command);
    s.subsections.push(bound);
    s.subsections.push(rates);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use nabla_report::{Block, Provenance};

    #[test]
    fn the_report_parses_back_into_its_section() {
        let config = SgdConfig {
            steps: 200,
            runs: 4,
            noise: 1.0,
            seed: 1,
        };
        let mut curves = 0;
        let r = SgdReport::run(config, &schedules(&[], false), &mut |_| curves += 1).unwrap();
        assert_eq!(curves, 2 * default_schedules().len());
        let back: SgdReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        let s = section(&Ok((back, Provenance::default())));
        let Block::Note(note) = &s.subsections[0].blocks[0] else {
            panic!("{:?}", s.subsections[0].blocks)
        };
        assert!(note.contains("(4 runs × 200 steps each)"), "{note}");
        assert!(SgdReport::run(r.config.clone(), &[], &mut |_| {}).is_err());
    }
}
