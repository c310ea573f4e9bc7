//! Node chains that exporters write for one operation NNIR has as an op: RMSNorm and both
//! GELU forms, found before the walk ([`Importer::find_chains`]) and imported as that op when
//! the walk reaches the chain's last node ([`Importer::chain`]).
//!
//! The chains, as `torch.onnx.export` writes them (operands of Mul and Add in either order,
//! products associated either way):
//! - RMSNorm: `x · Reciprocal(Sqrt(ReduceMean(Pow(x, 2), axes, keepdims) + eps)) [· scale]`
//!   → `nn.rms_norm {axis, epsilon}` (the axes must be the trailing ones, the scale a constant
//!   of the normalized shape);
//! - GELU, erf: `x · 0.5 · (1 + Erf(x / √2))` (or `x · (1/√2)`) → `nn.gelu`;
//! - GELU, tanh: `0.5 · x · (1 + Tanh(√(2/π) · (x + 0.044715 · Pow(x, 3))))` →
//!   `nn.gelu {approximate = tanh}`.
//!
//! A match is structural: every inner node has the chain as its only user (so no value
//! vanishes that something else reads), and every constant equals the formula's to f32
//! precision (two units in the last place, which covers constants computed in f64 and rounded,
//! or the reverse). Anything else is left to the walk, which refuses Pow, Erf and Reciprocal
//! outside these chains ([`outside_chain`]).

use crate::ir::infer::norm_axis;
use crate::ir::{GeluApprox, OpKind, Tensor};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::{GraphProto, NodeProto};
use std::collections::{HashMap, HashSet};

/// What a chain computes from its input `x` (an ONNX value name).
#[derive(Clone, Debug)]
pub(in crate::onnx::import) struct Chain {
    x: String,
    op: ChainOp,
}

#[derive(Clone, Debug)]
enum ChainOp {
    Gelu(GeluApprox),
    /// `axes` as the ReduceMean lists them; the trailing-axes check needs x's rank, known only
    /// when the walk reaches the chain.
    RmsNorm {
        axes: Vec<i64>,
        epsilon: f32,
        scale: Option<String>,
    },
}

/// The walk's refusal of an operator that NNIR has only inside a chain.
pub(super) fn outside_chain(op: &str) -> String {
    format!(
        "{op} is supported only inside an RMSNorm chain (x · Reciprocal(Sqrt(ReduceMean(Pow(x, 2)) + eps)) · scale) or a GELU chain (x · 0.5 · (1 + Erf(x / √2)), or its tanh form with Pow(x, 3)), and this node is part of neither"
    )
}

/// Whether `c` is `want` to f32 precision.
fn near(c: f32, want: f64) -> bool {
    let w = want as f32;
    (c - w).abs() <= 2.0 * f32::EPSILON * w.abs()
}

/// The graph as the matcher reads it: producers by value, users by value (from the importer),
/// and the constants known before the walk.
struct Matcher<'a> {
    imp: &'a Importer,
    g: &'a GraphProto,
    producer: HashMap<&'a str, usize>,
    consts: HashMap<String, Val>,
    /// Nodes already part of a chain.
    claimed: HashSet<usize>,
}

