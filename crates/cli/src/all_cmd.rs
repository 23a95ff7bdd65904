//! `nabla all`: every part of the sheet on built-in defaults, gathered into
//! `report/index.html` and `report/report.md`.
//!
//! Each step runs this same binary as a child process with `--json --out`,
//! so the report shows exactly the command that reproduces each number, a
//! failing part cannot take the others down, and each part's memory is its
//! own. Each child's JSON is read back as its part's typed report, and each
//! part writes its own section (`nabla_graph::report::section`, …): this
//! file is the plan and the orchestration.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use nabla_report::{Block, Document, Section, Table};

use crate::child::{run_child, Outcome};
use crate::output::{shorten, write_atomic};
use crate::CheckFailed;
use nabla_vision::mtcnn::MTCNN_FILE;
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
    /// The face-mask image folder for Problem 5; downloaded there when
    /// absent (unless --offline; Problem 5 then says how to get it).
    #[arg(long, default_value = "data/face-mask")]
    pub data: PathBuf,
    /// No progress display.
    #[arg(long)]
    pub quiet: bool,
    /// Download nothing: without the photos Problem 5 says how to get them;
    /// without EfficientNet-Lite0's ImageNet weights its pretrained runs are
    /// listed as skipped.
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
const QUICK_MODELS: &str = "cnn,cnn-bn,efficientnet-lite0-probe,efficientnet-lite0-fine-tune";
/// Rough duration of the full comparison on 2 cores.
const FULL_COMPARE_S: f64 = 6000.0;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn plan(a: &AllArgs, with_vision: bool, parts: &Path) -> Vec<Step> {
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
        // Beyond the sheet: faces found in scenes of validation photos by
        // MTCNN, labelled by the comparison's best run. Offline without the
        // detector's weights it does not run (the section says how to get
        // them); a failed download only makes it fail without failing all.
        let have_detector = default_dir().join(MTCNN_FILE).is_file();
        if !have_detector && !a.offline {
            steps.push(Step {
                id: "weights-mtcnn",
                label: "Problem 5 (v): MTCNN's weights",
                args: strings(&["weights", "download", "mtcnn"]),
                writes_files: false,
                optional: true,
                expect_s: 5.0,
            });
        }
        if have_detector || !a.offline {
            steps.push(Step {
                id: "vision-scene",
                label: "Problem 5 (v): faces in scenes",
                args: vec![
                    "vision".into(),
                    "scene".into(),
                    "--best-of".into(),
                    parts.join("vision-compare").display().to_string(),
                ],
                writes_files: true,
                optional: !have_detector,
                expect_s: 5.0,
            });
        }
    }
    steps
}

