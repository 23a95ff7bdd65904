//! The contract between each part and `nabla all`: every part's `--json`
//! output parses back into the typed report its library owns. Nothing is
//! renamed here; a field renamed on one side only fails this test.

mod common;
use common::*;

use serde::de::DeserializeOwned;

/// Runs `nabla ARGS --json` and parses its stdout as `T`.
fn parses_as<T: DeserializeOwned>(args: &[&str]) -> T {
    let mut all = args.to_vec();
    all.push("--json");
    let o = nabla(&all);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?} does not parse as its report type: {e}"))
}

#[test]
fn every_part_prints_its_own_report_type() {
    let g: nabla_graph::report::GraphReport =
        parses_as(&["graph", "--example", "sheet", "--steps", "--check"]);
    assert!(g.check.is_some_and(|c| c.passed) && g.steps.is_some());

    let f: nabla_dense::report::ForwardReport = parses_as(&["mlp", "forward"]);
    assert_eq!(f.layer_dims, [5, 10, 10, 10, 10, 10, 3]);
    let n: nabla_dense::report::GradNormReport =
        parses_as(&["mlp", "grad-norms", "--activation", "elu,relu"]);
    assert_eq!(n.curves.len(), 2);
    let t: nabla_dense::report::TrainReport = parses_as(&["mlp", "train", "--epochs", "2"]);
    assert_eq!(t.runs.len(), 3);

    let s: nabla_theory::sgd_experiment::SgdReport =
        parses_as(&["sgd-rates", "--steps", "200", "--runs", "4"]);
    assert!(!s.records.is_empty());
    let d: nabla_theory::dropout_experiment::DropoutReport = parses_as(&[
        "dropout",
        "--q",
        "0.1,0.5",
        "--samples",
        "2000",
        "--draws",
        "20",
    ]);
    assert_eq!(d.gap.len(), 2);

    let root = temp_dir("contract");
    image_folder(&root.join("data"));
    let data = root.join("data").display().to_string();
    let i: nabla_vision::inspect::Inspection = parses_as(&["data", "inspect", &data]);
    assert_eq!(i.classes.len(), 2);
    let run = root.join("run").display().to_string();
    let cache = root.join("cache").display().to_string();
    let tiny = [
        "--image-size",
        "16",
        "--channels",
        "4,4,4,4",
        "--hidden",
        "8",
        "--cache",
        &cache,
    ];
    let mut train = vec![
        "vision", "train", "--data", &data, "--epochs", "1", "--out", &run,
    ];
    train.extend(tiny);
    let v: nabla_vision::report::TrainReport = parses_as(&train);
    assert_eq!(v.history.len(), 1);
    let e: nabla_vision::train::Evaluation =
        parses_as(&["vision", "eval", "--checkpoint", &run, "--data", &data]);
    assert_eq!(e.confusion.len(), 2);
    let per_class = e.per_class.expect("eval names its classes");
    assert_eq!(per_class.classes[0].name, "dark");
    assert_eq!(per_class.weighted_avg.support, 20);
    let t: nabla_vision::train::Evaluation = parses_as(&[
        "vision",
        "eval",
        "--checkpoint",
        &run,
        "--data",
        &data,
        "--tta",
        "--out",
        &root.join("eval").display().to_string(),
    ]);
    assert_eq!(t.confusion.iter().flatten().sum::<usize>(), 20);
    let html = std::fs::read_to_string(root.join("eval/top_losses.html")).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 16);
    let top: Vec<nabla_vision::report::TopLoss> =
        serde_json::from_str(&std::fs::read_to_string(root.join("eval/top_losses.json")).unwrap())
            .unwrap();
    assert!(top.windows(2).all(|w| w[0].loss >= w[1].loss));
}
