//! Symbolic expressions: printing with the fewest parentheses, and the
//! local derivatives a student writes in the backward pass (`∂h1/∂z1 = w4`).

use std::fmt::Write;

use crate::engine::{BinOp, Func};
use crate::parser::{precedence, Expr};

/// Functions that only appear in derivatives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SymFunc {
    F(Func),
    /// 1 where the argument is positive, else 0 (relu', max/min selectors).
    Step,
    /// The sign of the argument, 0 at 0 (abs').
    Sign,
    /// 1 for a positive argument, else exp(argument) (elu').
    EluPrime,
}

impl SymFunc {
    fn name(self) -> &'static str {
        match self {
            SymFunc::F(f) => f.name(),
            SymFunc::Step => "step",
            SymFunc::Sign => "sign",
            SymFunc::EluPrime => "elu'",
        }
    }
}

/// An expression without positions.
#[derive(Clone, Debug, PartialEq)]
pub enum Sym {
    Num(f64),
    Var(String),
    Neg(Box<Sym>),
    Bin(BinOp, Box<Sym>, Box<Sym>),
    Call(SymFunc, Box<Sym>),
}

const ATOM: u8 = 6;
const NEG: u8 = 3;

impl From<&Expr> for Sym {
    fn from(e: &Expr) -> Self {
        match e {
            Expr::Num(v, _) => Sym::Num(*v),
            Expr::Name(n, _) => Sym::Var(n.clone()),
            Expr::Neg(a, _) => Sym::Neg(Box::new(a.as_ref().into())),
            Expr::Binary { op, lhs, rhs, .. } => Sym::Bin(
                *op,
                Box::new(lhs.as_ref().into()),
                Box::new(rhs.as_ref().into()),
            ),
            Expr::Call(f, a, _) => Sym::Call(SymFunc::F(*f), Box::new(a.as_ref().into())),
        }
    }
}

fn num(v: f64) -> Sym {
    Sym::Num(v)
}

fn is_num(s: &Sym, v: f64) -> bool {
    matches!(s, Sym::Num(x) if *x == v)
}

/// Negates, moving the sign onto the first factor of a product so that
/// `-(f * (1 - f))` reads `-f * (1 - f)`.
fn neg(a: Sym) -> Sym {
    match a {
        Sym::Num(v) => num(-v),
        Sym::Neg(x) => *x,
        Sym::Bin(op @ (BinOp::Mul | BinOp::Div), x, y) => Sym::Bin(op, Box::new(neg(*x)), y),
        a => Sym::Neg(Box::new(a)),
    }
}

fn call(f: SymFunc, a: Sym) -> Sym {
    Sym::Call(f, Box::new(a))
}

/// Builds `a op b`, folding numbers and dropping neutral elements.
fn bin(op: BinOp, a: Sym, b: Sym) -> Sym {
    if let (Sym::Num(x), Sym::Num(y)) = (&a, &b) {
        if let Ok(v) = op.apply(*x, *y) {
            return num(v);
        }
    }
    match op {
        BinOp::Add if is_num(&a, 0.0) => b,
        BinOp::Add | BinOp::Sub if is_num(&b, 0.0) => a,
        BinOp::Sub if is_num(&a, 0.0) => neg(b),
        BinOp::Mul if is_num(&a, 0.0) || is_num(&b, 0.0) => num(0.0),
        BinOp::Mul if is_num(&a, 1.0) => b,
        BinOp::Mul | BinOp::Div if is_num(&b, 1.0) => a,
        BinOp::Mul if is_num(&a, -1.0) => neg(b),
        BinOp::Mul if is_num(&b, -1.0) => neg(a),
        BinOp::Div if is_num(&a, 0.0) => num(0.0),
        BinOp::Pow if is_num(&b, 1.0) => a,
        BinOp::Pow if is_num(&b, 0.0) => num(1.0),
        _ => Sym::Bin(op, Box::new(a), Box::new(b)),
    }
}

