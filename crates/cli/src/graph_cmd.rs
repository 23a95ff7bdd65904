//! `nabla graph`: parse a graph file, print every node's expression, value
//! and gradient, and optionally the backward steps, a gradient check and pictures.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use nabla_graph::program::{Evaluation, EXPANSION_LIMIT};
use nabla_graph::render::{self, DRAW_LIMIT};
use nabla_graph::{FdCheck, GraphError, Program, Step, StepTerm};
use serde::Serialize;

use crate::output::{number, shorten, table, write_atomic, OutputArgs};
use crate::{CheckFailed, InputError};

/// Widest expansion shown in the table.
const TABLE_EXPANSION_WIDTH: usize = 60;

/// Largest relative error `--check` accepts.
const CHECK_TOLERANCE: f64 = 1e-6;

pub const LANGUAGE_HELP: &str = "\
The graph language:
  One statement per line, `name = expression`; `#` starts a comment; blank lines are allowed.
  Names: letters, digits and `_`, starting with a letter.
  `name = NUMBER` defines an input with that value. A name used but never assigned is an input
  whose value comes from `--set name=VALUE` (repeatable; `--set` also overrides a literal).
  Expressions: numbers (2, 0.5, 1e-3), names, + - * / ^, unary minus, parentheses.
  `^` is right-associative and binds tighter than unary minus (-x^2 is -(x^2)); then * /, then + -.
  Functions of one argument: sigmoid exp log tanh relu elu sqrt sin cos abs; of two: max min pow.
  The output is the last assigned name, or `--output NAME`. Statements may come in any order.

Examples:
  nabla graph --example sheet --steps --check
  nabla graph examples/graphs/sigmoid-neuron.graph --svg neuron.svg
  nabla graph my.graph --set x=2 --set w=-1 --output h --json";

/// Graphs shipped inside the binary.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Example {
    /// The sheet's Problem 1, reconstructed (examples/graphs/sheet-problem1.graph).
    Sheet,
    /// The classic sigmoid neuron (examples/graphs/sigmoid-neuron.graph).
    Neuron,
    /// micrograd's README example, nodes with several consumers (examples/graphs/shared-nodes.graph).
    Shared,
}

impl Example {
    fn file(self) -> (&'static str, &'static str) {
        match self {
            Example::Sheet => (
                "examples/graphs/sheet-problem1.graph",
                include_str!("../../../examples/graphs/sheet-problem1.graph"),
            ),
            Example::Neuron => (
                "examples/graphs/sigmoid-neuron.graph",
                include_str!("../../../examples/graphs/sigmoid-neuron.graph"),
            ),
            Example::Shared => (
                "examples/graphs/shared-nodes.graph",
                include_str!("../../../examples/graphs/shared-nodes.graph"),
            ),
        }
    }
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// The graph file to read.
    #[arg(required_unless_present = "example", conflicts_with = "example")]
    pub file: Option<PathBuf>,
    /// Run a built-in example instead of a file.
    #[arg(long, value_enum)]
    pub example: Option<Example>,
    /// Give an input a value: `--set x1=2` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, f64)>,
    /// The node to differentiate (default: the last assigned name).
    #[arg(long, value_name = "NAME")]
    pub output: Option<String>,
    /// Write out the backward pass step by step, as a student would.
    #[arg(long)]
    pub steps: bool,
    /// Check every input's gradient against central finite differences (exit 1 above 1e-6).
    #[arg(long)]
    pub check: bool,
    /// Draw the graph as SVG into FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write the graph in Graphviz DOT into FILE.
    #[arg(long, value_name = "FILE")]
    pub dot: Option<PathBuf>,
    #[command(flatten)]
    pub output_args: OutputArgs,
}

fn parse_set(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("`{s}`: the value must be finite"));
    }
    Ok((name.trim().to_string(), value))
}

#[derive(Serialize)]
struct NodeReport {
    name: String,
    kind: &'static str,
    expression: String,
    expanded: String,
    value: f64,
    gradient: f64,
}

#[derive(Serialize)]
struct CheckReport {
    tolerance: f64,
    max_relative_error: f64,
    passed: bool,
    inputs: Vec<FdCheck>,
}

