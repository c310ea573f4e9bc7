//! Run-time booleans: the attention mask of encoder exports, an int64 graph input that the
//! export casts to BOOL, combines with the constant masks of the shape plumbing (And), and
//! turns into the additive mask of the scores (`Where(mask, 0, lowest)`).
//!
//! NNIR computes on floats, so a run-time boolean is an f32 tensor of 0s and 1s:
//! - `Cast(ids → BOOL)` of an int64 input is a lookup in the table `[[0], [1]]`
//!   (`nn.embedding`). It equals ONNX's `ids ≠ 0` on 0 and 1, the values a mask holds; any other
//!   id is refused at run time by the embedding's range check (where ONNX would read it as true).
//! - `And(a, b)` is `a·b`, `Or(a, b)` is `a + b − a·b` and `Not(a)` is `1 − a`: exact on 0/1.
//! - `Where(c, x, y)` with constant `x` and `y` is `c·x + (1 − c)·y`: with `c` 0 or 1 one term
//!   is the constant and the other a zero, so the sum is exact, but only for finite `x` and `y`
//!   (`0·∞` is NaN), so a non-finite one is refused. A term whose constant is zero is left out.
//! - GatherND and GatherElements with constant indices on a run-time value are one `nn.gather`
//!   of its flattened elements (the positions the constant-index map picks).
//!
//! Only a cast from an int64 input makes a run-time boolean (comparisons are constant-only, in
//! `plumbing.rs`), so every run-time And/Or/Not/Where operand is 0/1 by ONNX's typing. The
//! ONNX names holding run-time booleans are kept in `Importer::bools`, so that a Cast of one
//! to BOOL is the identity and not `x ≠ 0` of a float.

use crate::ir::infer::{broadcast, norm_axis};
use crate::ir::{Dim, ElemType, OpKind, Tensor, ValueId};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::const_index::{gather_elements_map, gather_nd_map};
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::NodeProto;

/// The operators that copy elements of their first input, so keep it boolean.
const COPIES: &[&str] = &[
    "Identity",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Expand",
    "Gather",
    "Transpose",
    "Slice",
    "Concat",
];

impl Importer {
    /// Records `out` as a run-time boolean when `n` copies the elements of one.
    pub(super) fn keep_bool(&mut self, n: &NodeProto, out: &str) {
        let copies = COPIES.contains(&n.op_type.as_str());
        let from_bool = Self::input(n, 0).is_some_and(|x| self.bools.contains(x));
        if copies && from_bool && matches!(self.vals.get(out), Some(Val::Ir(_))) {
            self.bools.insert(out.to_string());
        }
    }

    /// `Cast(x → BOOL)` of a run-time value: the table lookup of an int64 input, the identity on
    /// a run-time boolean.
    pub(super) fn cast_to_bool(&mut self, x_name: &str, x: ValueId, out: &str) -> R<Val> {
        if self.bools.contains(x_name) {
            self.bools.insert(out.to_string());
            return Ok(Val::Ir(x));
        }
        if self.func.ty(x).elem != ElemType::I64 {
            return Err(
                "casting a run-time float to BOOL is not supported (only an int64 mask of 0s and 1s)"
                    .into(),
            );
        }
        let dims = self.func.ty(x).dims.to_vec();
        let table = self.weight(
            &format!("{out}.table"),
            Tensor::from_f32(ElemType::F32, vec![2, 1], &[0.0, 1.0]),
        );
        let rows = self.push(OpKind::Embedding, &[table, x], None)?;
        let tmp = format!("{out}.rows");
        self.bind(&tmp, Val::Ir(rows));
        self.reshape_to(&tmp, dims, out)?;
        self.bools.insert(out.to_string());
        Ok(self.val(out)?.clone())
    }

    /// A logic operator, Where or a constant-index gather with a run-time input; `None` when
    /// every input of `n` is a constant (left to `plumbing.rs`) or `n` is none of them.
    pub(super) fn run_time_bool(
        &mut self,
        n: &NodeProto,
        a: &Attrs<'_>,
        out: &str,
    ) -> R<Option<()>> {
        let run_time = |i: usize| {
            Self::input(n, i).is_some_and(|x| matches!(self.vals.get(x), Some(Val::Ir(_))))
        };
        let op = n.op_type.as_str();
        let is_bool = matches!(op, "And" | "Or" | "Not");
        let data_only = matches!(op, "GatherND" | "GatherElements" | "Where");
        if !(is_bool && (run_time(0) || run_time(1)) || data_only && run_time(0)) {
            return Ok(None);
        }
        let v = match op {
            "And" | "Or" => {
                a.only(&[])?;
                let (x, y) = (self.mask_operand(n, 0)?, self.mask_operand(n, 1)?);
                if op == "And" {
                    self.push(OpKind::Mul, &[x, y], Some(out))?
                } else {
                    let both = self.push(OpKind::Mul, &[x, y], None)?;
                    let sum = self.push(OpKind::Add, &[x, y], None)?;
                    self.push(OpKind::Sub, &[sum, both], Some(out))?
                }
            }
            "Not" => {
                a.only(&[])?;
                let x = self.mask_operand(n, 0)?;
                self.one_minus(x, out, Some(out))?
            }
            "Where" => {
                a.only(&[])?;
                self.where_select(n, out)?
            }
            "GatherND" => {
                a.only(&["batch_dims"])?;
                let batch = usize::try_from(a.int("batch_dims", 0)?)
                    .map_err(|_| "batch_dims is negative")?;
                let (x, shape, ishape, idx) = self.gather_operands(n)?;
                let (out_shape, map) = gather_nd_map(&shape, &ishape, &idx, batch)?;
                self.take_elements(x, out_shape, map, out)?
            }
            _ => {
                a.only(&["axis"])?;
                let (x, shape, ishape, idx) = self.gather_operands(n)?;
                let axis = norm_axis(a.int("axis", 0)?, shape.len())?;
                let map = gather_elements_map(&shape, axis, &ishape, &idx)?;
                self.take_elements(x, ishape, map, out)?
            }
        };
        self.bind(out, Val::Ir(v));
        if is_bool || self.bools.contains(Self::need(n, 0)?) && op != "Where" {
            self.bools.insert(out.to_string());
        }
        Ok(Some(()))
    }

