//! The graph language: a lexer and a precedence-climbing parser.
//!
//! ```text
//! statement := NAME '=' expr
//! expr      := term (('+' | '-') term)*
//! term      := unary (('*' | '/') unary)*
//! unary     := '-' unary | power
//! power     := primary ('^' unary)?        -- right-associative, above unary minus
//! primary   := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'
//! ```

use crate::engine::{BinOp, Func};
use crate::error::{ErrorKind, GraphError, Pos};

/// Deeper nesting than this is refused so that no input can overflow the stack.
const MAX_DEPTH: usize = 200;

/// A parsed expression; every node keeps where it starts in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Num(f64, Pos),
    Name(String, Pos),
    Neg(Box<Expr>, Pos),
    /// `+ - * / ^`, and `max`, `min`, `pow` calls (kept apart by `call`).
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        pos: Pos,
        call: bool,
    },
    Call(Func, Box<Expr>, Pos),
}

impl Expr {
    pub fn pos(&self) -> Pos {
        match self {
            Expr::Num(_, p) | Expr::Name(_, p) | Expr::Neg(_, p) | Expr::Call(_, _, p) => *p,
            Expr::Binary { pos, .. } => *pos,
        }
    }

    /// The names the expression reads, in order of appearance, with repeats.
    pub fn names(&self, out: &mut Vec<(String, Pos)>) {
        match self {
            Expr::Num(..) => {}
            Expr::Name(n, p) => out.push((n.clone(), *p)),
            Expr::Neg(a, _) | Expr::Call(_, a, _) => a.names(out),
            Expr::Binary { lhs, rhs, .. } => {
                lhs.names(out);
                rhs.names(out);
            }
        }
    }

    /// The number if the expression is a literal (possibly negated).
    pub fn literal(&self) -> Option<f64> {
        match self {
            Expr::Num(v, _) => Some(*v),
            Expr::Neg(a, _) => a.literal().map(|v| -v),
            _ => None,
        }
    }
}

/// One `name = expression` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub name: String,
    pub name_pos: Pos,
    pub expr: Expr,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Sym(char),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(v) => format!("number {v}"),
            Tok::Name(n) => format!("name `{n}`"),
            Tok::Sym(c) => format!("`{c}`"),
            Tok::End => "end of line".to_string(),
        }
    }
}

fn lex_line(line: &str, line_no: usize) -> Result<Vec<(Tok, Pos)>, GraphError> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos {
            line: line_no,
            col: i + 1,
        };
        if c == '#' {
            break;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            let value: f64 = text.parse().map_err(|_| {
                GraphError::at(pos, ErrorKind::Syntax(format!("`{text}` is not a number")))
            })?;
            toks.push((Tok::Num(value), pos));
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push((Tok::Name(chars[start..i].iter().collect()), pos));
        } else if "+-*/^(),=".contains(c) {
            toks.push((Tok::Sym(c), pos));
            i += 1;
        } else {
            return Err(GraphError::at(
                pos,
                ErrorKind::Syntax(format!("unexpected character `{c}`")),
            ));
        }
    }
    toks.push((
        Tok::End,
        Pos {
            line: line_no,
            col: chars.len() + 1,
        },
    ));
    Ok(toks)
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn pos(&self) -> Pos {
        self.toks[self.at].1
    }

    fn bump(&mut self) -> (Tok, Pos) {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn expected(&self, what: &str) -> GraphError {
        GraphError::at(
            self.pos(),
            ErrorKind::Syntax(format!("expected {what}, found {}", self.peek().describe())),
        )
    }

    fn eat(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Sym(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Every nesting (parentheses, arguments, unary minus, exponents) passes
    /// through `unary`, so counting there bounds the recursion.
    fn enter(&mut self) -> Result<(), GraphError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GraphError::at(
                self.pos(),
                ErrorKind::Syntax(format!(
                    "expression nested more than {MAX_DEPTH} levels deep"
                )),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, GraphError> {
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek() {
                Tok::Sym('+') => BinOp::Add,
                Tok::Sym('-') => BinOp::Sub,
                _ => break,
            };
            let (_, pos) = self.bump();
            let rhs = self.term()?;
            lhs = binary(op, lhs, rhs, pos);
        }
        Ok(lhs)
    }

    fn term(&mut self) -> Result<Expr, GraphError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Sym('*') => BinOp::Mul,
                Tok::Sym('/') => BinOp::Div,
                _ => break,
            };
            let (_, pos) = self.bump();
            let rhs = self.unary()?;
            lhs = binary(op, lhs, rhs, pos);
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, GraphError> {
        self.enter()?;
        let result = if *self.peek() == Tok::Sym('-') {
            let (_, pos) = self.bump();
            Expr::Neg(Box::new(self.unary()?), pos)
        } else {
            let base = self.primary()?;
            if *self.peek() == Tok::Sym('^') {
                let (_, pos) = self.bump();
                let exponent = self.unary()?;
                binary(BinOp::Pow, base, exponent, pos)
            } else {
                base
            }
        };
        self.depth -= 1;
        Ok(result)
    }

    fn primary(&mut self) -> Result<Expr, GraphError> {
        let (tok, pos) = self.bump();
        match tok {
            Tok::Num(v) => Ok(Expr::Num(v, pos)),
            Tok::Name(name) if *self.peek() == Tok::Sym('(') => self.call(name, pos),
            Tok::Name(name) => Ok(Expr::Name(name, pos)),
            Tok::Sym('(') => {
                let e = self.expr()?;
                if !self.eat(')') {
                    return Err(
                        self.expected(&format!("`)` to close the `(` at column {}", pos.col))
                    );
                }
                Ok(e)
            }
            _ => {
                self.at -= usize::from(tok != Tok::End);
                Err(self.expected("a number, a name, a function call or `(`"))
            }
        }
    }

    fn call(&mut self, name: String, pos: Pos) -> Result<Expr, GraphError> {
        self.bump(); // '('
        let mut args = Vec::new();
        if !self.eat(')') {
            loop {
                args.push(self.expr()?);
                if self.eat(')') {
                    break;
                }
                if !self.eat(',') {
                    return Err(self.expected("`,` or `)` in the argument list"));
                }
            }
        }
        let arity_error = |want: usize| {
            GraphError::at(
                pos,
                ErrorKind::Arity {
                    function: name.clone(),
                    expected: want,
                    found: args.len(),
                },
            )
        };
        if let Some(f) = Func::from_name(&name) {
            if args.len() != 1 {
                return Err(arity_error(1));
            }
            return Ok(Expr::Call(
                f,
                Box::new(args.pop().expect("one argument")),
                pos,
            ));
        }
        let op = match name.as_str() {
            "max" => BinOp::Max,
            "min" => BinOp::Min,
            "pow" => BinOp::Pow,
            _ => return Err(GraphError::at(pos, ErrorKind::UnknownFunction(name))),
        };
        if args.len() != 2 {
            return Err(arity_error(2));
        }
        let rhs = args.pop().expect("two arguments");
        let lhs = args.pop().expect("two arguments");
        Ok(Expr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            pos,
            call: true,
        })
    }
}

