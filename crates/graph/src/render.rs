//! Pictures of a graph in the style of micrograd's `draw_dot`: a record per
//! value (name, value, gradient) with an operator node in front of each
//! computed value. DOT text for Graphviz users, and SVG laid out in pure
//! Rust by `layout-rs`, so no Graphviz install is needed.

use std::collections::HashMap;
use std::fmt::Write;

use layout::backends::svg::SVGWriter;
use layout::gv::{DotParser, GraphBuilder};

use crate::engine::{NodeId, Op};
use crate::program::{Evaluation, Program};

/// Above this many engine nodes a picture is unreadable and slow to lay out.
pub const DRAW_LIMIT: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the graph has {0} nodes; pictures are drawn up to {DRAW_LIMIT}")]
    TooLarge(usize),
    #[error("laying out the picture failed: {0}")]
    Layout(String),
}

fn number(v: f64) -> String {
    if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3e}")
    }
}

/// The graph in Graphviz DOT, left to right.
pub fn to_dot(program: &Program, eval: &Evaluation) -> Result<String, RenderError> {
    let graph = &program.graph;
    if graph.len() > DRAW_LIMIT {
        return Err(RenderError::TooLarge(graph.len()));
    }
    let names: HashMap<NodeId, &str> = program
        .nodes
        .iter()
        .map(|n| (n.id, n.name.as_str()))
        .collect();
    let output = program.output_node().id;
    let mut dot = String::from("digraph G {\n  rankdir=LR;\n");
    for i in 0..graph.len() {
        let id = NodeId(i as u32);
        let op = graph.op(id);
        let value = number(eval.values[i]);
        let label = match (names.get(&id), op) {
            (_, Op::Const) => format!("{{ const | {value} }}"),
            (Some(name), _) => format!(
                "{{ {name} | value {value} | grad {} }}",
                number(eval.grads[i])
            ),
            (None, _) => format!("{{ value {value} | grad {} }}", number(eval.grads[i])),
        };
        let fill = if id == output {
            "#f6c77b"
        } else if op == Op::Input {
            "#b7d7f0"
        } else if names.contains_key(&id) {
            "#d9ecd0"
        } else {
            "#f2f2f2"
        };
        let _ = writeln!(
            dot,
            "  v{i} [shape=record, style=filled, fillcolor=\"{fill}\", label=\"{label}\"];"
        );
        let symbol = match op {
            Op::Input | Op::Const => continue,
            Op::Identity(_) => "=".to_string(),
            Op::Neg(_) => "neg".to_string(),
            Op::Unary(f, _) => f.name().to_string(),
            Op::Binary(b, _, _) => b.symbol().to_string(),
        };
        let _ = writeln!(dot, "  op{i} [shape=circle, label=\"{symbol}\"];");
        for a in op.args() {
            let _ = writeln!(dot, "  v{} -> op{i};", a.index());
        }
        let _ = writeln!(dot, "  op{i} -> v{i};");
    }
    dot.push_str("}\n");
    Ok(dot)
}

/// The same picture as SVG.
pub fn to_svg(program: &Program, eval: &Evaluation) -> Result<String, RenderError> {
    let dot = to_dot(program, eval)?;
    let mut parser = DotParser::new(&dot);
    let ast = parser.process().map_err(RenderError::Layout)?;
    let mut builder = GraphBuilder::new();
    builder.visit_graph(&ast);
    let mut visual = builder.get();
    let mut svg = SVGWriter::new();
    visual.do_it(false, false, false, &mut svg);
    Ok(svg.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_a_record_per_value_and_an_operator_per_computation() {
        let p = Program::compile("a = 2\nb = -3\nf = a * b + a\n", &[], None).unwrap();
        let eval = p.evaluate().unwrap();
        let dot = to_dot(&p, &eval).unwrap();
        assert_eq!(dot.matches("shape=record").count(), 4);
        assert_eq!(dot.matches("shape=circle").count(), 2);
        assert!(dot.contains("{ f | value -4 | grad 1 }"), "{dot}");
        assert!(dot.contains("{ a | value 2 | grad -2 }"), "{dot}");
        let svg = to_svg(&p, &eval).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"));
        assert!(svg.contains("grad -2"));
    }
}
