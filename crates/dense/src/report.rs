//! Problem 2's three experiments as typed results — (i) the forward pass,
//! (ii) per-layer gradient norms, (iii) SGD/momentum/Nesterov on real data —
//! each with its settings checked, its terminal text, its files and its part
//! of the report, all written from the same value. (Over 600 lines: the
//! three share their checks, formatting and failure handling, and a change
//! to one of Problem 2's tables is a change to this file alone.)

use nabla_report::{
    history_series, line_chart, number, pct, History, LineChart, Outcome, OutputFile, Section,
    Series, Table,
};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::data::{load_csv, penguins, stratified_split, DataError, Dataset, Standardizer};
use crate::gradnorms::{describe, NormCurve, NormSetup};
use crate::train::{train, Diverged, Record, TrainConfig};
use crate::{Activation, Init, Mlp, Optimizer};

/// Settings that cannot run, named by the option a user gave.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Why [`TrainReport::run`] has no report: settings that cannot run, or a
/// run that diverged.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Diverged(#[from] Diverged),
}

fn check_net(input: &[f64], classes: usize, layers: usize, width: usize) -> Result<(), SetupError> {
    if input.is_empty() || input.iter().any(|v| !v.is_finite()) {
        return Err(SetupError(
            "--input must be finite numbers, e.g. 1,2,3,4,5".into(),
        ));
    }
    if classes < 2 || width == 0 || layers == 0 {
        return Err(SetupError(
            "--classes must be at least 2, --width and --layers at least 1".into(),
        ));
    }
    Ok(())
}

/// (i): the softmax output of the seeded net for one input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardReport {
    pub layer_dims: Vec<usize>,
    pub activation: Activation,
    pub init: Init,
    pub seed: u32,
    pub input: Vec<f64>,
    pub probabilities: Vec<f64>,
}

impl ForwardReport {
    pub fn run(
        input: &[f64],
        layers: usize,
        width: usize,
        classes: usize,
        activation: Activation,
        init: Init,
        seed: u32,
    ) -> Result<Self, SetupError> {
        check_net(input, classes, layers, width)?;
        let dims = Mlp::dims(input.len(), layers, width, classes);
        let net = Mlp::initialize(&dims, init, activation, seed);
        let x = Array2::from_shape_vec((input.len(), 1), input.to_vec()).expect("a column");
        let probabilities = net.forward(&x).iter().copied().collect();
        Ok(ForwardReport {
            layer_dims: dims,
            activation,
            init,
            seed,
            input: input.to_vec(),
            probabilities,
        })
    }

    fn hidden(&self) -> (usize, usize) {
        (self.layer_dims.len() - 2, self.layer_dims[1])
    }

    pub fn to_text(&self) -> String {
        let (layers, width) = self.hidden();
        let rows = self
            .probabilities
            .iter()
            .enumerate()
            .map(|(k, p)| vec![k.to_string(), format!("{p:.12}")])
            .collect();
        format!(
            "Network {:?}: {layers} hidden layers of {width} ({}), softmax output; {} init, numpy seed {}\n{}",
            self.layer_dims,
            self.activation,
            self.init,
            self.seed,
            Table::new("", &["class", "f(x) = softmax output"], rows).to_text()
        )
    }

    fn section(outcome: &Outcome<ForwardReport>) -> Section {
        let (r, run) = match outcome {
            Ok(o) => o,
            Err(reason) => return failed("problem-2-i", "(i) Feedforward", reason),
        };
        let (layers, width) = r.hidden();
        let mut s = Section::new(
            "problem-2-i",
            &format!("(i) Feedforward, L = {layers}, d = {width}"),
        );
        let p = &r.probabilities;
        let best = (0..p.len())
            .max_by(|&i, &j| p[i].total_cmp(&p[j]))
            .unwrap_or(0);
        s.text(format!(
            "With the sheet's initialisation (np.random.seed({}), {} scaling; nabla reproduces numpy's draws bit for bit) and x = ({}), the output is f(x) = ({}); it sums to {} and puts the most mass on class {}.",
            r.seed,
            match r.init {
                Init::He => "He",
                Init::Xavier => "Xavier",
                Init::Normal => "N(0, 0.01²)",
            },
            list(&r.input),
            list(p),
            number(p.iter().sum()),
            best + 1
        ));
        s.command(&run.command);
        s
    }
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|&v| number(v))
        .collect::<Vec<_>>()
        .join(", ")
}

fn failed(id: &str, title: &str, reason: &str) -> Section {
    let mut s = Section::new(id, title);
    s.failure(reason);
    s
}

