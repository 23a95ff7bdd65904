//! Values and gradients against PyTorch autograd in f64, frozen by
//! `tools/gen_graph_fixtures.py` (its docstring says how to rerun it).

use nabla_graph::Program;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixtures {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    source: String,
    sets: std::collections::BTreeMap<String, f64>,
    output_flag: Option<String>,
    output: String,
    nodes: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    name: String,
    value: f64,
    grad: f64,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn every_named_node_matches_pytorch_to_1e_12() {
    let text = include_str!("fixtures/torch_graphs.json");
    let fixtures: Fixtures = serde_json::from_str(text).unwrap();
    assert!(fixtures.cases.len() >= 10);
    for case in &fixtures.cases {
        let sets: Vec<(String, f64)> = case.sets.clone().into_iter().collect();
        let program = Program::compile(&case.source, &sets, case.output_flag.as_deref())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(program.output_node().name, case.output, "{}", case.name);
        let eval = program.evaluate().unwrap();
        assert_eq!(program.nodes.len(), case.nodes.len(), "{}", case.name);
        for want in &case.nodes {
            let node = program
                .nodes
                .iter()
                .find(|n| n.name == want.name)
                .unwrap_or_else(|| panic!("{}: no node {}", case.name, want.name));
            let (value, grad) = (eval.values[node.id.index()], eval.grads[node.id.index()]);
            assert!(
                close(value, want.value),
                "{} {}: value {value} vs torch {}",
                case.name,
                want.name,
                want.value
            );
            assert!(
                close(grad, want.grad),
                "{} {}: grad {grad} vs torch {}",
                case.name,
                want.name,
                want.grad
            );
        }
    }
}

/// The written-out backward pass must add up to the engine's gradients.
#[test]
fn backward_steps_sum_to_the_gradients() {
    let text = include_str!("fixtures/torch_graphs.json");
    let fixtures: Fixtures = serde_json::from_str(text).unwrap();
    for case in &fixtures.cases {
        let sets: Vec<(String, f64)> = case.sets.clone().into_iter().collect();
        let program = Program::compile(&case.source, &sets, case.output_flag.as_deref()).unwrap();
        let eval = program.evaluate().unwrap();
        for step in program.steps(&eval).unwrap() {
            if step.node == case.output {
                assert!(step.terms.is_empty());
                assert_eq!(step.gradient, 1.0);
                continue;
            }
            let sum: f64 = step
                .terms
                .iter()
                .map(|t| t.consumer_gradient * t.local_value)
                .sum();
            assert!(
                close(sum, step.gradient),
                "{} {}: {sum} vs {}",
                case.name,
                step.node,
                step.gradient
            );
        }
    }
}
