//! A parsed graph file turned into an engine [`Graph`]: named nodes in
//! topological order, their values, gradients, expansions and backward steps.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use crate::engine::{EvalError, Graph, NodeId};
use crate::error::{ErrorKind, GraphError, Pos};
use crate::parser::{parse_program, Expr};
use crate::sym::Sym;

/// Expanded expressions longer than this are cut, so sharing cannot blow them up.
pub const EXPANSION_LIMIT: usize = 400;

/// How a named node gets its value.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// A leaf; `literal` when a line `name = NUMBER` defines it.
    Input { literal: bool },
    /// `name = expression`; the statement's engine nodes are `first..=id`.
    Computed { expr: Expr, sym: Sym, first: NodeId },
}

/// A named node of the program.
#[derive(Clone, Debug)]
pub struct NamedNode {
    pub name: String,
    /// Where it is assigned, or first used for an input without a line.
    pub pos: Pos,
    pub kind: NodeKind,
    pub id: NodeId,
    /// Indices (into [`Program::nodes`]) of the computed nodes that read this one.
    pub consumers: Vec<usize>,
}

impl NamedNode {
    pub fn is_input(&self) -> bool {
        matches!(self.kind, NodeKind::Input { .. })
    }

    /// The right-hand side in the node's direct inputs, as written (normalised).
    pub fn expression(&self, values: &[f64]) -> String {
        match &self.kind {
            NodeKind::Input { .. } => format!("{}", values[self.id.index()]),
            NodeKind::Computed { sym, .. } => sym.to_string(),
        }
    }
}

/// A compiled program.
#[derive(Clone, Debug)]
pub struct Program {
    pub graph: Graph,
    /// Inputs first (in order of appearance), then computed nodes in topological order.
    pub nodes: Vec<NamedNode>,
    /// Index into `nodes` of the output.
    pub output: usize,
    /// For each engine node, the named node whose statement created it and its position.
    origin: Vec<(usize, Pos)>,
}

/// Forward values and gradients of the output, for every engine node.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub values: Vec<f64>,
    pub grads: Vec<f64>,
}

/// One term of a backward step: ∂f/∂consumer · ∂consumer/∂node.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StepTerm {
    pub consumer: String,
    pub consumer_gradient: f64,
    /// ∂consumer/∂node as an expression (`f * (1 - f)`).
    pub local_symbolic: String,
    pub local_value: f64,
}

/// ∂f/∂node as a student writes it in the backward pass.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub node: String,
    pub terms: Vec<StepTerm>,
    pub gradient: f64,
}

/// Finite-difference check of one input's gradient.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FdCheck {
    pub input: String,
    pub autodiff: f64,
    pub finite_difference: f64,
    pub relative_error: f64,
}