/// (ii): δ_l per layer for every activation × initialisation asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GradNormReport {
    pub setup: NormSetup,
    pub curves: Vec<NormCurve>,
    pub explanation: Vec<String>,
}

impl GradNormReport {
    /// Every initialisation × activation, initialisations outermost.
    pub fn run(
        setup: NormSetup,
        activations: &[Activation],
        inits: &[Init],
    ) -> Result<Self, SetupError> {
        check_net(&setup.input, setup.classes, setup.layers, setup.width)?;
        if setup.target >= setup.classes {
            return Err(SetupError(format!(
                "--target {} is not a class of 0..{}",
                setup.target, setup.classes
            )));
        }
        if activations.is_empty() || inits.is_empty() {
            return Err(SetupError(
                "--activation and --init need at least one value each".into(),
            ));
        }
        let curves: Vec<NormCurve> = inits
            .iter()
            .flat_map(|&init| activations.iter().map(move |&act| (act, init)))
            .map(|(act, init)| setup.curve(act, init))
            .collect();
        let explanation = curves.iter().map(describe).collect();
        Ok(GradNormReport {
            setup,
            curves,
            explanation,
        })
    }

    /// δ_l against l on a log scale: one colour per activation, the first
    /// initialisation solid and the others dashed.
    pub fn chart(&self) -> Result<String, nabla_report::PlotError> {
        let mut chart = LineChart::new(
            &format!(
                "Gradient norms of a {}-layer net, δ_l = ‖∇W_l ℓ‖_F",
                self.setup.layers
            ),
            "layer l (1 = first hidden, L+1 = output)",
            "δ_l (log scale)",
        );
        chart.log_y = true;
        let mut activations: Vec<Activation> = Vec::new();
        for c in &self.curves {
            if !activations.contains(&c.activation) {
                activations.push(c.activation);
            }
        }
        let first_init = self.curves.first().map(|c| c.init);
        for c in &self.curves {
            chart.series.push(Series {
                name: format!("{}/{}", c.activation, c.init),
                points: c
                    .norms
                    .iter()
                    .enumerate()
                    .map(|(l, v)| ((l + 1) as f64, *v))
                    .collect(),
                color: activations
                    .iter()
                    .position(|a| *a == c.activation)
                    .unwrap_or(0),
                dashed: Some(c.init) != first_init,
            });
        }
        line_chart(&chart)
    }

    /// `grad_norms.svg` and `grad_norms.csv`.
    pub fn files(&self) -> Result<Vec<OutputFile>, nabla_report::PlotError> {
        let rows = self
            .curves
            .iter()
            .flat_map(|c| {
                c.norms.iter().enumerate().map(|(l, v)| {
                    vec![
                        c.activation.name().to_string(),
                        c.init.name().to_string(),
                        (l + 1).to_string(),
                        format!("{v:e}"),
                    ]
                })
            })
            .collect();
        let csv = Table::new("", &["activation", "init", "layer", "norm"], rows);
        Ok(vec![
            OutputFile::new("grad_norms.svg", self.chart()?),
            OutputFile::new("grad_norms.csv", csv.to_csv()),
        ])
    }

    pub fn to_text(&self) -> String {
        let mut headers = vec!["layer".to_string()];
        headers.extend(
            self.curves
                .iter()
                .map(|c| format!("{}/{}", c.activation, c.init)),
        );
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let rows = (0..=self.setup.layers)
            .map(|l| {
                let mut row = vec![(l + 1).to_string()];
                row.extend(self.curves.iter().map(|c| format!("{:.3e}", c.norms[l])));
                row
            })
            .collect();
        let s = &self.setup;
        format!(
            "δ_l = ‖∇_W_l ℓ(f(x), y)‖_F, x = {:?}, y one-hot at {}, {} hidden layers of {}\n{}\n{}\n",
            s.input,
            s.target,
            s.layers,
            s.width,
            Table::new("", &headers, rows).to_text(),
            self.explanation.join("\n")
        )
    }

    fn section(outcome: &Outcome<GradNormReport>) -> Section {
        let title = "(ii) Gradient norms of a deep net";
        let (r, run) = match outcome {
            Ok(o) => o,
            Err(reason) => return failed("problem-2-ii", title, reason),
        };
        let mut s = Section::new(
            "problem-2-ii",
            &format!("(ii) Gradient norms of a {}-layer net", r.setup.layers),
        );
        let y: Vec<&str> = (0..r.setup.classes)
            .map(|k| if k == r.setup.target { "1" } else { "0" })
            .collect();
        s.text(format!("δ_l = ‖∇_{{W_l}} ℓ(f(x), y)‖ for y = ({}), per layer, for ELU (the sheet's case) and, for comparison, other activations and initialisations.", y.join(", ")));
        s.chart("δ_l against l (log scale).", "p2-grad-norms.svg", r.chart());
        for line in &r.explanation {
            s.text(line);
        }
        s.command(&run.command);
        s
    }
}