fn add(a: Sym, b: Sym) -> Sym {
    bin(BinOp::Add, a, b)
}
fn sub(a: Sym, b: Sym) -> Sym {
    bin(BinOp::Sub, a, b)
}
fn mul(a: Sym, b: Sym) -> Sym {
    bin(BinOp::Mul, a, b)
}
fn div(a: Sym, b: Sym) -> Sym {
    bin(BinOp::Div, a, b)
}
fn pow(a: Sym, b: Sym) -> Sym {
    bin(BinOp::Pow, a, b)
}

impl Sym {
    /// Whether the expression reads `var`.
    pub fn uses(&self, var: &str) -> bool {
        match self {
            Sym::Num(_) => false,
            Sym::Var(v) => v == var,
            Sym::Neg(a) | Sym::Call(_, a) => a.uses(var),
            Sym::Bin(_, a, b) => a.uses(var) || b.uses(var),
        }
    }

    /// ∂self/∂var, simplified.
    pub fn derivative(&self, var: &str) -> Sym {
        match self {
            Sym::Num(_) => num(0.0),
            Sym::Var(v) => num(f64::from(u8::from(v == var))),
            Sym::Neg(a) => neg(a.derivative(var)),
            Sym::Bin(op, a, b) => {
                let (a, b) = (a.as_ref(), b.as_ref());
                let (da, db) = (a.derivative(var), b.derivative(var));
                match op {
                    BinOp::Add => add(da, db),
                    BinOp::Sub => sub(da, db),
                    BinOp::Mul => add(mul(da, b.clone()), mul(a.clone(), db)),
                    BinOp::Div if is_num(&db, 0.0) => div(da, b.clone()),
                    BinOp::Div => div(
                        sub(mul(da, b.clone()), mul(a.clone(), db)),
                        pow(b.clone(), num(2.0)),
                    ),
                    BinOp::Pow if !b.uses(var) => {
                        mul(mul(b.clone(), pow(a.clone(), sub(b.clone(), num(1.0)))), da)
                    }
                    BinOp::Pow if !a.uses(var) => mul(
                        mul(self.clone(), call(SymFunc::F(Func::Log), a.clone())),
                        db,
                    ),
                    BinOp::Pow => mul(
                        self.clone(),
                        add(
                            mul(db, call(SymFunc::F(Func::Log), a.clone())),
                            div(mul(b.clone(), da), a.clone()),
                        ),
                    ),
                    BinOp::Max | BinOp::Min => {
                        let (first, second) = if *op == BinOp::Max { (a, b) } else { (b, a) };
                        let a_wins = call(SymFunc::Step, sub(first.clone(), second.clone()));
                        let b_wins = call(SymFunc::Step, sub(second.clone(), first.clone()));
                        add(mul(a_wins, da), mul(b_wins, db))
                    }
                }
            }
            Sym::Call(f, a) => {
                let da = a.derivative(var);
                if is_num(&da, 0.0) {
                    return num(0.0);
                }
                let u = a.as_ref().clone();
                let outer = match f {
                    SymFunc::F(Func::Sigmoid) => mul(self.clone(), sub(num(1.0), self.clone())),
                    SymFunc::F(Func::Exp) => self.clone(),
                    SymFunc::F(Func::Log) => div(num(1.0), u),
                    SymFunc::F(Func::Tanh) => sub(num(1.0), pow(self.clone(), num(2.0))),
                    SymFunc::F(Func::Relu) => call(SymFunc::Step, u),
                    SymFunc::F(Func::Elu) => call(SymFunc::EluPrime, u),
                    SymFunc::F(Func::Sqrt) => div(num(1.0), mul(num(2.0), self.clone())),
                    SymFunc::F(Func::Sin) => call(SymFunc::F(Func::Cos), u),
                    SymFunc::F(Func::Cos) => neg(call(SymFunc::F(Func::Sin), u)),
                    SymFunc::F(Func::Abs) => call(SymFunc::Sign, u),
                    // Derivatives of the derivative-only functions are never asked for.
                    SymFunc::Step | SymFunc::Sign | SymFunc::EluPrime => num(0.0),
                };
                mul(outer, da)
            }
        }
    }