#[derive(Serialize)]
struct GraphReport {
    file: String,
    output: String,
    nodes: Vec<NodeReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<Step>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<CheckReport>,
}

/// `file:line:col: message`, then the offending line with a caret under the column.
fn located(file: &str, source: &str, e: &GraphError) -> InputError {
    let Some(pos) = e.pos else {
        return InputError(format!("{file}: {e}"));
    };
    let line = source.lines().nth(pos.line - 1).unwrap_or("");
    let gutter = pos.line.to_string();
    let pad = " ".repeat(gutter.len());
    InputError(format!(
        "{file}:{pos}: {}\n {pad} |\n {gutter} | {line}\n {pad} | {}^",
        e.kind,
        " ".repeat(pos.col.saturating_sub(1))
    ))
}

pub fn run(args: &GraphArgs) -> Result<()> {
    let (file, source) = match (&args.file, args.example) {
        (_, Some(example)) => {
            let (name, text) = example.file();
            (name.to_string(), text.to_string())
        }
        (Some(path), None) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| InputError(format!("cannot read {}: {e}", path.display())))?,
        ),
        (None, None) => unreachable!("clap requires a file or --example"),
    };
    let program = Program::compile(&source, &args.sets, args.output.as_deref())
        .map_err(|e| located(&file, &source, &e))?;
    let eval = program
        .evaluate()
        .map_err(|e| located(&file, &source, &e))?;

    let expansions = program.expansions();
    let nodes: Vec<NodeReport> = program
        .nodes
        .iter()
        .zip(&expansions)
        .map(|(n, expanded)| NodeReport {
            name: n.name.clone(),
            kind: if n.is_input() { "input" } else { "computed" },
            expression: n.expression(&eval.values),
            expanded: expanded.clone(),
            value: eval.values[n.id.index()],
            gradient: eval.grads[n.id.index()],
        })
        .collect();
    let steps = if args.steps {
        Some(
            program
                .steps(&eval)
                .map_err(|e| located(&file, &source, &e))?,
        )
    } else {
        None
    };
    let check = if args.check {
        let inputs = program
            .check_gradients(&eval)
            .map_err(|e| located(&file, &source, &e))?;
        let max = inputs.iter().map(|c| c.relative_error).fold(0.0, f64::max);
        Some(CheckReport {
            tolerance: CHECK_TOLERANCE,
            max_relative_error: max,
            passed: max <= CHECK_TOLERANCE,
            inputs,
        })
    } else {
        None
    };
    let report = GraphReport {
        file,
        output: program.output_node().name.clone(),
        nodes,
        steps,
        check,
    };

    write_pictures(args, &program, &eval)?;
    write_out_dir(&args.output_args, &program, &eval, &report)?;

    if args.output_args.json {
        OutputArgs::print_json(&report)?;
    } else {
        print!("{}", human(&report));
    }
    match &report.check {
        Some(c) if !c.passed => Err(CheckFailed(format!(
            "gradient check failed: largest relative error {:.3e} > {CHECK_TOLERANCE:e}",
            c.max_relative_error
        ))
        .into()),
        _ => Ok(()),
    }
}

fn write_pictures(args: &GraphArgs, program: &Program, eval: &Evaluation) -> Result<()> {
    if let Some(path) = &args.dot {
        let dot = render::to_dot(program, eval).map_err(|e| InputError(format!("--dot: {e}")))?;
        write_atomic(path, dot.as_bytes())?;
    }
    if let Some(path) = &args.svg {
        let svg = render::to_svg(program, eval).map_err(|e| InputError(format!("--svg: {e}")))?;
        write_atomic(path, svg.as_bytes())?;
    }
    Ok(())
}