/// One optimizer's run in (iii).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OptimizerRun {
    pub optimizer: Optimizer,
    pub history: Vec<Record>,
}

/// (iii): every optimizer from the same weights and batches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub data: String,
    pub features: Vec<String>,
    pub classes: Vec<String>,
    pub train_samples: usize,
    pub test_samples: usize,
    pub config: TrainConfig,
    pub runs: Vec<OptimizerRun>,
    /// What about the split a reader should know: no test rows at all, or
    /// a class absent from them.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `penguins` (bundled) or a CSV file whose label column is `target`.
pub fn load_data(data: &str, target: Option<&str>) -> Result<Dataset, DataError> {
    if data == "penguins" {
        return match target {
            Some(t) if t != "species" => Err(DataError::Table {
                file: "penguins".into(),
                message: format!("--target {t}: the penguins data's target is `species`"),
            }),
            _ => Ok(penguins()),
        };
    }
    let target = target.ok_or_else(|| DataError::Table {
        file: data.into(),
        message: "--target COLUMN is needed for a CSV file".into(),
    })?;
    load_csv(std::path::Path::new(data), target)
}

impl TrainReport {
    /// Splits `data` (stratified, `test_fraction` held out), standardises
    /// it with the training statistics unless told not to, and trains one
    /// net per optimizer; `on_epoch` is called after every epoch.
    pub fn run(
        name: &str,
        data: &Dataset,
        test_fraction: f64,
        standardize: bool,
        config: TrainConfig,
        optimizers: &[Optimizer],
        on_epoch: &mut dyn FnMut(Optimizer),
    ) -> Result<Self, TrainError> {
        if !(0.0..1.0).contains(&test_fraction) {
            return Err(SetupError("--test-fraction must be in [0, 1)".into()).into());
        }
        if !(config.lr > 0.0 && config.lr.is_finite() && (0.0..1.0).contains(&config.momentum)) {
            return Err(SetupError("--lr must be positive and --momentum in [0, 1)".into()).into());
        }
        if config.layers == 0 || config.width == 0 {
            return Err(SetupError("--layers and --width must be at least 1".into()).into());
        }
        let (train_set, test_set) = stratified_split(data, test_fraction, config.seed);
        let mut warnings = Vec::new();
        // A fraction that rounds to no row of any class leaves nothing to test on.
        let test_set = test_set.filter(|t| {
            if t.is_empty() {
                warnings.push(format!(
                    "--test-fraction {test_fraction} leaves no test rows of {} (it rounds to none in every class); no test loss or accuracy",
                    data.len()
                ));
            }
            !t.is_empty()
        });
        if let Some(t) = &test_set {
            for (class, name) in data.class_names.iter().enumerate() {
                if !t.y.contains(&class) {
                    warnings.push(format!(
                        "class `{name}` has no test rows at --test-fraction {test_fraction}: the test accuracy says nothing about it"
                    ));
                }
            }
        }
        let (train_set, test_set) = if standardize {
            let s = Standardizer::fit(&train_set);
            let test_set = test_set.map(|t| s.apply(&t));
            (s.apply(&train_set), test_set)
        } else {
            (train_set, test_set)
        };
        let runs = optimizers
            .iter()
            .map(|&optimizer| {
                let (_, history) =
                    train(&train_set, test_set.as_ref(), optimizer, &config, |_| {
                        on_epoch(optimizer)
                    })?;
                Ok(OptimizerRun { optimizer, history })
            })
            .collect::<Result<_, Diverged>>()?;
        Ok(TrainReport {
            data: name.to_string(),
            features: data.feature_names.clone(),
            classes: data.class_names.clone(),
            train_samples: train_set.len(),
            test_samples: test_set.as_ref().map_or(0, Dataset::len),
            config,
            runs,
            warnings,
        })
    }

