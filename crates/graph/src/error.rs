//! Errors of the graph language, each with the place in the file it concerns.

use std::fmt;

use crate::engine::DomainError;

/// A 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("unknown function `{0}`; expected one of sigmoid, exp, log, tanh, relu, elu, sqrt, sin, cos, abs (one argument) or max, min, pow (two)")]
    UnknownFunction(String),
    #[error("`{function}` takes {expected} argument{}, found {found}", if *expected == 1 { "" } else { "s" })]
    Arity {
        function: String,
        expected: usize,
        found: usize,
    },
    #[error("`{name}` is assigned twice (first on line {first_line})")]
    AssignedTwice { name: String, first_line: usize },
    #[error("cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("input `{0}` has no value; give it one with --set {0}=VALUE or a line `{0} = VALUE`")]
    MissingInput(String),
    #[error("--set {0}: there is no input named `{0}`")]
    UnknownSet(String),
    #[error("--set {0}: `{0}` is computed from other nodes, not an input")]
    SetComputed(String),
    #[error("--output {0}: there is no node named `{0}`")]
    UnknownOutput(String),
    #[error("the graph has no statements")]
    Empty,
    #[error("{kind} in node `{node}`")]
    Domain { node: String, kind: DomainError },
}

/// An [`ErrorKind`] with its position, if it has one (a `--set` error has none).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphError {
    pub pos: Option<Pos>,
    pub kind: ErrorKind,
}

impl GraphError {
    pub fn at(pos: Pos, kind: ErrorKind) -> Self {
        Self {
            pos: Some(pos),
            kind,
        }
    }

    pub fn new(kind: ErrorKind) -> Self {
        Self { pos: None, kind }
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{p}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for GraphError {}