impl Program {
    /// Parses and compiles `source`, applies `sets` (`name`, value) and picks `output`.
    pub fn compile(
        source: &str,
        sets: &[(String, f64)],
        output: Option<&str>,
    ) -> Result<Program, GraphError> {
        let statements = parse_program(source)?;
        let Some(last) = statements.last() else {
            return Err(GraphError::new(ErrorKind::Empty));
        };
        let last_name = last.name.clone();

        let mut assigned: HashMap<&str, usize> = HashMap::new();
        for (i, st) in statements.iter().enumerate() {
            if let Some(&first) = assigned.get(st.name.as_str()) {
                return Err(GraphError::at(
                    st.name_pos,
                    ErrorKind::AssignedTwice {
                        name: st.name.clone(),
                        first_line: statements[first].name_pos.line,
                    },
                ));
            }
            assigned.insert(&st.name, i);
        }

        // Inputs: literal lines and names used but never assigned, by first appearance.
        let mut inputs: Vec<(String, Pos, Option<f64>, bool)> = Vec::new();
        let mut seen_input: BTreeSet<String> = BTreeSet::new();
        let mut reads: Vec<Vec<(String, Pos)>> = Vec::with_capacity(statements.len());
        for st in &statements {
            if let Some(v) = st.expr.literal() {
                seen_input.insert(st.name.clone());
                inputs.push((st.name.clone(), st.name_pos, Some(v), true));
                reads.push(Vec::new());
                continue;
            }
            let mut names = Vec::new();
            st.expr.names(&mut names);
            for (n, p) in &names {
                if !assigned.contains_key(n.as_str()) && seen_input.insert(n.clone()) {
                    inputs.push((n.clone(), *p, None, false));
                }
            }
            reads.push(names);
        }
        inputs.sort_by_key(|(_, p, _, _)| *p);

        // Topological order of the computed statements, file order where free.
        let computed: Vec<usize> = (0..statements.len())
            .filter(|&i| statements[i].expr.literal().is_none())
            .collect();
        let mut indegree: HashMap<usize, usize> = HashMap::new();
        let mut dependents: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in &computed {
            let deps: BTreeSet<usize> = reads[i]
                .iter()
                .filter_map(|(n, _)| assigned.get(n.as_str()).copied())
                .filter(|&d| statements[d].expr.literal().is_none())
                .collect();
            indegree.insert(i, deps.len());
            for d in deps {
                dependents.entry(d).or_default().push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = computed
            .iter()
            .filter(|i| indegree[i] == 0)
            .map(|&i| Reverse(i))
            .collect();
        let mut order = Vec::with_capacity(computed.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &d in dependents.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
                let e = indegree.get_mut(&d).expect("every dependent is computed");
                *e -= 1;
                if *e == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
        if order.len() < computed.len() {
            return Err(cycle_error(&statements, &reads, &assigned, &indegree));
        }

        // Lower to the engine.
        let mut graph = Graph::new();
        let mut nodes: Vec<NamedNode> = Vec::new();
        let mut origin: Vec<(usize, Pos)> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for (name, pos, value, literal) in inputs {
            let id = graph.input(value.unwrap_or(f64::NAN));
            origin.push((nodes.len(), pos));
            index_of.insert(name.clone(), nodes.len());
            nodes.push(NamedNode {
                name,
                pos,
                kind: NodeKind::Input { literal },
                id,
                consumers: Vec::new(),
            });
        }
        let mut has_value: Vec<bool> = nodes
            .iter()
            .map(|n| matches!(n.kind, NodeKind::Input { literal: true }))
            .collect();
        for i in order {
            let st = &statements[i];
            let me = nodes.len();
            let first = NodeId(graph.len() as u32);
            let mut lower = Lowering {
                graph: &mut graph,
                origin: &mut origin,
                ids: &index_of,
                nodes: &nodes,
                me,
            };
            let id = match &st.expr {
                Expr::Name(n, p) => {
                    let arg = lower.expr(&Expr::Name(n.clone(), *p));
                    lower.origin.push((me, *p));
                    lower.graph.identity(arg)
                }
                e => lower.expr(e),
            };
            let mut readers: Vec<usize> =
                reads[i].iter().map(|(n, _)| index_of[n.as_str()]).collect();
            readers.sort_unstable();
            readers.dedup();
            for r in readers {
                nodes[r].consumers.push(me);
            }
            index_of.insert(st.name.clone(), me);
            nodes.push(NamedNode {
                name: st.name.clone(),
                pos: st.name_pos,
                kind: NodeKind::Computed {
                    expr: st.expr.clone(),
                    sym: (&st.expr).into(),
                    first,
                },
                id,
                consumers: Vec::new(),
            });
            has_value.push(true);
        }

        for (name, value) in sets {
            let Some(&i) = index_of.get(name.as_str()) else {
                return Err(GraphError::new(ErrorKind::UnknownSet(name.clone())));
            };
            if !nodes[i].is_input() {
                return Err(GraphError::new(ErrorKind::SetComputed(name.clone())));
            }
            graph.set_input(nodes[i].id, *value);
            has_value[i] = true;
        }
        if let Some(i) = has_value.iter().position(|h| !h) {
            return Err(GraphError::at(
                nodes[i].pos,
                ErrorKind::MissingInput(nodes[i].name.clone()),
            ));
        }

        let output_name = output.unwrap_or(&last_name);
        let output = *index_of
            .get(output_name)
            .ok_or_else(|| GraphError::new(ErrorKind::UnknownOutput(output_name.to_string())))?;
        Ok(Program {
            graph,
            nodes,
            output,
            origin,
        })
    }

    pub fn output_node(&self) -> &NamedNode {
        &self.nodes[self.output]
    }

    fn locate(&self, e: EvalError) -> GraphError {
        let (named, pos) = self.origin[e.node.index()];
        GraphError::at(
            pos,
            ErrorKind::Domain {
                node: self.nodes[named].name.clone(),
                kind: e.kind,
            },
        )
    }

    /// Forward pass, then the backward pass from the output.
    pub fn evaluate(&self) -> Result<Evaluation, GraphError> {
        let values = self.graph.forward().map_err(|e| self.locate(e))?;
        let grads = self
            .graph
            .backward(&values, self.output_node().id)
            .map_err(|e| self.locate(e))?;
        Ok(Evaluation { values, grads })
    }

    /// Each computed node's expression with every named node it reads
    /// replaced by its own expansion, down to the inputs.
    pub fn expansions(&self) -> Vec<String> {
        let mut texts: Vec<(String, u8)> = Vec::with_capacity(self.nodes.len());
        let by_name: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        for node in &self.nodes {
            let entry = match &node.kind {
                NodeKind::Input { .. } => (node.name.clone(), u8::MAX),
                NodeKind::Computed { sym, .. } => {
                    let mut out = String::new();
                    let prec = sym.write_with(&mut out, &|v, out| {
                        let (text, p) = &texts[by_name[v]];
                        out.push_str(text);
                        *p
                    });
                    if let Some((cut, _)) = out.char_indices().nth(EXPANSION_LIMIT) {
                        out.truncate(cut);
                        out.push('…');
                        // Precedence 0: a consumer parenthesises it unless it is a call's argument.
                        (out, 0)
                    } else {
                        (out, prec)
                    }
                }
            };
            texts.push(entry);
        }
        texts.into_iter().map(|(t, _)| t).collect()
    }

    /// The backward pass node by node, from the output back to the inputs.
    pub fn steps(&self, eval: &Evaluation) -> Result<Vec<Step>, GraphError> {
        let mut local: HashMap<usize, HashMap<NodeId, f64>> = HashMap::new();
        let mut steps = Vec::new();
        for (i, node) in self.nodes.iter().enumerate().rev() {
            let mut terms = Vec::new();
            if i != self.output {
                for &c in &node.consumers {
                    let consumer = &self.nodes[c];
                    let NodeKind::Computed { sym, first, .. } = &consumer.kind else {
                        unreachable!("consumers are computed nodes")
                    };
                    let gradients = match local.entry(c) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => e.insert(
                            self.graph
                                .local_gradients(&eval.values, *first, consumer.id)
                                .map_err(|e| self.locate(e))?,
                        ),
                    };
                    let local_value = gradients.get(&node.id).copied().unwrap_or(0.0);
                    let symbolic = sym
                        .derivative(&node.name)
                        .abbreviate(sym, &consumer.name)
                        .to_string();
                    terms.push(StepTerm {
                        consumer: consumer.name.clone(),
                        consumer_gradient: eval.grads[consumer.id.index()],
                        local_symbolic: symbolic,
                        local_value,
                    });
                }
            }
            steps.push(Step {
                node: node.name.clone(),
                terms,
                gradient: eval.grads[node.id.index()],
            });
        }
        Ok(steps)
    }

    /// Central finite differences in f64 for every input, refined by
    /// Richardson extrapolation (Ridders' method), so curvature does not
    /// masquerade as a wrong gradient.
    pub fn check_gradients(&self, eval: &Evaluation) -> Result<Vec<FdCheck>, GraphError> {
        let out = self.output_node().id.index();
        let mut graph = self.graph.clone();
        let mut checks = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_input()) {
            let x = graph.leaf_value(node.id);
            let mut f = |v: f64| -> Result<f64, EvalError> {
                graph.set_input(node.id, v);
                Ok(graph.forward()?[out])
            };
            let fd = ridders(&mut f, x, 1e-3 * x.abs().max(1.0)).map_err(|e| self.locate(e))?;
            graph.set_input(node.id, x);
            let ad = eval.grads[node.id.index()];
            checks.push(FdCheck {
                input: node.name.clone(),
                autodiff: ad,
                finite_difference: fd,
                relative_error: relative_error(ad, fd),
            });
        }
        Ok(checks)
    }
}

/// f'(x) by central differences at steps h, h/1.4, h/1.4², … extrapolated
/// to step 0 in a Neville tableau; stops when the error estimate grows
/// (Numerical Recipes' `dfridr`). A step that leaves the domain is shrunk.
fn ridders(
    f: &mut impl FnMut(f64) -> Result<f64, EvalError>,
    x: f64,
    mut h: f64,
) -> Result<f64, EvalError> {
    const SHRINK: f64 = 1.4;
    const STEPS: usize = 10;
    let mut central =
        |h: f64| -> Result<f64, EvalError> { Ok((f(x + h)? - f(x - h)?) / (2.0 * h)) };
    let mut first = central(h);
    for _ in 0..20 {
        if first.is_ok() {
            break;
        }
        h /= 10.0;
        first = central(h);
    }
    let mut prev: Vec<f64> = vec![first?];
    let (mut best, mut err) = (prev[0], f64::INFINITY);
    for i in 1..STEPS {
        h /= SHRINK;
        let mut row = vec![central(h)?];
        let mut factor = SHRINK * SHRINK;
        for j in 1..=i {
            let v = (row[j - 1] * factor - prev[j - 1]) / (factor - 1.0);
            factor *= SHRINK * SHRINK;
            let e = (v - row[j - 1]).abs().max((v - prev[j - 1]).abs());
            if e <= err {
                err = e;
                best = v;
            }
            row.push(v);
        }
        if (row[i] - prev[i - 1]).abs() >= 2.0 * err {
            break;
        }
        prev = row;
    }
    Ok(best)
}

/// |a − b| / max(1, |a|, |b|): relative for gradients of size ≥ 1, absolute below.
pub fn relative_error(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1.0)
}

