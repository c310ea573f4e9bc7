//! `nn.scatter` rebuilt from the nodes the exporter writes for it (`export/scatter.rs`): a fill
//! constant shaped `[1, .., size, .., 1]` `Expand`ed to the input's shape with `size` on the
//! axis (a constant shape, or `Shape`/`Slice`/`Concat` of the input itself), `Concat` after the
//! input on the axis, then `Gather` on that axis with constant indices where each position
//! reads either one input position or its own fill. Recognized at the Concat, which takes the
//! Gather along; the expanded fill never becomes a dense constant, so a dynamic batch imports
//! and an export of the import writes the same nodes again.
//!
//! Anything else (another consumer, another map) is an ordinary Concat and Gather.

use crate::ir::builder::FuncBuilder;
use crate::ir::infer::norm_axis;
use crate::ir::{Dim, Loc, OpKind, ValueId};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::fold::{broadcast_const, dyn_dim};
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::{GraphProto, NodeProto};
use std::collections::HashSet;

impl Importer {
    /// Translates Concat node `n` (on `axis`) and the Gather after it as one `nn.scatter` if
    /// they are the exporter's pattern; `false` leaves `n` to the ordinary Concat. A fill whose
    /// Expand could not be folded (a dynamic shape) is an error outside the pattern.
    pub(super) fn scatter(
        &mut self,
        n: &NodeProto,
        axis: i64,
        g: &GraphProto,
        out: &str,
    ) -> R<bool> {
        let Some((gi, kind, x)) = self.scatter_pattern(n, axis, g, out) else {
            for name in &n.input {
                if let (Some((t, target)), None) = (self.fills.get(name), self.vals.get(name)) {
                    broadcast_const(t, target)?;
                }
            }
            return Ok(false);
        };
        let gather_out = g.node[gi].output[0].clone();
        let v = self.push(kind, &[x], Some(&gather_out))?;
        self.bind(&gather_out, Val::Ir(v));
        self.skip.insert(gi);
        // The exporter gives the op's name to the first node it writes for it.
        let first = first_node(g, &n.input[1]);
        let name = first.map(|i| g.node[i].name.as_str()).unwrap_or("");
        if !name.is_empty() {
            let op = self.func.producer(v).expect("pushed by an op");
            FuncBuilder::new(&mut self.func).set_loc(op, Loc::Name(name.to_string()));
        }
        Ok(true)
    }

    /// The Gather's node index, the `nn.scatter` and its input, when Concat `n` is the pattern.
    fn scatter_pattern(
        &self,
        n: &NodeProto,
        axis: i64,
        g: &GraphProto,
        out: &str,
    ) -> Option<(usize, OpKind, ValueId)> {
        let [x_name, fill_name] = n.input.as_slice() else {
            return None;
        };
        let Some(Val::Ir(x)) = self.vals.get(x_name) else {
            return None;
        };
        let (fill, target) = self.fills.get(fill_name)?;
        // The fill feeds this Concat only.
        self.sole_consumer(fill_name)?;
        let xt = self.func.ty(*x);
        let r = xt.rank();
        let a = norm_axis(axis, r).ok()?;
        let n_in = xt.dims[a].as_static()?;
        // The fill: [1, .., size, .., 1], x's element type, expanded to x's shape but `size`.
        let size = *fill.shape().get(a)?;
        let fill_ok = fill.elem() == xt.elem
            && fill.shape().len() == r
            && fill
                .shape()
                .iter()
                .enumerate()
                .all(|(i, &d)| i == a || d == 1);
        let target_ok = target.len() == r
            && target.iter().enumerate().all(|(i, &t)| match xt.dims[i] {
                _ if i == a => t == size as i64,
                Dim::Static(d) => t == d as i64,
                Dim::Dynamic => dyn_dim::decode(t) == Some((*x, i)),
            });
        if !fill_ok || !target_ok {
            return None;
        }
        // The Gather: on the same axis, output position p reads input j (each once) or fill p.
        let gi = self.sole_consumer(out)?;
        let gn = &g.node[gi];
        let ga = Attrs(&gn.attribute);
        let gather_axis = ga.get("axis").map(|x| x.i).unwrap_or(0);
        if gn.op_type != "Gather"
            || !(gn.domain.is_empty() || gn.domain == "ai.onnx")
            || gn.input.len() != 2
            || gn.input[0] != out
            || ga.only(&["axis"]).is_err()
            || norm_axis(gather_axis, r).ok()? != a
            || gn.output.first().is_none_or(|o| o.is_empty())
            || gn
                .output
                .iter()
                .skip(1)
                .any(|o| self.consumers.contains_key(o))
        {
            return None;
        }
        let Some(Val::Int { shape, data: map }) = self.vals.get(&gn.input[1]) else {
            return None;
        };
        if shape.as_slice() != [size] {
            return None;
        }
        let mut indices = vec![u64::MAX; n_in as usize];
        for (p, &m) in map.iter().enumerate() {
            match u64::try_from(m) {
                Ok(j) if j < n_in && indices[j as usize] == u64::MAX => {
                    indices[j as usize] = p as u64
                }
                Ok(f) if f == n_in + p as u64 => {}
                _ => return None,
            }
        }
        if indices.contains(&u64::MAX) {
            return None;
        }
        let kind = OpKind::Scatter {
            axis: a as i64,
            indices,
            size,
            fill: fill.to_f32_vec(),
        };
        Some((gi, kind, *x))
    }
}

/// The first node (in graph order) among the producer of `value` and everything it depends
/// on: for the fill, the Expand or the `Shape` its dynamic shape starts from.
fn first_node(g: &GraphProto, value: &str) -> Option<usize> {
    let mut seen = HashSet::new();
    let mut todo = vec![value];
    let mut first = None;
    while let Some(v) = todo.pop() {
        let Some(i) = g.node.iter().position(|m| m.output.iter().any(|o| o == v)) else {
            continue;
        };
        if seen.insert(i) {
            first = Some(first.map_or(i, |f: usize| f.min(i)));
            todo.extend(g.node[i].input.iter().map(String::as_str));
        }
    }
    first
}
