//! What `nabla graph` reports about a program, as one typed value: every
//! node's expression, value and gradient, optionally the written-out
//! backward pass and the finite-difference check. The terminal text, the
//! files of `--out` and Problem 1's report section are all written from it.

use nabla_report::{number, shorten, Outcome, OutputFile, Provenance, Section, Table};
use serde::{Deserialize, Serialize};

use crate::program::{Evaluation, FdCheck, Program, Step, StepTerm, EXPANSION_LIMIT};
use crate::render::{self, RenderError, DRAW_LIMIT};
use crate::GraphError;

/// Largest relative error the gradient check accepts.
pub const CHECK_TOLERANCE: f64 = 1e-6;

/// Widest expansion shown in the terminal table.
const TABLE_EXPANSION_WIDTH: usize = 60;

/// Whether a named node is a leaf or computed from others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Input,
    Computed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeReport {
    pub name: String,
    pub kind: Role,
    /// The right-hand side in the node's direct inputs (its value for an input).
    pub expression: String,
    /// The same expanded down to the inputs (cut at [`EXPANSION_LIMIT`]).
    pub expanded: String,
    pub value: f64,
    /// ∂output/∂node.
    pub gradient: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckReport {
    pub tolerance: f64,
    pub max_relative_error: f64,
    pub passed: bool,
    pub inputs: Vec<FdCheck>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GraphReport {
    /// The file (or built-in example) the program came from.
    pub file: String,
    /// The node differentiated.
    pub output: String,
    pub nodes: Vec<NodeReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Step>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckReport>,
}

impl GraphReport {
    /// The report of `program` evaluated as `eval`, with the backward steps
    /// and the gradient check when asked for.
    pub fn new(
        file: &str,
        program: &Program,
        eval: &Evaluation,
        with_steps: bool,
        with_check: bool,
    ) -> Result<Self, GraphError> {
        let nodes = program
            .nodes
            .iter()
            .zip(program.expansions())
            .map(|(n, expanded)| NodeReport {
                name: n.name.clone(),
                kind: if n.is_input() {
                    Role::Input
                } else {
                    Role::Computed
                },
                expression: n.expression(&eval.values),
                expanded,
                value: eval.values[n.id.index()],
                gradient: eval.grads[n.id.index()],
            })
            .collect();
        let steps = with_steps.then(|| program.steps(eval)).transpose()?;
        let check = with_check
            .then(|| program.check_gradients(eval))
            .transpose()?
            .map(|inputs| {
                let max = inputs.iter().map(|c| c.relative_error).fold(0.0, f64::max);
                CheckReport {
                    tolerance: CHECK_TOLERANCE,
                    max_relative_error: max,
                    passed: max <= CHECK_TOLERANCE,
                    inputs,
                }
            });
        Ok(GraphReport {
            file: file.to_string(),
            output: program.output_node().name.clone(),
            nodes,
            steps,
            check,
        })
    }

    /// The output node's value.
    pub fn output_value(&self) -> f64 {
        self.nodes
            .iter()
            .find(|n| n.name == self.output)
            .map_or(f64::NAN, |n| n.value)
    }

    /// Every node: definition, value, gradient and expansion (`width` cuts the expansion).
    fn nodes_table(&self, width: usize) -> Table {
        let rows = self
            .nodes
            .iter()
            .map(|n| {
                let expression = match n.kind {
                    Role::Input => "input".to_string(),
                    Role::Computed => format!("{} = {}", n.name, n.expression),
                };
                vec![
                    n.name.clone(),
                    expression,
                    number(n.value),
                    number(n.gradient),
                    shorten(&n.expanded, width),
                ]
            })
            .collect();
        let gradient = format!("∂{}/∂node", self.output);
        Table::new(
            "Nodes",
            &[
                "node",
                "expression",
                "value",
                &gradient,
                "expanded down to the inputs",
            ],
            rows,
        )
    }

    /// `nodes.csv`, `graph.json` and, up to [`DRAW_LIMIT`] nodes, `graph.dot`
    /// and `graph.svg`; the second value says when the pictures were left out.
    pub fn files(
        &self,
        program: &Program,
        eval: &Evaluation,
    ) -> Result<(Vec<OutputFile>, Option<String>), RenderError> {
        let rows = self
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    match n.kind {
                        Role::Input => "input".into(),
                        Role::Computed => "computed".into(),
                    },
                    n.expression.clone(),
                    n.expanded.clone(),
                    format!("{:e}", n.value),
                    format!("{:e}", n.gradient),
                ]
            })
            .collect();
        let csv = Table::new(
            "",
            &[
                "name",
                "kind",
                "expression",
                "expanded",
                "value",
                "gradient",
            ],
            rows,
        );
        let mut files = vec![
            OutputFile::new("nodes.csv", csv.to_csv()),
            OutputFile::json("graph.json", self),
        ];
        if program.graph.len() > DRAW_LIMIT {
            let note = format!(
                "the graph has {} nodes; pictures are drawn up to {DRAW_LIMIT}, so graph.svg and graph.dot are skipped",
                program.graph.len()
            );
            return Ok((files, Some(note)));
        }
        files.push(OutputFile::new("graph.dot", render::to_dot(program, eval)?));
        files.push(OutputFile::new("graph.svg", render::to_svg(program, eval)?));
        Ok((files, None))
    }

    /// What `nabla graph` prints: the node table, then the steps and the check when present.
    pub fn to_text(&self) -> String {
        let f = &self.output;
        let mut s = format!(
            "{}: output {f}, {} named nodes\n\n",
            self.file,
            self.nodes.len()
        );
        s += &self.nodes_table(TABLE_EXPANSION_WIDTH).to_text();
        if self
            .nodes
            .iter()
            .any(|n| n.expanded.chars().count() > TABLE_EXPANSION_WIDTH)
        {
            s += &format!(
                "(expansions are cut at {TABLE_EXPANSION_WIDTH} characters here, at {EXPANSION_LIMIT} in --json)\n"
            );
        }
        if let Some(steps) = &self.steps {
            s += &format!(
                "\nBackward pass: ∂{f}/∂n = Σ over the consumers c of n of ∂{f}/∂c · ∂c/∂n\n"
            );
            for step in steps {
                s.push('\n');
                s += &step_text(f, step);
            }
        }
        if let Some(check) = &self.check {
            s += "\nGradient check: central finite differences in f64, error |g − g_fd| / max(1, |g|, |g_fd|)\n";
            s += &check_table(check).to_text();
            s += &format!(
                "largest error {:.2e} (tolerance {:e}): {}\n",
                check.max_relative_error,
                check.tolerance,
                if check.passed { "passed" } else { "FAILED" }
            );
        }
        s
    }
}

