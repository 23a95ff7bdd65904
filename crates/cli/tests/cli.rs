//! The `nabla` binary end to end: output convention, exit codes, files.

mod common;
use common::*;

#[test]
fn help_lists_subcommands_with_examples() {
    let top = stdout(&nabla(&["--help"]));
    assert!(top.contains("graph") && top.contains("bench"), "{top}");
    let graph = stdout(&nabla(&["graph", "--help"]));
    assert!(graph.contains("right-associative"), "{graph}");
    assert!(
        graph.contains("nabla graph --example sheet --steps --check"),
        "{graph}"
    );
    let bench = stdout(&nabla(&["bench", "graph", "--help"]));
    assert!(bench.contains("nabla bench graph --nodes"), "{bench}");
}

#[test]
fn json_has_every_named_node() {
    let o = nabla(&["graph", "--example", "neuron", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["output"], "f");
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 7);
    let f = nodes.iter().find(|n| n["name"] == "f").unwrap();
    assert_eq!(f["expression"], "sigmoid(dot)");
    assert_eq!(f["expanded"], "sigmoid(w0 * x0 + w1 * x1 + w2)");
    assert!((f["value"].as_f64().unwrap() - 0.731_058_578_630_004_9).abs() < 1e-15);
    assert_eq!(f["gradient"], 1.0);
}

#[test]
fn syntax_error_exits_2_with_file_line_column_and_caret() {
    let dir = temp_dir("syntax");
    let file = dir.join("bad.graph");
    std::fs::write(&file, "x = 1\ny = x + * 2\n").unwrap();
    let o = nabla(&["graph", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("bad.graph:2:9: syntax error: expected a number"),
        "{err}"
    );
    assert!(err.contains(" 2 | y = x + * 2\n   |         ^"), "{err}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn missing_file_and_bad_set_exit_2() {
    let o = nabla(&["graph", "no/such.graph"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read no/such.graph"),
        "{}",
        stderr(&o)
    );
    let o = nabla(&["graph", "--example", "sheet", "--set", "x1=abc"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`abc` is not a number"),
        "{}",
        stderr(&o)
    );
    let o = nabla(&["graph", "--example", "sheet", "--set", "z1=3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`z1` is computed"), "{}", stderr(&o));
}

#[test]
fn failed_gradient_check_exits_1() {
    // relu at its kink: autodiff says 0, central differences say 1/2.
    let dir = temp_dir("kink");
    let file = dir.join("kink.graph");
    std::fs::write(&file, "x = 0\nf = relu(x)\n").unwrap();
    let o = nabla(&["graph", file.to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("gradient check failed: largest relative error 5.000e-1"),
        "{}",
        stderr(&o)
    );
    let o = nabla(&["graph", file.to_str().unwrap(), "--check", "--set", "x=0.5"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("passed"));
}

#[test]
fn out_dir_receives_every_file_and_no_temporaries() {
    let dir = temp_dir("out");
    let out = dir.join("run");
    let svg = dir.join("pic.svg");
    let o = nabla(&[
        "graph",
        "--example",
        "sheet",
        "--steps",
        "--out",
        out.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["graph.dot", "graph.json", "graph.svg", "nodes.csv"]);
    let csv = std::fs::read_to_string(out.join("nodes.csv")).unwrap();
    assert!(
        csv.starts_with("name,kind,expression,expanded,value,gradient\n"),
        "{csv}"
    );
    assert!(
        csv.contains("h2,computed,w3 + z3,w3 + w4 * x3,9e0,"),
        "{csv}"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let steps = stdout(&o);
    assert!(steps.contains("∂f/∂z1 = ∂f/∂h1 · ∂h1/∂z1"), "{steps}");
    assert!(steps.contains("= -0.045177 · z2"), "{steps}");
}

#[test]
fn bench_vision_profile_splits_the_step_by_kernel_call() {
    let args = [
        "bench",
        "vision",
        "--model",
        "cnn-bn",
        "--batch-size",
        "2",
        "--image-size",
        "32",
        "--steps",
        "2",
        "--warmup",
        "0",
        "--profile",
    ];
    let doc = json(&nabla(&[&args[..], &["--json"]].concat()));
    let profile = doc["profile"].as_array().unwrap();
    let row = |op: &str, pass: &str| {
        profile
            .iter()
            .find(|r| r["op"] == op && r["pass"] == pass)
            .unwrap_or_else(|| panic!("no {op} {pass} in {profile:?}"))
    };
    // cnn-bn's first convolution, twice (two steps), with no input gradient.
    assert_eq!(row("conv 3→32 3×3 @32×32", "forward")["calls"], 2);
    assert_eq!(
        row("conv 3→32 3×3 @32×32", "backward, no input gradient")["calls"],
        2
    );
    assert_eq!(row("batch norm 128 @4×4", "backward")["calls"], 2);
    let kernels: f64 = profile.iter().map(|r| r["seconds"].as_f64().unwrap()).sum();
    let step = doc["step_s"].as_f64().unwrap();
    assert!(
        kernels > 0.0 && kernels <= 2.0 * step,
        "{kernels} s of kernels in 2 steps of {step} s"
    );
    // The table names the rest of the step too.
    let table = stdout(&nabla(&args));
    assert!(
        table.contains("nabla's kernels, in all") && table.contains("the rest of the step"),
        "{table}"
    );
    // Without --profile the JSON has no profile.
    let plain = json(&nabla(&[&args[..args.len() - 1], &["--json"]].concat()));
    assert!(plain.get("profile").is_none(), "{plain}");
}
