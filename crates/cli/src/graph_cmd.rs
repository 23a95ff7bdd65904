//! `nabla graph`: parse a graph file, print every node's expression, value
//! and gradient, and optionally the backward steps, a gradient check and pictures.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use nabla_graph::render;
use nabla_graph::report::GraphReport;
use nabla_graph::{GraphError, Program};

use crate::output::{write_atomic, OutputArgs};
use crate::{CheckFailed, InputError};

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
    let at = |e: GraphError| located(&file, &source, &e);
    let program = Program::compile(&source, &args.sets, args.output.as_deref()).map_err(at)?;
    let eval = program.evaluate().map_err(at)?;
    let report = GraphReport::new(&file, &program, &eval, args.steps, args.check).map_err(at)?;

    if let Some(path) = &args.dot {
        let dot = render::to_dot(&program, &eval).map_err(|e| InputError(format!("--dot: {e}")))?;
        write_atomic(path, dot.as_bytes())?;
    }
    if let Some(path) = &args.svg {
        let svg = render::to_svg(&program, &eval).map_err(|e| InputError(format!("--svg: {e}")))?;
        write_atomic(path, svg.as_bytes())?;
    }
    if args.output_args.out.is_some() {
        let (files, note) = report.files(&program, &eval)?;
        args.output_args.write_files(&files)?;
        if let Some(note) = note {
            eprintln!("note: {note}");
        }
    }
    if args.output_args.json {
        OutputArgs::print_json(&report)?;
    } else {
        print!("{}", report.to_text());
    }
    match &report.check {
        Some(c) if !c.passed => Err(CheckFailed(format!(
            "gradient check failed: largest relative error {:.3e} > {:e}",
            c.max_relative_error, c.tolerance
        ))
        .into()),
        _ => Ok(()),
    }
}