/// One backward step as a student writes it: the chain rule, the local
/// derivatives, the numbers.
fn step_text(f: &str, step: &Step) -> String {
    let n = &step.node;
    if n == f {
        return format!("∂{f}/∂{f} = 1\n");
    }
    if step.terms.is_empty() {
        return format!("∂{f}/∂{n} = 0   ({f} does not use {n})\n");
    }
    let lead = format!("∂{f}/∂{n} = ");
    let indent = " ".repeat(lead.chars().count() - 2) + "= ";
    let terms = |each: &dyn Fn(&StepTerm) -> String| {
        step.terms.iter().map(each).collect::<Vec<_>>().join(" + ")
    };
    let mut s = format!(
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
    s
}

fn check_table(check: &CheckReport) -> Table {
    let rows = check
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
    Table::new(
        "Gradient check",
        &["input", "autodiff", "finite difference", "error"],
        rows,
    )
}

/// Parenthesises a local derivative that is more than one term.
fn wrap(expr: &str) -> String {
    if expr.contains(' ') {
        format!("({expr})")
    } else {
        expr.to_string()
    }
}

/// The picture a run wrote beside its report (pictures are laid out from
/// the program, which the report does not carry).
fn picture(run: &Provenance) -> Result<String, String> {
    let path = run.dir.join("graph.svg");
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Problem 1's report section: the sheet's graph in (i)–(iii), then `others`
/// in brief, each `(id, what it is, outcome)`; `id` names its figure.
pub fn section(
    sheet: &Outcome<GraphReport>,
    others: &[(&str, &str, &Outcome<GraphReport>)],
) -> Section {
    let mut s = Section::new("problem-1", "Problem 1: Computational graph");
    s.text("The sheet's figure is missing; nabla reconstructs the graph from the sheet's text (h₂ = w₃ + z₃, σ at the output) in examples/graphs/sheet-problem1.graph. The graph language accepts any scalar graph; two more examples follow.");
    match sheet {
        Ok((report, run)) => {
            s.command(&run.command);
            s.subsections.extend(sheet_subsections(report, run));
        }
        Err(reason) => {
            s.failure(reason);
        }
    }
    let mut more = Section::new("problem-1-more", "Two more graphs");
    for (id, what, outcome) in others {
        match outcome {
            Ok((report, run)) => {
                let passed = report.check.as_ref().is_some_and(|c| c.passed);
                more.text(format!(
                    "{what}: output {} = {}; gradient check {}.",
                    report.output,
                    number(report.output_value()),
                    if passed { "passed" } else { "FAILED" }
                ));
                more.command(&run.command);
                more.chart(what, &format!("p1-{id}.svg"), picture(run));
            }
            Err(reason) => {
                more.failure(format!("{what}: {reason}"));
            }
        }
    }
    s.subsections.push(more);
    s
}

fn sheet_subsections(r: &GraphReport, run: &Provenance) -> [Section; 3] {
    let mut expressions = Section::new(
        "problem-1-i",
        "(i) Each node as an expression of the inputs",
    );
    let rows = r
        .nodes
        .iter()
        .filter(|n| n.kind == Role::Computed)
        .map(|n| vec![n.name.clone(), n.expression.clone(), n.expanded.clone()])
        .collect();
    expressions.push_table(Table::new(
        "Nodes",
        &["node", "definition", "in the inputs"],
        rows,
    ));

    let mut forward = Section::new("problem-1-ii", "(ii) Forward pass");
    let inputs: Vec<String> = r
        .nodes
        .iter()
        .filter(|n| n.kind == Role::Input)
        .map(|n| format!("{} = {}", n.name, number(n.value)))
        .collect();
    forward.text(format!(
        "At {} the output is {} = {}.",
        inputs.join(", "),
        r.output,
        number(r.output_value())
    ));
    let rows = r
        .nodes
        .iter()
        .map(|n| vec![n.name.clone(), number(n.value)])
        .collect();
    forward.push_table(Table::new("Forward values", &["node", "value"], rows));

    let mut backward = Section::new("problem-1-iii", "(iii) Backward pass");
    match &r.check {
        Some(check) => backward.text(format!(
            "Reverse mode gives every derivative in one backward sweep. Checked against Ridders-extrapolated central differences on every input: largest relative error {:.1e} (tolerance {:.0e}) — {}.",
            check.max_relative_error,
            check.tolerance,
            if check.passed { "agreement" } else { "DISAGREEMENT" }
        )),
        None => backward.failure("the run made no gradient check (--check)"),
    };
    let rows = r
        .nodes
        .iter()
        .map(|n| vec![format!("∂{}/∂{}", r.output, n.name), number(n.gradient)])
        .collect();
    backward.push_table(Table::new("Gradients", &["derivative", "value"], rows));
    backward.chart(
        "The sheet's graph: each node with its value (top) and gradient (bottom).",
        "p1-sheet-graph.svg",
        picture(run),
    );
    [expressions, forward, backward]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(source: &str) -> GraphReport {
        let program = Program::compile(source, &[], None).unwrap();
        let eval = program.evaluate().unwrap();
        GraphReport::new("test.graph", &program, &eval, true, true).unwrap()
    }

    #[test]
    fn the_report_parses_back_and_its_section_reads_its_inputs() {
        let r = report("x = 2\ny = 3\nf = x * y + x");
        let back: GraphReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.output_value(), 8.0);
        let run = Provenance {
            command: "nabla graph test.graph".into(),
            dir: "/nonexistent".into(),
        };
        let s = section(&Ok((back, run)), &[]);
        let forward = &s.subsections[1];
        assert_eq!(
            forward.blocks[0],
            nabla_report::Block::Text("At x = 2, y = 3 the output is f = 8.".into())
        );
        // ∂f/∂x = y + 1 = 4: the gradient table carries it.
        let text = r.to_text();
        assert!(text.contains("∂f/∂x = "), "{text}");
        // The picture is missing from /nonexistent: said, not hidden.
        assert!(matches!(
            s.subsections[2].blocks.last(),
            Some(nabla_report::Block::Failure(_))
        ));
    }
}
