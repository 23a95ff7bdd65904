//! The arena engine: nodes in a flat vector, arguments always before their
//! consumers, so index order is a topological order. Forward and backward
//! are single loops — no recursion, so a chain of millions of nodes is fine.

use std::collections::HashMap;
use std::fmt;

/// Index of a node in its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// Position of the node in the arena (and in the value/gradient vectors).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Functions of one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Sigmoid,
    Exp,
    Log,
    Tanh,
    Relu,
    /// ELU with α = 1.
    Elu,
    Sqrt,
    Sin,
    Cos,
    Abs,
}

impl Func {
    pub const ALL: [Func; 10] = [
        Func::Sigmoid,
        Func::Exp,
        Func::Log,
        Func::Tanh,
        Func::Relu,
        Func::Elu,
        Func::Sqrt,
        Func::Sin,
        Func::Cos,
        Func::Abs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::Sigmoid => "sigmoid",
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Tanh => "tanh",
            Func::Relu => "relu",
            Func::Elu => "elu",
            Func::Sqrt => "sqrt",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Abs => "abs",
        }
    }

    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Value at `x`, or why `x` is outside the domain.
    pub fn apply(self, x: f64) -> Result<f64, DomainError> {
        Ok(match self {
            Func::Sigmoid => sigmoid(x),
            Func::Exp => x.exp(),
            Func::Log if x <= 0.0 => return Err(DomainError::LogNonPositive(x)),
            Func::Log => x.ln(),
            Func::Tanh => x.tanh(),
            Func::Relu => x.max(0.0),
            Func::Elu if x > 0.0 => x,
            Func::Elu => x.exp_m1(),
            Func::Sqrt if x < 0.0 => return Err(DomainError::SqrtNegative(x)),
            Func::Sqrt => x.sqrt(),
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Abs => x.abs(),
        })
    }

    /// d f(x) / dx given x and y = f(x). At the kinks of relu and abs the
    /// derivative is 0, as in PyTorch.
    pub fn derivative(self, x: f64, y: f64) -> f64 {
        match self {
            Func::Sigmoid => y * (1.0 - y),
            Func::Exp => y,
            Func::Log => 1.0 / x,
            Func::Tanh => 1.0 - y * y,
            Func::Relu => f64::from(u8::from(x > 0.0)),
            Func::Elu if x > 0.0 => 1.0,
            Func::Elu => y + 1.0,
            Func::Sqrt => 0.5 / y,
            Func::Sin => x.cos(),
            Func::Cos => -x.sin(),
            Func::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Binary operators; `Pow` is both `a ^ b` and `pow(a, b)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::Max => "max",
            BinOp::Min => "min",
        }
    }

    pub fn apply(self, a: f64, b: f64) -> Result<f64, DomainError> {
        Ok(match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div if b == 0.0 => return Err(DomainError::DivisionByZero),
            BinOp::Div => a / b,
            BinOp::Pow if a < 0.0 && b.fract() != 0.0 => {
                return Err(DomainError::NegativeBaseFractionalPower(a, b))
            }
            BinOp::Pow if a == 0.0 && b < 0.0 => return Err(DomainError::DivisionByZero),
            BinOp::Pow => a.powf(b),
            BinOp::Max => a.max(b),
            BinOp::Min => a.min(b),
        })
    }

    /// (∂y/∂a, ∂y/∂b) at (a, b) with y = op(a, b). Ties of max/min split the
    /// gradient in half, as PyTorch's `maximum`/`minimum` do. The exponent's
    /// derivative of `pow` is only asked for when the exponent depends on an
    /// input (`need_b`), because it is undefined for a negative base.
    fn derivatives(self, a: f64, b: f64, y: f64, need_b: bool) -> Result<(f64, f64), DomainError> {
        Ok(match self {
            BinOp::Add => (1.0, 1.0),
            BinOp::Sub => (1.0, -1.0),
            BinOp::Mul => (b, a),
            BinOp::Div => (1.0 / b, -a / (b * b)),
            BinOp::Pow => {
                let da = if b == 0.0 { 0.0 } else { b * a.powf(b - 1.0) };
                let db = if !need_b || a == 0.0 {
                    0.0
                } else if a < 0.0 {
                    return Err(DomainError::ExponentGradientNegativeBase(a));
                } else {
                    y * a.ln()
                };
                (da, db)
            }
            BinOp::Max | BinOp::Min => {
                let a_wins = if self == BinOp::Max { a > b } else { a < b };
                if a == b {
                    (0.5, 0.5)
                } else if a_wins {
                    (1.0, 0.0)
                } else {
                    (0.0, 1.0)
                }
            }
        })
    }
}

/// A value outside a function's domain, or a result that is not finite.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DomainError {
    #[error("log of a non-positive number (log({0}))")]
    LogNonPositive(f64),
    #[error("square root of a negative number (sqrt({0}))")]
    SqrtNegative(f64),
    #[error("division by zero")]
    DivisionByZero,
    #[error("negative base raised to a fractional power ({0} ^ {1})")]
    NegativeBaseFractionalPower(f64, f64),
    #[error("the derivative of a ^ b with respect to b is undefined for a negative base a = {0}")]
    ExponentGradientNegativeBase(f64),
    #[error("the value is not finite ({0})")]
    NonFiniteValue(f64),
    #[error("the gradient is not finite ({0})")]
    NonFiniteGradient(f64),
}

/// A [`DomainError`] and the node where it first happened.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("node {}: {kind}", node.0)]
pub struct EvalError {
    pub node: NodeId,
    pub kind: DomainError,
}

/// What a node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A leaf whose gradient is wanted; its value is set with [`Graph::set_input`].
    Input,
    /// A leaf that is a fixed number (no gradient reported).
    Const,
    /// Passes its argument through (`a = b` in the language).
    Identity(NodeId),
    Neg(NodeId),
    Unary(Func, NodeId),
    Binary(BinOp, NodeId, NodeId),
}

impl Op {
    /// The arguments of the node, in order.
    pub fn args(&self) -> impl Iterator<Item = NodeId> {
        let (a, b) = match *self {
            Op::Input | Op::Const => (None, None),
            Op::Identity(a) | Op::Neg(a) | Op::Unary(_, a) => (Some(a), None),
            Op::Binary(_, a, b) => (Some(a), Some(b)),
        };
        a.into_iter().chain(b)
    }
}

#[derive(Clone, Debug)]
struct Node {
    op: Op,
    /// Whether the node depends on an input, i.e. whether gradients flow to it.
    needs_grad: bool,
}

/// A scalar computational graph.
///
/// ```
/// use nabla_graph::{Graph, Func};
/// let mut g = Graph::new();
/// let x = g.input(2.0);
/// let y = g.input(3.0);
/// let p = g.mul(x, y);
/// let f = g.unary(Func::Sin, p);
/// let values = g.forward().unwrap();
/// let grads = g.backward(&values, f).unwrap();
/// assert_eq!(grads[x.index()], 3.0 * 6f64.cos());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    /// Values of the leaves (inputs and constants); 0 elsewhere.
    leaves: Vec<f64>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty graph with room for `nodes` nodes, so building a large one
    /// does not reallocate.
    pub fn with_capacity(nodes: usize) -> Self {
        Self {
            nodes: Vec::with_capacity(nodes),
            leaves: Vec::with_capacity(nodes),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn op(&self, id: NodeId) -> Op {
        self.nodes[id.index()].op
    }

    /// Whether gradients flow to `id` (it is an input or depends on one).
    pub fn needs_grad(&self, id: NodeId) -> bool {
        self.nodes[id.index()].needs_grad
    }

    fn push(&mut self, op: Op, leaf: f64) -> NodeId {
        let needs_grad = match op {
            Op::Input => true,
            Op::Const => false,
            _ => op.args().any(|a| self.nodes[a.index()].needs_grad),
        };
        let id = u32::try_from(self.nodes.len()).expect("a graph holds at most 2^32 nodes");
        self.nodes.push(Node { op, needs_grad });
        self.leaves.push(leaf);
        NodeId(id)
    }

    pub fn input(&mut self, value: f64) -> NodeId {
        self.push(Op::Input, value)
    }

    pub fn constant(&mut self, value: f64) -> NodeId {
        self.push(Op::Const, value)
    }

    /// Changes the value of an input or constant.
    pub fn set_input(&mut self, id: NodeId, value: f64) {
        self.leaves[id.index()] = value;
    }

    pub fn leaf_value(&self, id: NodeId) -> f64 {
        self.leaves[id.index()]
    }

    pub fn identity(&mut self, a: NodeId) -> NodeId {
        self.push(Op::Identity(a), 0.0)
    }

    pub fn neg(&mut self, a: NodeId) -> NodeId {
        self.push(Op::Neg(a), 0.0)
    }

    pub fn unary(&mut self, f: Func, a: NodeId) -> NodeId {
        self.push(Op::Unary(f, a), 0.0)
    }

    pub fn binary(&mut self, op: BinOp, a: NodeId, b: NodeId) -> NodeId {
        self.push(Op::Binary(op, a, b), 0.0)
    }

    pub fn add(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.binary(BinOp::Add, a, b)
    }

    pub fn sub(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.binary(BinOp::Sub, a, b)
    }

    pub fn mul(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.binary(BinOp::Mul, a, b)
    }

    pub fn div(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.binary(BinOp::Div, a, b)
    }

    pub fn pow(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.binary(BinOp::Pow, a, b)
    }

    /// Every node's value, each computed once, in index order.
    pub fn forward(&self) -> Result<Vec<f64>, EvalError> {
        let mut values = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let v = |a: NodeId| values[a.index()];
            let result = match node.op {
                Op::Input | Op::Const => Ok(self.leaves[i]),
                Op::Identity(a) => Ok(v(a)),
                Op::Neg(a) => Ok(-v(a)),
                Op::Unary(f, a) => f.apply(v(a)),
                Op::Binary(op, a, b) => op.apply(v(a), v(b)),
            };
            let node_id = NodeId(i as u32);
            let value = result.map_err(|kind| EvalError {
                node: node_id,
                kind,
            })?;
            if !value.is_finite() {
                return Err(EvalError {
                    node: node_id,
                    kind: DomainError::NonFiniteValue(value),
                });
            }
            values.push(value);
        }
        Ok(values)
    }

    /// Calls `emit(arg, ∂node/∂arg · grad)` for each argument of `node` that
    /// needs a gradient: the one step of the chain rule both backward passes share.
    fn propagate(
        &self,
        node: NodeId,
        grad: f64,
        values: &[f64],
        mut emit: impl FnMut(NodeId, f64),
    ) -> Result<(), EvalError> {
        let err = |kind| EvalError { node, kind };
        let needs = |a: NodeId| self.nodes[a.index()].needs_grad;
        match self.nodes[node.index()].op {
            Op::Input | Op::Const => {}
            Op::Identity(a) => emit(a, grad),
            Op::Neg(a) => emit(a, -grad),
            Op::Unary(f, a) => {
                emit(
                    a,
                    grad * f.derivative(values[a.index()], values[node.index()]),
                );
            }
            Op::Binary(op, a, b) => {
                let (da, db) = op
                    .derivatives(
                        values[a.index()],
                        values[b.index()],
                        values[node.index()],
                        needs(b),
                    )
                    .map_err(err)?;
                if needs(a) {
                    emit(a, grad * da);
                }
                if needs(b) {
                    emit(b, grad * db);
                }
            }
        }
        Ok(())
    }

    /// ∂output/∂node for every node (0 for nodes the output does not depend
    /// on), accumulated over every path by one sweep in reverse index order.
    pub fn backward(&self, values: &[f64], output: NodeId) -> Result<Vec<f64>, EvalError> {
        let mut grads: Vec<f64> = vec![0.0; self.nodes.len()];
        grads[output.index()] = 1.0;
        for i in (0..=output.index()).rev() {
            let g = grads[i];
            if g == 0.0 || !self.nodes[i].needs_grad {
                continue;
            }
            let node = NodeId(i as u32);
            if !g.is_finite() {
                return Err(EvalError {
                    node,
                    kind: DomainError::NonFiniteGradient(g),
                });
            }
            self.propagate(node, g, values, |a, d| grads[a.index()] += d)?;
        }
        Ok(grads)
    }

    /// The gradient of `root` with respect to the nodes outside `first..=root`
    /// that the nodes in that range read: the local derivatives of one
    /// statement with respect to the names it uses.
    pub fn local_gradients(
        &self,
        values: &[f64],
        first: NodeId,
        root: NodeId,
    ) -> Result<HashMap<NodeId, f64>, EvalError> {
        let mut inside: HashMap<NodeId, f64> = HashMap::from([(root, 1.0)]);
        let mut outside: HashMap<NodeId, f64> = HashMap::new();
        for i in (first.index()..=root.index()).rev() {
            let node = NodeId(i as u32);
            let Some(&g) = inside.get(&node) else {
                continue;
            };
            self.propagate(node, g, values, |a, d| {
                let target = if a >= first {
                    &mut inside
                } else {
                    &mut outside
                };
                *target.entry(a).or_insert(0.0) += d;
            })?;
        }
        Ok(outside)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_of_a_million_nodes_does_not_overflow_the_stack() {
        let mut g = Graph::new();
        let x = g.input(0.5);
        let mut last = x;
        for _ in 0..1_000_000 {
            last = g.unary(Func::Sin, last);
        }
        let values = g.forward().unwrap();
        let grads = g.backward(&values, last).unwrap();
        // d/dx sin^n(x) = product of cos along the chain.
        let expected: f64 = values[..values.len() - 1].iter().map(|v| v.cos()).product();
        let rel = (grads[x.index()] - expected).abs() / expected.abs();
        assert!(rel < 1e-9, "{} vs {expected}", grads[x.index()]);
    }

    #[test]
    fn shared_node_accumulates_both_paths() {
        // f = a*b + a with a used twice: df/da = b + 1.
        let mut g = Graph::new();
        let a = g.input(3.0);
        let b = g.input(4.0);
        let p = g.mul(a, b);
        let f = g.add(p, a);
        let values = g.forward().unwrap();
        let grads = g.backward(&values, f).unwrap();
        assert_eq!(grads[a.index()], 5.0);
        assert_eq!(grads[b.index()], 3.0);
    }

    #[test]
    fn domain_errors_name_the_node() {
        let mut g = Graph::new();
        let x = g.input(-1.0);
        let ok = g.unary(Func::Exp, x);
        let bad = g.unary(Func::Log, x);
        let _ = g.add(ok, bad);
        let err = g.forward().unwrap_err();
        assert_eq!(err.node, bad);
        assert_eq!(err.kind, DomainError::LogNonPositive(-1.0));
    }

    #[test]
    fn sqrt_at_zero_has_an_infinite_gradient_reported_at_its_argument() {
        let mut g = Graph::new();
        let x = g.input(0.0);
        let s = g.unary(Func::Sqrt, x);
        let values = g.forward().unwrap();
        let err = g.backward(&values, s).unwrap_err();
        assert_eq!(err.node, x);
        assert!(matches!(err.kind, DomainError::NonFiniteGradient(_)));
    }

    #[test]
    fn constant_exponent_of_a_negative_base_is_fine() {
        let mut g = Graph::new();
        let x = g.input(-3.0);
        let two = g.constant(2.0);
        let y = g.pow(x, two);
        let values = g.forward().unwrap();
        assert_eq!(values[y.index()], 9.0);
        assert_eq!(g.backward(&values, y).unwrap()[x.index()], -6.0);
    }
}
