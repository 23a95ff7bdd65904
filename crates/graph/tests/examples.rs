//! The shipped examples against numbers published elsewhere.

use nabla_graph::Program;

fn run(file: &str) -> (Program, nabla_graph::Evaluation) {
    let path = format!(
        "{}/../../examples/graphs/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let source = std::fs::read_to_string(path).unwrap();
    let program = Program::compile(&source, &[], None).unwrap();
    let eval = program.evaluate().unwrap();
    (program, eval)
}

fn get(p: &Program, e: &nabla_graph::Evaluation, name: &str) -> (f64, f64) {
    let n = p.nodes.iter().find(|n| n.name == name).unwrap();
    (e.values[n.id.index()], e.grads[n.id.index()])
}

#[test]
fn micrograd_readme_numbers() {
    let (p, e) = run("shared-nodes.graph");
    assert!((get(&p, &e, "g").0 - 24.7041).abs() < 5e-5);
    assert!((get(&p, &e, "a").1 - 138.8338).abs() < 5e-5);
    assert!((get(&p, &e, "b").1 - 645.5773).abs() < 5e-5);
}

#[test]
fn cs231n_sigmoid_neuron_numbers() {
    let (p, e) = run("sigmoid-neuron.graph");
    assert!((get(&p, &e, "f").0 - 0.73).abs() < 5e-3);
    assert!((get(&p, &e, "w0").1 - -0.20).abs() < 5e-3);
    assert!((get(&p, &e, "x0").1 - 0.39).abs() < 5e-3);
}

#[test]
fn sheet_problem1_closed_form() {
    // f = σ(w3 + w4 x3 − w1 x1 w2 x2) = σ(3); σ'(3) = σ(3)(1 − σ(3)).
    let (p, e) = run("sheet-problem1.graph");
    let s = 1.0 / (1.0 + (-3f64).exp());
    let ds = s * (1.0 - s);
    assert!((get(&p, &e, "f").0 - s).abs() < 1e-15);
    assert!((get(&p, &e, "w3").1 - ds).abs() < 1e-15);
    assert!((get(&p, &e, "x1").1 - -ds * 2.0 * 3.0).abs() < 1e-15);
    assert!((get(&p, &e, "z3").1 - ds).abs() < 1e-15);
    assert!((get(&p, &e, "z1").1 - -ds * 3.0).abs() < 1e-15);
    let expanded = p.expansions();
    let f = p.nodes.iter().position(|n| n.name == "f").unwrap();
    assert_eq!(expanded[f], "sigmoid(w3 + w4 * x3 - w1 * x1 * (w2 * x2))");
}