    /// Input `i` of a logic operator as a 0/1 float IR value (a boolean constant becomes a
    /// weight).
    fn mask_operand(&mut self, n: &NodeProto, i: usize) -> R<ValueId> {
        let name = Self::need(n, i)?;
        match self.val(name)?.clone() {
            Val::Ir(v) if self.bools.contains(name) => Ok(v),
            Val::Ir(_) => Err(format!(
                "input '{name}' is computed at run time but is not a mask cast from an int64 input"
            )),
            Val::Int { shape, data } => {
                let ones: Vec<f32> = data.iter().map(|&b| (b != 0) as u8 as f32).collect();
                Ok(self.weight(name, Tensor::from_f32(ElemType::F32, shape, &ones)))
            }
            Val::Float(_) => Err(format!("input '{name}' is a float, not a boolean")),
        }
    }

    /// `1 − x`, named `name`.
    fn one_minus(&mut self, x: ValueId, out: &str, name: Option<&str>) -> R<ValueId> {
        let one = self.weight(
            &format!("{out}.one"),
            Tensor::from_f32(ElemType::F32, vec![], &[1.0]),
        );
        self.push(OpKind::Sub, &[one, x], name)
    }

    /// `Where(c, x, y)` with a run-time `c`: `c·x + (1 − c)·y` for finite constants.
    fn where_select(&mut self, n: &NodeProto, out: &str) -> R<ValueId> {
        let c = self.mask_operand(n, 0)?;
        let mut consts = Vec::new();
        for (i, what) in [(1, "x"), (2, "y")] {
            let name = Self::need(n, i)?;
            let t = self.float_const(name).ok_or_else(|| {
                format!("with a run-time condition, {what} ('{name}') must be a float constant")
            })?;
            if let Some(bad) = t.to_f32_vec().into_iter().find(|v| !v.is_finite()) {
                return Err(format!(
                    "with a run-time condition, {what} ('{name}') holds {bad}, and c·{what} is not exact for a non-finite {what} (0·∞ is NaN); only finite values are supported"
                ));
            }
            consts.push((name, t));
        }
        let c_ty = self.func.ty(c).clone();
        let ty = |t: &Tensor| crate::ir::TensorType::fixed(t.shape(), ElemType::F32);
        let full = broadcast(&broadcast(&c_ty, &ty(&consts[0].1))?, &ty(&consts[1].1))?;
        // The constants a term needs: a zero one only when it widens the result.
        let kept: Vec<(usize, &str)> = consts
            .iter()
            .enumerate()
            .filter(|(_, (_, t))| {
                let zero = t.to_f32_vec().iter().all(|&v| v == 0.0);
                !zero || broadcast(&c_ty, &ty(t)).ok().as_ref() != Some(&c_ty)
            })
            .map(|(i, (name, _))| (i, *name))
            .collect();
        let mut terms = Vec::new();
        for &(i, name) in &kept {
            let factor = if i == 0 {
                c
            } else {
                self.one_minus(c, out, None)?
            };
            let w = self.operand(name)?;
            let last = kept.len() == 1;
            terms.push(self.push(OpKind::Mul, &[factor, w], last.then_some(out))?);
        }
        let v = match terms[..] {
            // Both constants are zero.
            [] => self.push(OpKind::Sub, &[c, c], Some(out))?,
            [t] => t,
            [p, q] => self.push(OpKind::Add, &[p, q], Some(out))?,
            _ => unreachable!("two terms at most"),
        };
        debug_assert_eq!(self.func.ty(v).dims, full.dims, "the terms cover the shape");
        Ok(v)
    }

    /// The run-time data of a gather (static shape) and its integer constant indices.
    #[allow(clippy::type_complexity)]
    fn gather_operands(&mut self, n: &NodeProto) -> R<(ValueId, Vec<u64>, Vec<u64>, Vec<i64>)> {
        let data = Self::need(n, 0)?;
        let x = self.operand(data)?;
        let shape = self
            .func
            .ty(x)
            .static_shape()
            .ok_or("a gather of run-time data needs its shape; give its dimensions sizes with --dim NAME=SIZE")?;
        let (ishape, idx) = self.int_const(Self::need(n, 1)?)?;
        Ok((x, shape, ishape, idx))
    }

    /// The elements of `x` at flat positions `map`, shaped `shape`: one `nn.gather` of the
    /// flattened `x`.
    fn take_elements(
        &mut self,
        x: ValueId,
        shape: Vec<u64>,
        map: Vec<usize>,
        out: &str,
    ) -> R<ValueId> {
        let count = self
            .func
            .ty(x)
            .num_elements()
            .ok_or("the shape is dynamic")?;
        let flat = self.push(
            OpKind::Reshape {
                shape: vec![Dim::Static(count)],
            },
            &[x],
            None,
        )?;
        let indices = map.into_iter().map(|i| i as u64).collect();
        let picked = self.push(OpKind::Gather { axis: 0, indices }, &[flat], None)?;
        let shape = shape.into_iter().map(Dim::Static).collect();
        self.push(OpKind::Reshape { shape }, &[picked], Some(out))
    }
}