impl Matcher<'_> {
    fn constant(&self, name: &str) -> Option<&Val> {
        match self.imp.vals.get(name) {
            Some(v @ (Val::Float(_) | Val::Int { .. })) => Some(v),
            _ => self.consts.get(name),
        }
    }

    /// A one-element constant, as f32.
    fn scalar(&self, name: &str) -> Option<f32> {
        match self.constant(name)? {
            Val::Float(t) if t.len() == 1 && t.shape().len() <= 1 => Some(t.to_f32_vec()[0]),
            Val::Int { shape, data } if data.len() == 1 && shape.len() <= 1 => Some(data[0] as f32),
            _ => None,
        }
    }

    /// The node computing `name` when it is an `op` of the default domain whose only user is
    /// the chain, not yet claimed, with no attribute outside `attrs`.
    fn inner(&self, name: &str, op: &str, attrs: &[&str]) -> Option<(usize, &NodeProto)> {
        let &i = self.producer.get(name)?;
        let n = &self.g.node[i];
        let ok = n.op_type == op
            && (n.domain.is_empty() || n.domain == "ai.onnx")
            && !self.claimed.contains(&i)
            && self.imp.sole_consumer(name).is_some()
            && n.output.iter().skip(1).all(|o| o.is_empty())
            && Attrs(&n.attribute).only(attrs).is_ok();
        ok.then_some((i, n))
    }

    /// The two inputs of a binary node.
    fn pair(n: &NodeProto) -> Option<(&str, &str)> {
        match n.input.as_slice() {
            [a, b] => Some((a, b)),
            _ => None,
        }
    }

    /// The factors of the product rooted at Mul node `n`: inner Muls are opened (and added to
    /// `nodes`), anything else is a factor.
    fn factors(&self, n: &NodeProto, nodes: &mut Vec<usize>) -> Option<Vec<String>> {
        let (a, b) = Self::pair(n)?;
        let mut out = Vec::new();
        for v in [a, b] {
            match self.inner(v, "Mul", &[]) {
                Some((i, m)) => {
                    nodes.push(i);
                    out.extend(self.factors(m, nodes)?);
                }
                None => out.push(v.to_string()),
            }
        }
        Some(out)
    }

    /// `k + v` (either order) with `k` near `want`: returns `v`.
    fn add_const<'n>(&self, n: &'n NodeProto, want: f64) -> Option<&'n str> {
        let (a, b) = Self::pair(n)?;
        if self.scalar(a).is_some_and(|c| near(c, want)) {
            Some(b)
        } else {
            self.scalar(b).is_some_and(|c| near(c, want)).then_some(a)
        }
    }

    /// Takes from `factors` the one that is a constant near `want`.
    fn take_const(&self, factors: &mut Vec<String>, want: f64) -> Option<()> {
        let k = factors
            .iter()
            .position(|f| self.scalar(f).is_some_and(|c| near(c, want)))?;
        factors.remove(k);
        Some(())
    }

    /// The GELU chain whose outermost product is Mul node `n`.
    fn gelu(&self, n: &NodeProto, nodes: &mut Vec<usize>) -> Option<Chain> {
        let mut f = self.factors(n, nodes)?;
        if f.len() != 3 {
            return None;
        }
        self.take_const(&mut f, 0.5)?;
        // One of the two left is `1 + erf/tanh(...)`, the other x.
        let (k, (ai, add)) = f
            .iter()
            .enumerate()
            .find_map(|(k, v)| Some((k, self.inner(v, "Add", &[])?)))?;
        let x = f[1 - k].clone();
        nodes.push(ai);
        let t = self.add_const(add, 1.0)?;
        let op = if let Some((ei, erf)) = self.inner(t, "Erf", &[]) {
            nodes.push(ei);
            let arg = erf.input.first()?;
            if let Some((di, div)) = self.inner(arg, "Div", &[]) {
                nodes.push(di);
                let (l, r) = Self::pair(div)?;
                (l == x
                    && self
                        .scalar(r)
                        .is_some_and(|c| near(c, std::f64::consts::SQRT_2)))
                .then_some(())?;
            } else {
                let (mi, mul) = self.inner(arg, "Mul", &[])?;
                nodes.push(mi);
                let mut g = self.factors(mul, nodes)?;
                self.take_const(&mut g, std::f64::consts::FRAC_1_SQRT_2)?;
                (g == [x.as_str()]).then_some(())?;
            }
            GeluApprox::None
        } else {
            let (ti, tanh) = self.inner(t, "Tanh", &[])?;
            nodes.push(ti);
            // √(2/π) · (x + 0.044715 · x³)
            let (mi, mul) = self.inner(tanh.input.first()?, "Mul", &[])?;
            nodes.push(mi);
            let mut g = self.factors(mul, nodes)?;
            self.take_const(&mut g, (2.0 / std::f64::consts::PI).sqrt())?;
            let [s] = g.as_slice() else { return None };
            let (si, sum) = self.inner(s, "Add", &[])?;
            nodes.push(si);
            let (l, r) = Self::pair(sum)?;
            let cube = if l == x { r } else { (r == x).then_some(l)? };
            let (ci, cmul) = self.inner(cube, "Mul", &[])?;
            nodes.push(ci);
            let mut h = self.factors(cmul, nodes)?;
            self.take_const(&mut h, 0.044715)?;
            let [p] = h.as_slice() else { return None };
            let (pi, pow) = self.inner(p, "Pow", &[])?;
            nodes.push(pi);
            let (base, e) = Self::pair(pow)?;
            (base == x && self.scalar(e) == Some(3.0)).then_some(())?;
            GeluApprox::Tanh
        };
        Some(Chain {
            x,
            op: ChainOp::Gelu(op),
        })
    }

    /// The RMSNorm chain whose outermost product is Mul node `n`.
    fn rms_norm(&self, n: &NodeProto, nodes: &mut Vec<usize>) -> Option<Chain> {
        let mut f = self.factors(n, nodes)?;
        if !(2..=3).contains(&f.len()) {
            return None;
        }
        let (k, (ri, recip)) = f
            .iter()
            .enumerate()
            .find_map(|(k, v)| Some((k, self.inner(v, "Reciprocal", &[])?)))?;
        f.remove(k);
        nodes.push(ri);
        let (si, sqrt) = self.inner(recip.input.first()?, "Sqrt", &[])?;
        nodes.push(si);
        let (ai, add) = self.inner(sqrt.input.first()?, "Add", &[])?;
        nodes.push(ai);
        let (l, r) = Self::pair(add)?;
        let (mean, epsilon) = match (self.scalar(l), self.scalar(r)) {
            (None, Some(e)) => (l, e),
            (Some(e), None) => (r, e),
            _ => return None,
        };
        let attrs = ["axes", "keepdims", "noop_with_empty_axes"];
        let (mi, rm) = self.inner(mean, "ReduceMean", &attrs)?;
        nodes.push(mi);
        let a = Attrs(&rm.attribute);
        if a.int("keepdims", 1).ok()? != 1 {
            return None;
        }
        let axes = match (
            a.ints("axes").ok()?,
            rm.input.get(1).filter(|s| !s.is_empty()),
        ) {
            (Some(ax), None) => ax,
            (None, Some(name)) => match self.constant(name)? {
                Val::Int { data, .. } => data.clone(),
                _ => return None,
            },
            _ => return None,
        };
        if axes.is_empty() {
            return None;
        }
        let (pi, pow) = self.inner(rm.input.first()?, "Pow", &[])?;
        nodes.push(pi);
        let (x, e) = Self::pair(pow)?;
        if self.scalar(e) != Some(2.0) {
            return None;
        }
        let k = f.iter().position(|v| v == x)?;
        f.remove(k);
        let scale = match f.as_slice() {
            [] => None,
            [s] if matches!(self.constant(s), Some(Val::Float(_))) => Some(s.clone()),
            _ => return None,
        };
        Some(Chain {
            x: x.to_string(),
            op: ChainOp::RmsNorm {
                axes,
                epsilon,
                scale,
            },
        })
    }
}

