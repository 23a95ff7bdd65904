//! One test per error class of the graph language: message and position.

use nabla_graph::{ErrorKind, GraphError, Pos, Program};

fn err(source: &str, sets: &[(&str, f64)], output: Option<&str>) -> GraphError {
    let sets: Vec<(String, f64)> = sets.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    match Program::compile(source, &sets, output) {
        Err(e) => e,
        Ok(p) => p.evaluate().expect_err("expected an error"),
    }
}

fn at(line: usize, col: usize) -> Option<Pos> {
    Some(Pos { line, col })
}

#[test]
fn syntax_error_says_what_was_expected() {
    let e = err("x = 1\ny = x + * 2\n", &[], None);
    assert_eq!(e.pos, at(2, 9));
    assert_eq!(
        e.to_string(),
        "2:9: syntax error: expected a number, a name, a function call or `(`, found `*`"
    );
    let e = err("y = (x + 1\n", &[], None);
    assert_eq!(e.pos, at(1, 11));
    assert!(
        e.to_string()
            .contains("expected `)` to close the `(` at column 5, found end of line"),
        "{e}"
    );
    let e = err("y x + 1\n", &[], None);
    assert_eq!(e.pos, at(1, 3));
    assert!(e.to_string().contains("expected `=` after the name"), "{e}");
    let e = err("y = x $ 2\n", &[], None);
    assert_eq!(e.pos, at(1, 7));
    assert!(e.to_string().contains("unexpected character `$`"), "{e}");
    let e = err("y = x 2\n", &[], None);
    assert!(
        e.to_string()
            .contains("expected an operator or the end of the line, found number 2"),
        "{e}"
    );
    let e = err("3 = x\n", &[], None);
    assert_eq!(e.pos, at(1, 1));
}

#[test]
fn unknown_function() {
    let e = err("x = 1\ny = 2 * softplus(x)\n", &[], None);
    assert_eq!(e.pos, at(2, 9));
    assert_eq!(e.kind, ErrorKind::UnknownFunction("softplus".into()));
    assert!(e.to_string().contains("expected one of sigmoid"), "{e}");
}

#[test]
fn wrong_number_of_arguments() {
    let e = err("x = 1\ny = max(x)\n", &[], None);
    assert_eq!(e.pos, at(2, 5));
    assert_eq!(e.to_string(), "2:5: `max` takes 2 arguments, found 1");
    let e = err("x = 1\ny = exp(x, x)\n", &[], None);
    assert_eq!(e.to_string(), "2:5: `exp` takes 1 argument, found 2");
}

#[test]
fn name_assigned_twice() {
    let e = err("x = 1\ny = x\n\ny = 2 * x\n", &[], None);
    assert_eq!(e.pos, at(4, 1));
    assert_eq!(
        e.to_string(),
        "4:1: `y` is assigned twice (first on line 2)"
    );
}

#[test]
fn cycle() {
    let e = err("x = 1\na = b + x\nb = c * 2\nc = a\nf = a\n", &[], None);
    assert_eq!(e.pos, at(2, 1));
    assert_eq!(e.to_string(), "2:1: cycle: a -> b -> c -> a");
    let e = err("a = a + 1\n", &[], None);
    assert_eq!(e.to_string(), "1:1: cycle: a -> a");
}

#[test]
fn input_with_no_value() {
    let e = err("w = 2\nf = w * x\n", &[], None);
    assert_eq!(e.pos, at(2, 9));
    assert_eq!(e.kind, ErrorKind::MissingInput("x".into()));
    assert!(e.to_string().contains("--set x=VALUE"), "{e}");
    assert!(Program::compile("w = 2\nf = w * x\n", &[("x".into(), 1.0)], None).is_ok());
}

#[test]
fn bad_set_and_output_flags() {
    assert_eq!(
        err("x = 1\nf = x\n", &[("y", 1.0)], None).kind,
        ErrorKind::UnknownSet("y".into())
    );
    assert_eq!(
        err("x = 1\nf = x\n", &[("f", 1.0)], None).kind,
        ErrorKind::SetComputed("f".into())
    );
    assert_eq!(
        err("x = 1\nf = x\n", &[], Some("g")).kind,
        ErrorKind::UnknownOutput("g".into())
    );
    assert_eq!(err("# nothing\n", &[], None).kind, ErrorKind::Empty);
}

#[test]
fn domain_errors_name_the_node_where_they_first_happen() {
    let cases = [
        (
            "x = -1\nok = exp(x)\nz = 2 * log(x)\nf = z + ok\n",
            (3, 9),
            "log of a non-positive number (log(-1)) in node `z`",
        ),
        (
            "x = -4\nr = sqrt(x)\n",
            (2, 5),
            "square root of a negative number (sqrt(-4)) in node `r`",
        ),
        (
            "x = 2\nq = 1 / (x - 2)\n",
            (2, 7),
            "division by zero in node `q`",
        ),
        (
            "x = -8\nq = x ^ (1/3)\n",
            (2, 7),
            "negative base raised to a fractional power",
        ),
        (
            "x = 800\nq = exp(x)\n",
            (2, 5),
            "the value is not finite (inf) in node `q`",
        ),
        (
            "x = 0\nq = sqrt(x) + 1\n",
            (1, 1),
            "the gradient is not finite (inf) in node `x`",
        ),
        (
            "x = -2\ny = 3\nq = x ^ y\n",
            (3, 7),
            "undefined for a negative base a = -2 in node `q`",
        ),
    ];
    for (src, (line, col), message) in cases {
        let e = err(src, &[], None);
        assert_eq!(e.pos, at(line, col), "{src}: {e}");
        assert!(e.to_string().contains(message), "{src}: {e}");
    }
}