    /// Replaces every copy of `whole` by the variable `name`, so the
    /// derivative of `f = sigmoid(u)` reads `f * (1 - f)`.
    pub fn abbreviate(self, whole: &Sym, name: &str) -> Sym {
        if &self == whole {
            return Sym::Var(name.to_string());
        }
        match self {
            Sym::Neg(a) => neg(a.abbreviate(whole, name)),
            Sym::Call(f, a) => call(f, a.abbreviate(whole, name)),
            Sym::Bin(op, a, b) => Sym::Bin(
                op,
                Box::new(a.abbreviate(whole, name)),
                Box::new(b.abbreviate(whole, name)),
            ),
            s => s,
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Sym::Num(v) if *v < 0.0 => NEG,
            Sym::Num(_) | Sym::Var(_) | Sym::Call(..) => ATOM,
            Sym::Neg(_) => NEG,
            Sym::Bin(op, ..) => precedence(*op),
        }
    }

    /// Prints the expression, asking `var` for the text and precedence of each
    /// variable (so a caller can substitute expansions).
    pub fn write_with(&self, out: &mut String, var: &dyn Fn(&str, &mut String) -> u8) -> u8 {
        let child = |out: &mut String, s: &Sym, paren_below: u8| {
            let mut text = String::new();
            let p = s.write_with(&mut text, var);
            if p < paren_below {
                let _ = write!(out, "({text})");
            } else {
                out.push_str(&text);
            }
        };
        match self {
            Sym::Num(v) => {
                let _ = write!(out, "{v}");
            }
            Sym::Var(v) => return var(v, out),
            Sym::Neg(a) => {
                out.push('-');
                child(out, a, NEG + 1);
            }
            Sym::Call(f, a) => {
                out.push_str(f.name());
                out.push('(');
                child(out, a, 0);
                out.push(')');
            }
            Sym::Bin(op @ (BinOp::Max | BinOp::Min), a, b) => {
                out.push_str(op.symbol());
                out.push('(');
                child(out, a, 0);
                out.push_str(", ");
                child(out, b, 0);
                out.push(')');
            }
            Sym::Bin(BinOp::Pow, a, b) => {
                child(out, a, ATOM);
                out.push('^');
                child(out, b, NEG);
            }
            Sym::Bin(op, a, b) => {
                let p = precedence(*op);
                child(out, a, p);
                let _ = write!(out, " {} ", op.symbol());
                child(out, b, p + 1);
            }
        }
        self.precedence()
    }
}

impl std::fmt::Display for Sym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write_with(&mut s, &|v, out| {
            out.push_str(v);
            ATOM
        });
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_program;

    fn sym(src: &str) -> Sym {
        (&parse_program(&format!("f = {src}")).unwrap()[0].expr).into()
    }

    #[test]
    fn printing_round_trips_through_the_parser() {
        for src in [
            "-x^2",
            "(-x)^2",
            "a^b^c",
            "(a^b)^c",
            "a - (b - c)",
            "a - b - c",
            "a / (b * c)",
            "-(a + b) * c",
            "max(a, -b) + pow(a, 2)",
            "2^-x",
            "sigmoid(w1 * x1 + w2)",
        ] {
            let s = sym(src);
            let printed = s.to_string();
            assert_eq!(sym(&printed), s, "{src} printed as {printed}");
        }
        assert_eq!(sym("(a * b) + (c)").to_string(), "a * b + c");
    }

    #[test]
    fn local_derivatives_read_as_a_student_writes_them() {
        assert_eq!(sym("w4 * z1 + z2").derivative("z1").to_string(), "w4");
        assert_eq!(sym("w3 + z3").derivative("z3").to_string(), "1");
        let f = sym("sigmoid(h1 + h2)");
        assert_eq!(
            f.derivative("h1").abbreviate(&f, "f").to_string(),
            "f * (1 - f)"
        );
        assert_eq!(sym("x^3").derivative("x").to_string(), "3 * x^2");
        assert_eq!(sym("a / b").derivative("b").to_string(), "-a / b^2");
        assert_eq!(sym("relu(x)").derivative("x").to_string(), "step(x)");
        assert_eq!(sym("x * x").derivative("x").to_string(), "x + x");
        let f = sym("sigmoid(h2 - h1)");
        assert_eq!(
            f.derivative("h1").abbreviate(&f, "f").to_string(),
            "-f * (1 - f)"
        );
    }
}