impl Importer {
    /// Finds the chains of `g` (whose nodes are visited in `order`): each chain's last node is
    /// recorded in `chains`, its other nodes in `skip`. The last nodes are tried from the end,
    /// so that a scaled RMSNorm is matched whole rather than its inner product alone.
    pub(in crate::onnx::import) fn find_chains(&mut self, g: &GraphProto, order: &[usize]) {
        let mut consts = HashMap::new();
        for n in g.node.iter().filter(|n| n.op_type == "Constant") {
            if let (Some(o), Ok(v)) = (n.output.first(), self.constant_value(n)) {
                consts.insert(o.clone(), v);
            }
        }
        let producer = g
            .node
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
            .collect();
        let mut m = Matcher {
            imp: self,
            g,
            producer,
            consts,
            claimed: HashSet::new(),
        };
        let mut found = Vec::new();
        for &i in order.iter().rev() {
            let n = &g.node[i];
            if n.op_type != "Mul" || m.claimed.contains(&i) {
                continue;
            }
            let mut nodes = Vec::new();
            let chain = m.rms_norm(n, &mut nodes).or_else(|| {
                nodes.clear();
                m.gelu(n, &mut nodes)
            });
            if let Some(c) = chain {
                m.claimed.insert(i);
                m.claimed.extend(nodes);
                found.push((i, c));
            }
        }
        let claimed = m.claimed;
        for (i, c) in found {
            self.chains.insert(i, c);
        }
        self.skip
            .extend(claimed.into_iter().filter(|i| !self.chains.contains_key(i)));
    }