struct Lowering<'a> {
    graph: &'a mut Graph,
    origin: &'a mut Vec<(usize, Pos)>,
    ids: &'a HashMap<String, usize>,
    nodes: &'a [NamedNode],
    me: usize,
}

impl Lowering<'_> {
    fn expr(&mut self, e: &Expr) -> NodeId {
        let id = match e {
            // Names are already lowered (topological order); no new node.
            Expr::Name(n, _) => return self.nodes[self.ids[n.as_str()]].id,
            Expr::Num(v, _) => self.graph.constant(*v),
            Expr::Neg(a, _) => {
                let a = self.expr(a);
                self.graph.neg(a)
            }
            Expr::Call(f, a, _) => {
                let a = self.expr(a);
                self.graph.unary(*f, a)
            }
            Expr::Binary { op, lhs, rhs, .. } => {
                let a = self.expr(lhs);
                let b = self.expr(rhs);
                self.graph.binary(*op, a, b)
            }
        };
        self.origin.push((self.me, e.pos()));
        id
    }
}

fn cycle_error(
    statements: &[crate::parser::Statement],
    reads: &[Vec<(String, Pos)>],
    assigned: &HashMap<&str, usize>,
    indegree: &HashMap<usize, usize>,
) -> GraphError {
    // Every statement left with a positive in-degree reads another one left;
    // following those reads from the first must come back around.
    let left = |i: &usize| indegree.get(i).is_some_and(|&d| d > 0);
    let start = (0..statements.len())
        .find(left)
        .expect("a statement is left");
    let mut path = vec![start];
    loop {
        let cur = *path.last().expect("path is not empty");
        let next = reads[cur]
            .iter()
            .filter_map(|(n, _)| assigned.get(n.as_str()).copied())
            .find(left)
            .expect("a statement left in a cycle reads another one left");
        if let Some(k) = path.iter().position(|&p| p == next) {
            let cycle = &path[k..];
            let mut names: Vec<String> =
                cycle.iter().map(|&i| statements[i].name.clone()).collect();
            names.push(statements[next].name.clone());
            let at = cycle.iter().copied().min().expect("cycle is not empty");
            return GraphError::at(statements[at].name_pos, ErrorKind::Cycle(names));
        }
        path.push(next);
    }
}