    /// Weight norm, loss and accuracy per iteration, one curve per optimizer.
    pub fn charts(
        &self,
    ) -> [(
        &'static str,
        &'static str,
        Result<String, nabla_report::PlotError>,
    ); 3] {
        type Metric = fn(&Record) -> (f64, Option<f64>);
        let chart = |title: &str, y_label: &str, log_y: bool, metric: Metric| {
            let mut chart = LineChart::new(title, "iteration t (one update each)", y_label);
            chart.log_y = log_y;
            let runs: Vec<History> = self
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
            line_chart(&chart)
        };
        [
            (
                "weight_norm.svg",
                "‖W_t‖₂ per iteration.",
                chart("Weight norm ‖W_t‖₂", "‖W_t‖₂", false, |r| {
                    (r.weight_norm, None)
                }),
            ),
            (
                "loss.svg",
                "Loss on train (solid) and test (dashed).",
                chart(
                    "Cross-entropy loss (train solid, test dashed)",
                    "mean cross-entropy (log scale)",
                    true,
                    |r| (r.train_loss, r.test_loss),
                ),
            ),
            (
                "accuracy.svg",
                "Accuracy on train (solid) and test (dashed).",
                chart(
                    "Accuracy (train solid, test dashed)",
                    "accuracy",
                    false,
                    |r| (r.train_accuracy, r.test_accuracy),
                ),
            ),
        ]
    }

    /// `history.csv`, the three charts and `train.json`.
    pub fn files(&self) -> Result<Vec<OutputFile>, nabla_report::PlotError> {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:e}"));
        let rows = self
            .runs
            .iter()
            .flat_map(|run| {
                run.history.iter().map(move |r| {
                    vec![
                        run.optimizer.name().to_string(),
                        r.iteration.to_string(),
                        format!("{:e}", r.weight_norm),
                        format!("{:e}", r.train_loss),
                        format!("{:e}", r.train_accuracy),
                        opt(r.test_loss),
                        opt(r.test_accuracy),
                    ]
                })
            })
            .collect();
        let csv = Table::new(
            "",
            &[
                "optimizer",
                "iteration",
                "weight_norm",
                "train_loss",
                "train_accuracy",
                "test_loss",
                "test_accuracy",
            ],
            rows,
        );
        let mut files = vec![OutputFile::new("history.csv", csv.to_csv())];
        for (file, _, svg) in self.charts() {
            files.push(OutputFile::new(file, svg?));
        }
        files.push(OutputFile::json("train.json", self));
        Ok(files)
    }

    pub fn to_text(&self) -> String {
        let c = &self.config;
        let opt_text = |v: Option<f64>| v.map_or("—".to_string(), number);
        let rows = self
            .runs
            .iter()
            .filter_map(|r| {
                let last = r.history.last()?;
                Some(vec![
                    r.optimizer.name().to_string(),
                    last.iteration.to_string(),
                    number(last.weight_norm),
                    number(last.train_loss),
                    format!("{:.1}%", 100.0 * last.train_accuracy),
                    opt_text(last.test_loss),
                    last.test_accuracy
                        .map_or("—".into(), |v| format!("{:.1}%", 100.0 * v)),
                ])
            })
            .collect();
        let warnings: String = self
            .warnings
            .iter()
            .map(|w| format!("warning: {w}\n"))
            .collect();
        warnings
            + &format!(
            "{}: {} train / {} test samples, features {}, classes {}\n\
             net: {} hidden layers of {} ({}, {} init), lr {}, momentum {}, {} epochs, batch {}\n{}",
            self.data,
            self.train_samples,
            self.test_samples,
            self.features.join(", "),
            self.classes.join(", "),
            c.layers,
            c.width,
            c.activation,
            c.init,
            c.lr,
            c.momentum,
            c.epochs,
            if c.batch_size == 0 {
                "full".to_string()
            } else {
                c.batch_size.to_string()
            },
            Table::new(
                "",
                &[
                    "optimizer",
                    "iterations",
                    "‖W‖₂",
                    "train loss",
                    "train acc",
                    "test loss",
                    "test acc"
                ],
                rows
            )
            .to_text()
        )
    }

    fn section(outcome: &Outcome<TrainReport>) -> Section {
        let title = "(iii) SGD, momentum and Nesterov";
        let (r, run) = match outcome {
            Ok(o) => o,
            Err(reason) => return failed("problem-2-iii", title, reason),
        };
        let mut s = Section::new("problem-2-iii", title);
        for w in &r.warnings {
            s.note(w.clone());
        }
        let c = &r.config;
        s.text(format!(
            "Data: {} ({} training and {} test samples, {} classes), L = {}, d = {}, α = {}, ρ = {}, batch {}, {} epochs, every optimizer from the same weights and batches.",
            r.data, r.train_samples, r.test_samples, r.classes.len(), c.layers, c.width, c.lr, c.momentum, c.batch_size, c.epochs
        ));
        let mut rows = Vec::new();
        let mut firsts = Vec::new();
        for run in &r.runs {
            let Some(last) = run.history.last() else {
                continue;
            };
            let top = run
                .history
                .iter()
                .filter_map(|h| h.test_accuracy)
                .fold(0.0, f64::max);
            let first = run
                .history
                .iter()
                .find(|h| h.test_accuracy == Some(top))
                .map_or(f64::NAN, |h| h.iteration as f64);
            firsts.push((run.optimizer.name(), first));
            let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or("—".into(), f);
            rows.push(vec![
                run.optimizer.name().to_string(),
                number(last.train_loss),
                pct(last.train_accuracy),
                opt(last.test_loss, number),
                opt(last.test_accuracy, pct),
                number(last.weight_norm),
                format!("{first}"),
            ]);
        }
        s.push_table(Table::new(
            "After the last iteration",
            &[
                "optimizer",
                "train loss",
                "train acc.",
                "test loss",
                "test acc.",
                "‖W_t‖₂",
                "first iteration at best test acc.",
            ],
            rows,
        ));
        if let Some((fastest, it)) = firsts.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
            s.text(format!(
                "{fastest} reaches its best test accuracy first (iteration {it}). Momentum methods take larger effective steps (≈ α/(1−ρ) = {}α once the velocity builds up), which is also why their weight norms grow faster.",
                number(1.0 / (1.0 - c.momentum))
            ));
        }
        for (file, caption, svg) in r.charts() {
            s.chart(caption, &format!("p2-{file}"), svg);
        }
        s.command(&run.command);
        s
    }
}