pub fn run(a: &AllArgs) -> Result<()> {
    let start = Instant::now();
    let exe = std::env::current_exe().context("cannot find the nabla executable")?;
    let mut results = Results(Vec::new());
    // Problem 5's photos, fetched first when they are missing (as the
    // weights are); a failed download leaves Problem 5 saying how to get them.
    if !a.data.is_dir() && !a.offline {
        let fetch = [
            "data".to_string(),
            "fetch".into(),
            "face-mask".into(),
            "--out".into(),
            a.data.display().to_string(),
        ];
        let outcome = run_child(&exe, &fetch, None, &|_| {});
        if !a.quiet {
            eprintln!("[fetch] Problem 5's photos {}", outcome.summary());
        }
        results.0.push(("data-fetch", outcome));
    }
    let with_vision = a.data.is_dir();
    // Quick and full runs keep their parts apart: the comparison resumes its
    // runs from what it finds there, and only under the same settings.
    let parts = a.out.join(if a.quick { "parts-quick" } else { "parts" });
    let steps = plan(a, with_vision, &parts);
    std::fs::create_dir_all(&parts)
        .with_context(|| format!("cannot create {}", parts.display()))?;
    let total: f64 = steps.iter().map(|s| s.expect_s).sum();
    let bar = crate::progress::weighted(total, a.quiet);
    let mut done_weight = 0.0;
    for (i, step) in steps.iter().enumerate() {
        let head = format!("[{}/{}] {}", i + 1, steps.len(), step.label);
        bar.set_message(head.clone());
        let dir = parts.join(step.id);
        let outcome = run_child(
            &exe,
            &step.args,
            step.writes_files.then_some(dir.as_path()),
            &|line| bar.set_message(format!("{head}: {}", shorten(line, 60))),
        );
        done_weight += step.expect_s;
        bar.set_position(done_weight.round() as u64);
        crate::progress::line(&bar, a.quiet, &format!("{head} {}", outcome.summary()));
        results.0.push((step.id, outcome));
    }
    bar.finish_and_clear();
    let optional = |id: &str| id == "data-fetch" || steps.iter().any(|s| s.id == id && s.optional);
    let failed: Vec<String> = results
        .0
        .iter()
        .filter(|(id, o)| !optional(id) && o.status.failed())
        .map(|(id, o)| format!("{id}: {}", o.status.reason().unwrap_or_default()))
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

/// Every step's outcome, by id.
struct Results(Vec<(&'static str, Outcome)>);

impl Results {
    /// Step `id`'s JSON as its part's report type.
    fn parse<T: serde::de::DeserializeOwned>(&self, id: &str) -> nabla_report::Outcome<T> {
        match self.0.iter().find(|(i, _)| *i == id) {
            Some((_, o)) => o.parse(),
            None => Err(format!("step {id} did not run")),
        }
    }

    /// Puts the failure of each of `ids` that failed at the top of `s`
    /// (a part can fail and still print its report: a comparison with a failed run).
    fn flag_failures(&self, s: &mut Section, ids: &[&str]) {
        for (id, o) in self.0.iter().filter(|(i, _)| ids.contains(i)) {
            if let Some(reason) = o.status.reason().filter(|_| o.status.failed()) {
                s.blocks
                    .insert(0, Block::Failure(format!("step {id} failed: {reason}")));
            }
        }
    }
}

fn build_document(a: &AllArgs, results: &Results, with_vision: bool, seconds: f64) -> Document {
    let r = results;
    let mut sections = vec![
        nabla_graph::report::section(
            &r.parse("graph-sheet"),
            &[
                ("graph-neuron", "a sigmoid neuron", &r.parse("graph-neuron")),
                (
                    "graph-shared",
                    "micrograd's README example, with nodes used several times",
                    &r.parse("graph-shared"),
                ),
            ],
        ),
        nabla_dense::report::section(
            &r.parse("mlp-forward"),
            &r.parse("mlp-grad-norms"),
            &r.parse("mlp-train"),
        ),
        nabla_theory::sgd_experiment::section(&r.parse("sgd-rates")),
        nabla_theory::dropout_experiment::section(&r.parse("dropout")),
    ];
    let vision = with_vision.then(|| (r.parse("data-inspect"), r.parse("vision-compare")));
    let scene =
        r.0.iter()
            .any(|(id, _)| *id == "vision-scene")
            .then(|| r.parse("vision-scene"));
    let mut problem5 = nabla_vision::section::section(
        &a.data,
        vision.as_ref().map(|(d, c)| (d, c)),
        scene.as_ref(),
    );
    if let Some((_, fetch)) = r.0.iter().find(|(id, _)| *id == "data-fetch") {
        if let Some(reason) = fetch.status.reason() {
            problem5.note(format!(
                "nabla tried to download them (`{}`) and could not: {}",
                fetch.provenance.command,
                shorten(reason, 300)
            ));
        }
    }
    if with_vision && a.quick {
        if let Some(iv) = problem5
            .subsections
            .iter_mut()
            .find(|s| s.id == "problem-5-iv")
        {
            iv.note(format!(
                "The quick report runs {QUICK_MODELS} only; without --quick the comparison adds ResNet34 and EfficientNet-Lite0 from scratch and fine-tuned from ImageNet weights."
            ));
        }
    }
    sections.push(problem5);
    let parts: [&[&str]; 5] = [
        &["graph-sheet", "graph-neuron", "graph-shared"],
        &["mlp-forward", "mlp-grad-norms", "mlp-train"],
        &["sgd-rates"],
        &["dropout"],
        &["data-inspect", "vision-compare", "vision-scene"],
    ];
    for (s, ids) in sections.iter_mut().zip(parts) {
        r.flag_failures(s, ids);
    }
    let mut timing = Section::new("runs", "Run times and commands");
    let rows =
        r.0.iter()
            .map(|(id, o)| {
                let failed = if o.status.failed() { " (failed)" } else { "" };
                vec![
                    id.to_string(),
                    format!("{:.1} s{failed}", o.seconds),
                    o.provenance.command.clone(),
                ]
            })
            .collect();
    timing.push_table(Table::new(
        "Every step of this report",
        &["step", "time", "command"],
        rows,
    ));
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
