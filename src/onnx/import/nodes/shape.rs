//! Shape operators: Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat and Gather. On
//! constants of any rank they fold (a free relabelling, or data computed at import); on
//! activations they become `nn.flatten`, `nn.reshape`, `nn.transpose`, `nn.concat` and
//! `nn.gather`. A dynamic dimension may only be carried through where a Reshape copies it.

use crate::ir::infer::norm_axis;
use crate::ir::{Dim, OpKind, ValueId};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::const_index;
use crate::onnx::import::fold::dyn_dim;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::{GraphProto, NodeProto};

impl Importer {
    pub(super) fn flatten(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["axis"])?;
        let x_name = Self::need(n, 0)?;
        let rank = self.dims(x_name)?.len() as i64;
        let mut axis = a.int("axis", 1)?;
        if axis < 0 {
            axis += rank;
        }
        if !(0..=rank).contains(&axis) {
            return Err(format!(
                "axis {} is out of range for rank {rank}",
                a.int("axis", 1)?
            ));
        }
        let x = self.operand(x_name)?;
        let v = self.push(OpKind::Flatten { axis }, &[x], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    pub(super) fn reshape(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["allowzero"])?;
        let allowzero = a.int("allowzero", 0)? != 0;
        let x_name = Self::need(n, 0)?;
        let (_, target) = self.int_const(Self::need(n, 1)?)?;
        let dims = self.dims(x_name)?;
        let source = match self.val(x_name)? {
            Val::Ir(v) => Some(*v),
            _ => None,
        };
        let new = reshape_dims(&dims, &target, allowzero, source)?;
        self.reshape_to(x_name, new, out)?;
        Ok(())
    }

    pub(super) fn squeeze_unsqueeze(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        let op = n.op_type.as_str();
        a.only(&["axes"])?;
        let x_name = Self::need(n, 0)?;
        let dims = self.dims(x_name)?;
        let axes = match (a.ints("axes")?, Self::input(n, 1)) {
            (Some(ax), _) => Some(ax),
            (None, Some(name)) => Some(self.int_const(name)?.1),
            (None, None) => None,
        };
        let new = if op == "Squeeze" {
            let rank = dims.len();
            let drop: Vec<usize> = match axes {
                Some(ax) => ax
                    .iter()
                    .map(|&x| norm_axis(x, rank))
                    .collect::<R<Vec<_>>>()?,
                None => (0..rank).filter(|&i| dims[i] == Dim::Static(1)).collect(),
            };
            for &d in &drop {
                if dims[d] != Dim::Static(1) {
                    return Err(format!("axis {d} has size {}, not 1", dims[d]));
                }
            }
            (0..rank)
                .filter(|i| !drop.contains(i))
                .map(|i| dims[i])
                .collect()
        } else {
            let ax = axes.ok_or("the axes are missing")?;
            let rank = dims.len() + ax.len();
            let ins = ax
                .iter()
                .map(|&x| norm_axis(x, rank))
                .collect::<R<Vec<_>>>()?;
            let mut it = dims.iter();
            (0..rank)
                .map(|i| {
                    if ins.contains(&i) {
                        Dim::Static(1)
                    } else {
                        *it.next().expect("rank counts the old axes")
                    }
                })
                .collect()
        };
        self.reshape_to(x_name, new, out)?;
        Ok(())
    }

