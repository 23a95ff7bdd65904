//! Scalar computational graphs for the sheet's Problem 1.
//!
//! - [`engine`]: the arena [`Graph`] with forward values and reverse-mode
//!   gradients; usable from Rust directly.
//! - [`parser`] and [`program`]: the text language (`name = expression` per
//!   line) compiled onto the engine, with expansions, backward steps and a
//!   finite-difference check.
//! - [`sym`]: symbolic local derivatives for the written-out backward pass.
//! - [`render`]: DOT and SVG pictures.
//! - [`report`]: the typed result of `nabla graph`, its text and its report section.

pub mod engine;
pub mod error;
pub mod parser;
pub mod program;
pub mod render;
pub mod report;
pub mod sym;

pub use engine::{BinOp, DomainError, EvalError, Func, Graph, NodeId, Op};
pub use error::{ErrorKind, GraphError, Pos};
pub use program::{Evaluation, FdCheck, NamedNode, NodeKind, Program, Step, StepTerm};
