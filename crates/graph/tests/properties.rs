//! Random graphs: reverse-mode gradients against central finite differences.

use nabla_graph::{program::relative_error, Program};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// Ways to combine earlier nodes. Each is smooth, defined for any real
/// arguments and maps [-2, 2]² into [-2, 2] with moderate slopes, so values
/// and curvature stay bounded however deep the graph and finite differences
/// stay meaningful.
fn combine(kind: u8, a: &str, b: &str) -> String {
    match kind % 11 {
        0 => format!("({a} + {b}) / 2"),
        1 => format!("({a} - {b}) / 2"),
        2 => format!("{a} * {b} / 2"),
        3 => format!("{a} / (1 + {b}^2)"),
        4 => format!("sin({a}) * {b}"),
        5 => format!("cos({a} - {b})"),
        6 => format!("tanh({a}) + sigmoid({b})"),
        7 => format!("exp(tanh({a}) - 1) * {b}"),
        8 => format!("(log(1 + {a}^2) - {b}) / 2"),
        9 => format!("sqrt(1 + {a}^2) * sigmoid({b}) - 1"),
        _ => format!("-{a}^2 / (3 + cos({b}))"),
    }
}

fn program_strategy() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(-2.0f64..2.0, 1..5),
        proptest::collection::vec(
            (
                any::<u8>(),
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
            ),
            1..25,
        ),
    )
        .prop_map(|(inputs, ops)| {
            let mut src = String::new();
            let mut names: Vec<String> = Vec::new();
            for (i, v) in inputs.iter().enumerate() {
                src += &format!("x{i} = {v}\n");
                names.push(format!("x{i}"));
            }
            for (j, (kind, a, b)) in ops.iter().enumerate() {
                let (a, b) = (a.get(&names).clone(), b.get(&names).clone());
                let name = format!("n{j}");
                src += &format!("{name} = {}\n", combine(*kind, &a, &b));
                names.push(name);
            }
            src
        })
}

proptest! {
    // A fixed seed keeps CI repeatable; PROPTEST_RNG_SEED=N or
    // PROPTEST_CASES=N (default 256) explore further.
    #![proptest_config({
        let config = ProptestConfig::default();
        let rng_seed = match config.rng_seed {
            RngSeed::Random => RngSeed::Fixed(20_231_127),
            seed => seed,
        };
        ProptestConfig { rng_seed, ..config }
    })]

    #[test]
    fn gradients_match_finite_differences(src in program_strategy()) {
        let program = Program::compile(&src, &[], None).unwrap();
        let eval = program.evaluate().unwrap();
        for check in program.check_gradients(&eval).unwrap() {
            prop_assert!(
                relative_error(check.autodiff, check.finite_difference) < 1e-6,
                "{src}\n{check:?}"
            );
        }
    }
}