    pub(super) fn transpose(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["perm"])?;
        let x_name = Self::need(n, 0)?;
        let rank = self.dims(x_name)?.len();
        let perm = match a.ints("perm")? {
            Some(p) => p
                .iter()
                .map(|&x| u64::try_from(x).map_err(|_| format!("perm has {x}")))
                .collect::<R<Vec<_>>>()?,
            None => (0..rank as u64).rev().collect(),
        };
        if let v @ (Val::Int { .. } | Val::Float(_)) = self.val(x_name)?.clone() {
            let shape = const_index::const_shape(&v).expect("invariant: a constant");
            let perm: Vec<usize> = perm.iter().map(|&p| p as usize).collect();
            let (out_shape, map) = const_index::transpose_map(&shape, &perm)?;
            self.bind(out, const_index::take(&v, out_shape, &map));
            return Ok(());
        }
        let x = self.operand(x_name)?;
        let v = self.push(OpKind::Transpose { perm }, &[x], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    pub(super) fn concat(
        &mut self,
        n: &NodeProto,
        a: &Attrs<'_>,
        g: &GraphProto,
        out: &str,
    ) -> R<()> {
        a.only(&["axis"])?;
        let axis = a.int("axis", 0).and_then(|_| {
            a.get("axis")
                .map(|x| x.i)
                .ok_or_else(|| "attribute 'axis' is required".to_string())
        })?;
        if self.scatter(n, axis, g, out)? {
            return Ok(());
        }
        let names: Vec<&str> = n.input.iter().map(String::as_str).collect();
        let vals = names
            .iter()
            .map(|s| self.val(s).cloned())
            .collect::<R<Vec<_>>>()?;
        let ints = vals.iter().all(|v| matches!(v, Val::Int { .. }));
        let floats = vals.iter().all(|v| matches!(v, Val::Float(_)));
        if ints || floats {
            let rank = self.dims(names[0])?.len();
            self.bind(out, const_index::concat(&vals, norm_axis(axis, rank)?)?);
            return Ok(());
        }
        let vs = names
            .iter()
            .map(|s| self.operand(s))
            .collect::<R<Vec<_>>>()?;
        let v = self.push(OpKind::Concat { axis }, &vs, Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    pub(super) fn gather(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["axis"])?;
        let x_name = Self::need(n, 0)?;
        let i_name = Self::need(n, 1)?;
        if let Val::Ir(ids) = *self.val(i_name)? {
            return self.embedding(x_name, ids, a.int("axis", 0)?, out);
        }
        let (ishape, idx) = self.int_const(i_name)?;
        let dims = self.dims(x_name)?;
        let axis = norm_axis(a.int("axis", 0)?, dims.len())?;
        let size = dims[axis].as_static();
        let indices = idx
            .iter()
            .map(|&i| {
                let j = if i < 0 {
                    size.map(|s| i + s as i64)
                        .ok_or("a negative index on a dynamic axis")?
                } else {
                    i
                };
                match size {
                    Some(s) if j < 0 || j as u64 >= s => {
                        Err(format!("index {i} is out of range for size {s}"))
                    }
                    _ => Ok(j as u64),
                }
            })
            .collect::<R<Vec<_>>>()?;
        // Result dims: the data's with `axis` replaced by the indices' dims.
        let mut new: Vec<Dim> = dims[..axis].to_vec();
        new.extend(ishape.iter().map(|&d| Dim::Static(d)));
        new.extend_from_slice(&dims[axis + 1..]);
        if let v @ (Val::Int { .. } | Val::Float(_)) = self.val(x_name)?.clone() {
            let shape = const_index::const_shape(&v).expect("invariant: a constant");
            let (out_shape, map) = const_index::gather_map(&shape, axis, &ishape, &idx)?;
            self.bind(out, const_index::take(&v, out_shape, &map));
            return Ok(());
        }
        let x = self.operand(x_name)?;
        let kind = OpKind::Gather {
            axis: axis as i64,
            indices,
        };
        if ishape.len() == 1 {
            let v = self.push(kind, &[x], Some(out))?;
            self.bind(out, Val::Ir(v));
            return Ok(());
        }
        let g = self.push(kind, &[x], None)?;
        let tmp = format!("{out}.gathered");
        self.bind(&tmp, Val::Ir(g));
        self.reshape_to(&tmp, new, out)
    }

    /// Gather of a constant table's rows by run-time ids (a graph input): `nn.embedding`.
    fn embedding(&mut self, table: &str, ids: ValueId, axis: i64, out: &str) -> R<()> {
        if self.float_const(table).is_none() || self.dims(table)?.len() != 2 || axis != 0 {
            return Err(
                "run-time indices are supported only as rows (axis 0) of a constant 2-D table (an embedding)"
                    .into(),
            );
        }
        let t = self.operand(table)?;
        let v = self.push(OpKind::Embedding, &[t, ids], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    /// Binds `out` to `x` with dims `new` (same elements): a free re-labelling for constants,
    /// `nn.reshape` for static activations, `nn.flatten` when a dynamic batch stays in front.
    pub(super) fn reshape_to(&mut self, x_name: &str, new: Vec<Dim>, out: &str) -> R<()> {
        let static_new: Option<Vec<u64>> = new.iter().map(|d| d.as_static()).collect();
        match (self.val(x_name)?.clone(), &static_new) {
            (Val::Float(t), Some(s)) => {
                let t = t.reshaped(s.clone()).ok_or("the element count changes")?;
                self.bind(out, Val::Float(t));
                return Ok(());
            }
            (Val::Int { data, .. }, Some(s)) => {
                self.bind(
                    out,
                    Val::Int {
                        shape: s.clone(),
                        data,
                    },
                );
                return Ok(());
            }
            _ => {}
        }
        let x = self.operand(x_name)?;
        let dims = self.func.ty(x).dims.to_vec();
        if dims == new {
            self.bind(out, Val::Ir(x));
            return Ok(());
        }
        // `torch.flatten(x, 1)` before a classifier: the dynamo exporter writes a static Reshape
        // to [N, C·H·W] where TorchScript writes Flatten. As `nn.flatten` both prune alike
        // (pruning follows a channel through a flatten at axis 1, not through a reshape).
        let classifier_flatten = dims.len() > 2
            && new.len() == 2
            && new[0] == dims[0]
            && dims[1..]
                .iter()
                .map(|d| d.as_static())
                .product::<Option<u64>>()
                == new[1].as_static();
        let kind = match static_new {
            Some(_) if classifier_flatten => OpKind::Flatten { axis: 1 },
            Some(_) if self.func.ty(x).is_static() => OpKind::Reshape { shape: new },
            _ => {
                // A flatten gives [prod(dims[..k]), prod(dims[k..])]; find the k that matches.
                let side = |part: &[Dim], want: Dim| match want {
                    Dim::Dynamic => part == [Dim::Dynamic],
                    Dim::Static(w) => {
                        part.iter().all(|d| d.as_static().is_some())
                            && part.iter().filter_map(|d| d.as_static()).product::<u64>() == w
                    }
                };
                let k = (new.len() == 2).then(|| {
                    (0..=dims.len()).find(|&k| side(&dims[..k], new[0]) && side(&dims[k..], new[1]))
                });
                // Otherwise a reshape whose one `?` keeps the element count (the dynamic size
                // of the input scaled by the static sizes the reshape moves).
                let one_dynamic =
                    |ds: &[Dim]| ds.iter().filter(|d| **d == Dim::Dynamic).count() == 1;
                let k = match k.flatten() {
                    None if one_dynamic(&dims) && one_dynamic(&new) => {
                        let v = self.push(OpKind::Reshape { shape: new }, &[x], Some(out))?;
                        self.bind(out, Val::Ir(v));
                        return Ok(());
                    }
                    k => k,
                };
                let k = k.ok_or_else(|| {
                    format!(
                        "reshaping {} to [{}] needs a static input shape",
                        self.func.ty(x),
                        new.iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                OpKind::Flatten { axis: k as i64 }
            }
        };
        let v = self.push(kind, &[x], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }
}

/// The result dims of an ONNX Reshape: `0` copies the input dim (unless `allowzero`), one `-1`
/// takes the remaining elements. A dynamic input dim is allowed only where a `0` (or its own
/// `x.shape[i]`) copies it, or where the `-1` stands for it (times static sizes when nothing
/// is copied).
fn reshape_dims(
    dims: &[Dim],
    target: &[i64],
    allowzero: bool,
    source: Option<ValueId>,
) -> R<Vec<Dim>> {
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut copied_dynamic = 0;
    for (i, &t) in target.iter().enumerate() {
        if let Some((v, axis)) = dyn_dim::decode(t) {
            // `Shape(x)[i]` of this very input at the same position: a copy, like `0`.
            if Some(v) != source || axis != i || dims.get(i) != Some(&Dim::Dynamic) {
                return Err(format!(
                    "shape entry {i} is a dynamic dimension of another tensor or axis; only x.shape[i] at position i of a reshape of x is supported"
                ));
            }
            copied_dynamic += 1;
            out.push(Some(Dim::Dynamic));
            continue;
        }
        out.push(match t {
            0 if !allowzero => {
                let d = *dims
                    .get(i)
                    .ok_or_else(|| format!("shape entry {i} copies a dimension the input lacks"))?;
                if d == Dim::Dynamic {
                    copied_dynamic += 1;
                }
                Some(d)
            }
            -1 => None,
            t if t >= 0 => Some(Dim::Static(t as u64)),
            t => return Err(format!("shape entry {t} is invalid")),
        });
    }
    if out.iter().filter(|d| d.is_none()).count() > 1 {
        return Err("the shape has more than one -1".into());
    }
    let dynamic_in = dims.iter().filter(|d| **d == Dim::Dynamic).count();
    let static_in: u64 = dims.iter().filter_map(|d| d.as_static()).product();
    let static_out: u64 = out.iter().flatten().filter_map(|d| d.as_static()).product();
    // `x.view(-1, 512)` of a [N, 512, 1, 1] x (the dynamo exporter's flatten), or
    // `ids.view(-1, S)` of [B, S] ids (GPT-2's, S copied by `Shape`): with the static parts
    // equal, the -1 is the one dynamic dimension that is not copied. With nothing copied, the
    // -1 regroups the one dynamic dimension with static ones (`view(-1, E)` of [B, S, E] rows,
    // as nnopt writes GPT-2's linears back), which `nn.reshape`'s own -1 keeps.
    if dynamic_in == copied_dynamic + 1 && (static_in == static_out || copied_dynamic == 0) {
        if let Some(minus_one) = out.iter_mut().find(|d| d.is_none()) {
            *minus_one = Some(Dim::Dynamic);
            copied_dynamic += 1;
            if static_in != static_out {
                return Ok(out.into_iter().flatten().collect());
            }
        }
    }
    if dynamic_in != copied_dynamic {
        return Err(
            "reshaping a tensor with dynamic dimensions is only supported where 0 copies them"
                .into(),
        );
    }
    let fill = match out.iter().position(|d| d.is_none()) {
        Some(_) if static_out == 0 || !static_in.is_multiple_of(static_out) => {
            return Err(format!(
                "cannot infer -1: {static_in} elements do not divide by {static_out}"
            ))
        }
        Some(_) => Some(static_in / static_out),
        None if static_in != static_out => {
            return Err(format!(
                "cannot reshape {static_in} elements to {static_out}"
            ))
        }
        None => None,
    };
    Ok(out
        .into_iter()
        .map(|d| d.unwrap_or(Dim::Static(fill.unwrap_or(0))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::reshape_dims;
    use crate::ir::Dim;

    #[test]
    fn minus_one_takes_the_dynamic_dim_when_the_static_parts_match() {
        let (n, s) = (Dim::Dynamic, Dim::Static);
        let x = [n, s(512), s(1), s(1)];
        assert_eq!(
            reshape_dims(&x, &[-1, 512], false, None),
            Ok(vec![n, s(512)])
        );
        assert_eq!(reshape_dims(&x, &[0, -1], false, None), Ok(vec![n, s(512)]));
        // Rows [B·S, E] of a [B, S, E] tensor and back: the -1 is dynamic.
        let rows = [n, s(5), s(64)];
        assert_eq!(
            reshape_dims(&rows, &[-1, 64], false, None),
            Ok(vec![n, s(64)])
        );
        assert_eq!(
            reshape_dims(&[n, s(64)], &[-1, 5, 64], false, None),
            Ok(vec![n, s(5), s(64)])
        );
        // The -1 is N · 2, an `nn.reshape` with -1.
        assert_eq!(
            reshape_dims(&x, &[-1, 256], false, None),
            Ok(vec![n, s(256)])
        );
        assert!(reshape_dims(&[n, n, s(4)], &[-1, 4], false, None).is_err());
    }
}