fn binary(op: BinOp, lhs: Expr, rhs: Expr, pos: Pos) -> Expr {
    Expr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
        pos,
        call: false,
    }
}

/// Parses a whole program: one statement per non-blank, non-comment line.
pub fn parse_program(source: &str) -> Result<Vec<Statement>, GraphError> {
    let mut statements = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let toks = lex_line(line, i + 1)?;
        if toks.len() == 1 {
            continue; // blank or comment
        }
        let mut p = Parser {
            toks,
            at: 0,
            depth: 0,
        };
        let (name, name_pos) = match p.bump() {
            (Tok::Name(n), pos) => (n, pos),
            _ => {
                p.at = 0;
                return Err(p.expected("a statement `name = expression`"));
            }
        };
        if !p.eat('=') {
            return Err(p.expected("`=` after the name"));
        }
        let expr = p.expr()?;
        if *p.peek() != Tok::End {
            return Err(p.expected("an operator or the end of the line"));
        }
        statements.push(Statement {
            name,
            name_pos,
            expr,
        });
    }
    Ok(statements)
}

/// Precedence of an expression's top operator, for printing with the fewest parentheses.
pub(crate) fn precedence(op: BinOp) -> u8 {
    match op {
        BinOp::Add | BinOp::Sub => 1,
        BinOp::Mul | BinOp::Div => 2,
        BinOp::Pow => 4,
        BinOp::Max | BinOp::Min => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(src: &str) -> Expr {
        parse_program(&format!("f = {src}")).unwrap().remove(0).expr
    }

    fn shape(e: &Expr) -> String {
        match e {
            Expr::Num(v, _) => v.to_string(),
            Expr::Name(n, _) => n.clone(),
            Expr::Neg(a, _) => format!("(neg {})", shape(a)),
            Expr::Binary { op, lhs, rhs, .. } => {
                format!("({} {} {})", op.symbol(), shape(lhs), shape(rhs))
            }
            Expr::Call(f, a, _) => format!("({} {})", f.name(), shape(a)),
        }
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(shape(&parse_one("-x^2")), "(neg (^ x 2))");
        assert_eq!(shape(&parse_one("a^b^c")), "(^ a (^ b c))");
        assert_eq!(shape(&parse_one("a - b - c")), "(- (- a b) c)");
        assert_eq!(shape(&parse_one("a / b * c")), "(* (/ a b) c)");
        assert_eq!(shape(&parse_one("a + b * c ^ 2")), "(+ a (* b (^ c 2)))");
        assert_eq!(shape(&parse_one("2^-1")), "(^ 2 (neg 1))");
        assert_eq!(
            shape(&parse_one("max(a, sigmoid(b)) - -c")),
            "(- (max a (sigmoid b)) (neg c))"
        );
        assert_eq!(
            shape(&parse_one("1e-3 * .5 + 2E2")),
            "(+ (* 0.001 0.5) 200)"
        );
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let p = parse_program("# title\n\n  x = 1  # one\ny = x*2\n").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].name_pos, Pos { line: 4, col: 1 });
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!("f = {}x{}", "(".repeat(100_000), ")".repeat(100_000));
        let err = parse_program(&src).unwrap_err();
        assert!(err.to_string().contains("nested more than"), "{err}");
        let src = format!("f = {}x", "-".repeat(100_000));
        assert!(parse_program(&src).is_err());
    }
}