    /// Imports chain `c` that ends at node `n`.
    pub(in crate::onnx::import) fn chain(&mut self, n: &NodeProto, c: Chain) -> R<()> {
        let out = n
            .output
            .first()
            .filter(|s| !s.is_empty())
            .ok_or("the node has no output")?;
        let x = self.operand(&c.x)?;
        let v = match c.op {
            ChainOp::Gelu(approximate) => {
                self.push(OpKind::Gelu { approximate }, &[x], Some(out))?
            }
            ChainOp::RmsNorm {
                axes,
                epsilon,
                scale,
            } => {
                let dims = self.func.ty(x).dims.to_vec();
                let r = dims.len();
                let mut ax = axes
                    .iter()
                    .map(|&a| norm_axis(a, r))
                    .collect::<R<Vec<_>>>()?;
                ax.sort_unstable();
                let axis = ax[0];
                if ax != (axis..r).collect::<Vec<_>>() {
                    return Err(format!(
                        "the RMSNorm chain ending here reduces axes {axes:?} of a rank-{r} input, which are not its trailing axes"
                    ));
                }
                let mut ops = vec![x];
                if let Some(s) = scale {
                    ops.push(self.rms_scale(&s, &dims[axis..], r)?);
                }
                let kind = OpKind::RmsNorm {
                    axis: axis as i64,
                    epsilon,
                };
                self.push(kind, &ops, Some(out))?
            }
        };
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    /// The scale `name` of an RMSNorm over axes of sizes `tail` of a rank-`r` input, as a
    /// tensor of shape `tail` (an exporter may give it leading axes of size 1).
    fn rms_scale(
        &mut self,
        name: &str,
        tail: &[crate::ir::Dim],
        r: usize,
    ) -> R<crate::ir::ValueId> {
        let t = self
            .float_const(name)
            .ok_or_else(|| format!("the RMSNorm scale '{name}' is not a constant"))?;
        let want: Option<Vec<u64>> = tail.iter().map(|d| d.as_static()).collect();
        let want = want.ok_or("the axes an RMSNorm normalizes must have static sizes")?;
        let strip = |s: &[u64]| {
            s.iter()
                .skip_while(|&&d| d == 1)
                .copied()
                .collect::<Vec<_>>()
        };
        if t.shape().len() > r || strip(t.shape()) != strip(&want) {
            return Err(format!(
                "the RMSNorm scale '{name}' has shape {:?}, not the normalized shape {want:?}",
                t.shape()
            ));
        }
        if t.shape() == want.as_slice() {
            return self.operand(name);
        }
        let t: Tensor = t.reshaped(want).expect("same element count");
        Ok(self.weight(name, t))
    }
}