fn write_out_dir(
    out: &OutputArgs,
    program: &Program,
    eval: &Evaluation,
    report: &GraphReport,
) -> Result<()> {
    if out.out.is_none() {
        return Ok(());
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "name",
        "kind",
        "expression",
        "expanded",
        "value",
        "gradient",
    ])?;
    for n in &report.nodes {
        csv.write_record([
            n.name.clone(),
            n.kind.to_string(),
            n.expression.clone(),
            n.expanded.clone(),
            format!("{:e}", n.value),
            format!("{:e}", n.gradient),
        ])?;
    }
    out.write_file("nodes.csv", &csv.into_inner().context("cannot encode CSV")?)?;
    out.write_file(
        "graph.json",
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    if program.graph.len() > DRAW_LIMIT {
        eprintln!(
            "note: the graph has {} nodes; pictures are drawn up to {DRAW_LIMIT}, so graph.svg and graph.dot are skipped",
            program.graph.len()
        );
        return Ok(());
    }
    out.write_file("graph.dot", render::to_dot(program, eval)?.as_bytes())?;
    out.write_file("graph.svg", render::to_svg(program, eval)?.as_bytes())?;
    Ok(())
}

fn human(report: &GraphReport) -> String {
    let f = &report.output;
    let mut s = format!(
        "{}: output {f}, {} named nodes\n\n",
        report.file,
        report.nodes.len()
    );
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|n| {
            let expression = if n.kind == "input" {
                "input".to_string()
            } else {
                format!("{} = {}", n.name, n.expression)
            };
            vec![
                n.name.clone(),
                expression,
                number(n.value),
                number(n.gradient),
                shorten(&n.expanded, TABLE_EXPANSION_WIDTH),
            ]
        })
        .collect();
    let grad_header = format!("∂{f}/∂node");
    s += &table(
        &[
            "node",
            "expression",
            "value",
            &grad_header,
            "expanded down to the inputs",
        ],
        &rows,
    );
    if report
        .nodes
        .iter()
        .any(|n| n.expanded.chars().count() > TABLE_EXPANSION_WIDTH)
    {
        s += &format!(
            "(expansions are cut at {TABLE_EXPANSION_WIDTH} characters here, at {EXPANSION_LIMIT} in --json)\n"
        );
    }

    if let Some(steps) = &report.steps {
        s +=
            &format!("\nBackward pass: ∂{f}/∂n = Σ over the consumers c of n of ∂{f}/∂c · ∂c/∂n\n");
        for step in steps {
            let n = &step.node;
            s.push('\n');
            if n == f {
                s += &format!("∂{f}/∂{f} = 1\n");
                continue;
            }
            if step.terms.is_empty() {
                s += &format!("∂{f}/∂{n} = 0   ({f} does not use {n})\n");
                continue;
            }
            let lead = format!("∂{f}/∂{n} = ");
            let indent = " ".repeat(lead.chars().count() - 2) + "= ";
            let terms = |each: &dyn Fn(&StepTerm) -> String| {
                step.terms.iter().map(each).collect::<Vec<_>>().join(" + ")
            };
            s += &format!(
                "{lead}{}\n",
                terms(&|t| format!("∂{f}/∂{c} · ∂{c}/∂{n}", c = t.consumer))
            );
            s += &format!(
                "{indent}{}\n",
                terms(&|t| format!(
                    "{} · {}",
                    number(t.consumer_gradient),
                    wrap(&t.local_symbolic)
                ))
            );
            s += &format!(
                "{indent}{} = {}\n",
                terms(&|t| format!(
                    "{} · {}",
                    number(t.consumer_gradient),
                    number(t.local_value)
                )),
                number(step.gradient)
            );
        }
    }

    if let Some(check) = &report.check {
        s += "\nGradient check: central finite differences in f64, error |g − g_fd| / max(1, |g|, |g_fd|)\n";
        let rows: Vec<Vec<String>> = check
            .inputs
            .iter()
            .map(|c| {
                vec![
                    c.input.clone(),
                    number(c.autodiff),
                    number(c.finite_difference),
                    format!("{:.2e}", c.relative_error),
                ]
            })
            .collect();
        s += &table(&["input", "autodiff", "finite difference", "error"], &rows);
        s += &format!(
            "largest error {:.2e} (tolerance {CHECK_TOLERANCE:e}): {}\n",
            check.max_relative_error,
            if check.passed { "passed" } else { "FAILED" }
        );
    }
    s
}

/// Parenthesises a local derivative that is more than one term.
fn wrap(expr: &str) -> String {
    if expr.contains(' ') {
        format!("({expr})")
    } else {
        expr.to_string()
    }
}
