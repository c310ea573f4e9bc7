//! Operators that take or repeat positions along axes: Slice, Split and Expand. On constants
//! of any rank they fold (`const_index.rs`); on an activation each axis they change becomes an
//! `nn.gather` with the list of positions kept (rotary's `rotate_half` halves, GPT-2's fused
//! QKV split), or, for Expand, the position 0 of a size-1 axis repeated (GQA's `repeat_kv`).
//! Every result is a copy of input elements, so the translation is exact.

use crate::ir::infer::norm_axis;
use crate::ir::{Dim, OpKind, ValueId};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::const_index::{
    broadcast, broadcast_shape, const_shape, count, select_map, slice_positions, take,
};
use crate::onnx::import::fold::dyn_dim;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::{GraphProto, NodeProto};

impl Importer {
    /// The integers of constant input `i`, refusing dynamic-dimension entries.
    fn static_ints(&self, n: &NodeProto, i: usize) -> R<Option<Vec<i64>>> {
        let Some(name) = Self::input(n, i) else {
            return Ok(None);
        };
        let (_, data) = self.int_const(name)?;
        if data.iter().any(|&x| dyn_dim::decode(x).is_some()) {
            return Err(format!("input '{name}' {}", dyn_dim::DEPENDS));
        }
        Ok(Some(data))
    }

    /// Binds `out` to `x_name` with, along each axis, the positions `keep` (`None`: all): a
    /// folded constant, or one `nn.gather` per axis that changes.
    fn select(&mut self, x_name: &str, keep: Vec<Option<Vec<u64>>>, out: &str) -> R<()> {
        let dims = self.dims(x_name)?;
        if let v @ (Val::Int { .. } | Val::Float(_)) = self.val(x_name)?.clone() {
            let full: Vec<Vec<u64>> = (keep.into_iter().zip(&dims))
                .map(|(k, d)| k.unwrap_or_else(|| (0..d.as_static().unwrap_or(0)).collect()))
                .collect();
            let shape: Vec<u64> = dims.iter().map(|d| d.as_static().unwrap_or(0)).collect();
            let (out_shape, map) = select_map(&shape, &full)?;
            self.bind(out, take(&v, out_shape, &map));
            return Ok(());
        }
        let mut x = self.operand(x_name)?;
        let changed: Vec<(usize, Vec<u64>)> = (keep.into_iter().enumerate())
            .filter_map(|(axis, k)| k.map(|k| (axis, k)))
            .filter(|(axis, k)| {
                let all = dims[*axis].as_static().map(|d| (0..d).collect::<Vec<_>>());
                all.as_ref() != Some(k)
            })
            .collect();
        let last = changed.len();
        for (i, (axis, indices)) in changed.into_iter().enumerate() {
            let kind = OpKind::Gather {
                axis: axis as i64,
                indices,
            };
            x = self.push(kind, &[x], (i + 1 == last).then_some(out))?;
        }
        self.bind(out, Val::Ir(x));
        Ok(())
    }