/// Problem 2's report section: (i), (ii) and (iii).
pub fn section(
    forward: &Outcome<ForwardReport>,
    norms: &Outcome<GradNormReport>,
    train: &Outcome<TrainReport>,
) -> Section {
    let mut s = Section::new("problem-2", "Problem 2: Backpropagation");
    s.text("A network with L hidden ELU layers of width d, softmax output and cross-entropy, written from scratch (nabla-dense) and checked against numpy and PyTorch fixtures.");
    s.subsections.push(ForwardReport::section(forward));
    s.subsections.push(GradNormReport::section(norms));
    s.subsections.push(TrainReport::section(train));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use nabla_report::{Block, Provenance};

    fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(value: &T) -> T {
        serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
    }

    #[test]
    fn reports_parse_back_and_their_section_says_the_settings() {
        let forward =
            ForwardReport::run(&[1.0, 2.0], 2, 3, 3, Activation::Elu, Init::He, 7).unwrap();
        let setup = NormSetup {
            layers: 4,
            width: 3,
            classes: 3,
            input: vec![1.0, 2.0],
            target: 0,
            seed: 7,
        };
        let norms = GradNormReport::run(setup, &[Activation::Elu], &[Init::He]).unwrap();
        let config = TrainConfig {
            layers: 2,
            width: 4,
            activation: Activation::Elu,
            init: Init::He,
            lr: 0.05,
            momentum: 0.9,
            epochs: 1,
            batch_size: 32,
            seed: 7,
            shuffle: true,
        };
        let mut epochs = 0;
        let train = TrainReport::run(
            "penguins",
            &penguins(),
            0.2,
            true,
            config,
            &[Optimizer::Sgd, Optimizer::Momentum],
            &mut |_| epochs += 1,
        )
        .unwrap();
        assert_eq!(epochs, 2);
        let run = Provenance::default();
        let s = section(
            &Ok((round_trip(&forward), run.clone())),
            &Ok((round_trip(&norms), run.clone())),
            &Ok((round_trip(&train), run)),
        );
        assert_eq!(s.subsections[0].title, "(i) Feedforward, L = 2, d = 3");
        let Block::Text(text) = &s.subsections[0].blocks[0] else {
            panic!("{:?}", s.subsections[0].blocks)
        };
        assert!(text.contains("np.random.seed(7), He scaling") && text.contains("x = (1, 2)"));
        let Block::Text(steps) = &s.subsections[2].blocks[2] else {
            panic!("{:?}", s.subsections[2].blocks)
        };
        assert!(steps.contains("≈ α/(1−ρ) = 10α"), "{steps}");
        assert!(!s
            .subsections
            .iter()
            .any(|sub| sub.blocks.iter().any(|b| matches!(b, Block::Failure(_)))));
        assert!(GradNormReport::run(norms.setup.clone(), &[], &[Init::He]).is_err());
    }
}