    pub(super) fn slice(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&[])?;
        let x_name = Self::need(n, 0)?;
        let dims = self.dims(x_name)?;
        let starts = self
            .static_ints(n, 1)?
            .ok_or("input 1 (starts) is missing")?;
        let ends = self.static_ints(n, 2)?.ok_or("input 2 (ends) is missing")?;
        let axes = match self.static_ints(n, 3)? {
            Some(ax) => ax
                .iter()
                .map(|&x| norm_axis(x, dims.len()))
                .collect::<R<Vec<_>>>()?,
            None => (0..starts.len()).collect(),
        };
        let steps = self.static_ints(n, 4)?.unwrap_or(vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err("starts, ends, axes and steps have different lengths".into());
        }
        let mut keep = vec![None; dims.len()];
        for (k, &axis) in axes.iter().enumerate() {
            if keep[axis].is_some() {
                return Err(format!("axis {axis} is sliced twice"));
            }
            let len = dims[axis]
                .as_static()
                .ok_or_else(|| format!("axis {axis} is dynamic; slicing it needs --dim"))?;
            keep[axis] = Some(slice_positions(len, starts[k], ends[k], steps[k])?);
        }
        self.select(x_name, keep, out)
    }

    pub(super) fn split(&mut self, n: &NodeProto, a: &Attrs<'_>) -> R<()> {
        a.only(&["axis", "num_outputs"])?;
        let x_name = Self::need(n, 0)?;
        let dims = self.dims(x_name)?;
        let axis = norm_axis(a.int("axis", 0)?, dims.len())?;
        let len = dims[axis]
            .as_static()
            .ok_or_else(|| format!("axis {axis} is dynamic; splitting it needs --dim"))?;
        let parts = n.output.len() as u64;
        let sizes: Vec<u64> = match self.static_ints(n, 1)? {
            Some(s) => s
                .iter()
                .map(|&x| u64::try_from(x).map_err(|_| format!("split size {x} is negative")))
                .collect::<R<_>>()?,
            None => {
                let k = a.int("num_outputs", parts as i64)?;
                if k != parts as i64 || parts == 0 {
                    return Err(format!(
                        "num_outputs is {k} but the node has {parts} outputs"
                    ));
                }
                // Equal parts of ceil(len / k), the last one smaller (the specification).
                let chunk = len.div_ceil(parts);
                (0..parts)
                    .map(|i| chunk.min(len.saturating_sub(i * chunk)))
                    .collect()
            }
        };
        if sizes.len() as u64 != parts || sizes.iter().sum::<u64>() != len {
            return Err(format!(
                "split sizes {sizes:?} do not cut axis {axis} of size {len} into {parts} outputs"
            ));
        }
        let mut start = 0;
        for (o, size) in n.output.iter().zip(sizes) {
            if !o.is_empty() {
                let mut keep = vec![None; dims.len()];
                keep[axis] = Some((start..start + size).collect());
                self.select(x_name, keep, o)?;
            }
            start += size;
        }
        Ok(())
    }

    pub(super) fn expand(
        &mut self,
        n: &NodeProto,
        a: &Attrs<'_>,
        g: &GraphProto,
        out: &str,
    ) -> R<()> {
        a.only(&[])?;
        let x_name = Self::need(n, 0)?;
        let (_, target) = self.int_const(Self::need(n, 1)?)?;
        match self.val(x_name)?.clone() {
            Val::Ir(x) => self.expand_activation(x_name, x, &target, out),
            Val::Float(t) => {
                // The exporter writes nn.scatter's fill this way: a Concat may read it.
                self.fills
                    .insert(out.to_string(), (t.clone(), target.clone()));
                match expand_const(&Val::Float(t), &target) {
                    Ok(b) => self.bind(out, b),
                    // A dynamic target: only a Concat may take it, as an `nn.scatter`'s fill
                    // (it reports the error otherwise).
                    Err(_)
                        if self
                            .sole_consumer(out)
                            .is_some_and(|i| g.node[i].op_type == "Concat") => {}
                    Err(e) => return Err(e),
                }
                Ok(())
            }
            v => {
                let b = expand_const(&v, &target)?;
                self.bind(out, b);
                Ok(())
            }
        }
    }

    /// Expand of an activation: each size-1 axis the target makes longer becomes an
    /// `nn.gather` of position 0 repeated; a longer target first adds leading size-1 axes.
    fn expand_activation(&mut self, x_name: &str, x: ValueId, target: &[i64], out: &str) -> R<()> {
        let dims = self.func.ty(x).dims.to_vec();
        let lead = target.len().saturating_sub(dims.len());
        let mut padded = vec![Dim::Static(1); lead];
        padded.extend(dims.iter().copied());
        // The target is right-aligned against the input (NumPy broadcasting).
        let offset = padded.len() - target.len();
        let mut keep = vec![None; padded.len()];
        for (k, &t) in target.iter().enumerate() {
            let axis = offset + k;
            match (padded[axis], dyn_dim::decode(t)) {
                // The input's own dynamic size, copied through `Shape`.
                (Dim::Dynamic, Some((v, ax))) if v == x && ax + lead == axis => {}
                (_, Some(_)) => return Err(format!("target entry {k} {}", dyn_dim::DEPENDS)),
                (_, None) if t == 1 => {}
                (Dim::Static(d), None) if d as i64 == t => {}
                (Dim::Static(1), None) if t > 1 => {
                    keep[axis] = Some(vec![0; count(&[t as u64])?]);
                }
                (d, None) => return Err(format!("axis {axis} of size {d} cannot expand to {t}")),
            }
        }
        if lead == 0 {
            return self.select(x_name, keep, out);
        }
        let tmp = format!("{out}.unsqueezed");
        self.reshape_to(x_name, padded, &tmp)?;
        self.select(&tmp, keep, out)
    }
}

/// Expand of a constant: broadcast to the broadcast of its shape and `target`.
fn expand_const(v: &Val, target: &[i64]) -> R<Val> {
    let target = target
        .iter()
        .map(|&t| {
            if dyn_dim::decode(t).is_some() {
                Err(format!("the target shape {}", dyn_dim::DEPENDS))
            } else {
                u64::try_from(t).map_err(|_| format!("target dimension {t} is negative"))
            }
        })
        .collect::<R<Vec<_>>>()?;
    let src = const_shape(v).expect("invariant: a constant");
    broadcast(v, &broadcast_shape(&src, &target)?)
}
