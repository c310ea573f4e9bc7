//! The mask and position plumbing of transformer exports, on import-time constants only:
//! Range, Equal and the orderings, Not, And/Or/Xor, Where, Max/Min, CumSum, GatherND,
//! GatherElements, ConstantOfShape, Cos and Sin. With the sequence length pinned (`--dim`),
//! the causal mask and the rotary tables they compute end as float constants that the
//! attention's `nn.add`/`nn.mul` read as weights. The arithmetic is in `const_math.rs` and
//! `const_index.rs`. Not/And/Or, Where and the two gathers with a run-time input are
//! `mask.rs`'s (run-time booleans), tried first; any other run-time input is refused, naming
//! the operator.

use crate::ir::infer::norm_axis;
use crate::ir::{ElemType, Tensor};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::const_index::{const_shape, gather_elements_map, gather_nd_map, take};
use crate::onnx::import::const_math::{self, Compare, Logic};
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::NodeProto;

/// The operands of GatherND and GatherElements.
struct GatherOperands {
    data: Val,
    shape: Vec<u64>,
    ishape: Vec<u64>,
    indices: Vec<i64>,
}

impl Importer {
    /// Input `i` of `n`, which must be an import-time constant.
    fn const_input(&self, n: &NodeProto, i: usize) -> R<Val> {
        let name = Self::need(n, i)?;
        match self.val(name)? {
            Val::Ir(_) => Err(format!(
                "input '{name}' is computed at run time; only import-time constants are supported here"
            )),
            v => Ok(v.clone()),
        }
    }

    /// Every constant-only plumbing operator; `None` when `n` is not one of them.
    pub(super) fn plumbing(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<Option<()>> {
        let op = n.op_type.as_str();
        let v = if let Some(cmp) = Compare::from_op(op) {
            a.only(&[])?;
            const_math::compare(cmp, &self.const_input(n, 0)?, &self.const_input(n, 1)?)?
        } else {
            match op {
                "Not" => {
                    a.only(&[])?;
                    const_math::not(&self.const_input(n, 0)?)?
                }
                "And" | "Or" | "Xor" => {
                    a.only(&[])?;
                    let logic = match op {
                        "And" => Logic::And,
                        "Or" => Logic::Or,
                        _ => Logic::Xor,
                    };
                    const_math::logic(logic, &self.const_input(n, 0)?, &self.const_input(n, 1)?)?
                }
                "Where" => {
                    a.only(&[])?;
                    let (c, x, y) = (
                        self.const_input(n, 0)?,
                        self.const_input(n, 1)?,
                        self.const_input(n, 2)?,
                    );
                    const_math::where_select(&c, &x, &y)?
                }
                "Max" | "Min" => {
                    a.only(&[])?;
                    let vals = (0..n.input.len())
                        .map(|i| self.const_input(n, i))
                        .collect::<R<Vec<_>>>()?;
                    const_math::extremum(&vals, op == "Max")?
                }
                "Range" => {
                    a.only(&[])?;
                    let (s, l, d) = (
                        self.const_input(n, 0)?,
                        self.const_input(n, 1)?,
                        self.const_input(n, 2)?,
                    );
                    const_math::range(&s, &l, &d)?
                }
                "CumSum" => self.cumsum(n, a)?,
                "GatherND" => {
                    a.only(&["batch_dims"])?;
                    let g = self.data_and_indices(n)?;
                    let batch = usize::try_from(a.int("batch_dims", 0)?)
                        .map_err(|_| "batch_dims is negative")?;
                    let (out_shape, map) = gather_nd_map(&g.shape, &g.ishape, &g.indices, batch)?;
                    take(&g.data, out_shape, &map)
                }
                "GatherElements" => {
                    a.only(&["axis"])?;
                    let g = self.data_and_indices(n)?;
                    let axis = norm_axis(a.int("axis", 0)?, g.shape.len())?;
                    let map = gather_elements_map(&g.shape, axis, &g.ishape, &g.indices)?;
                    take(&g.data, g.ishape, &map)
                }
                "ConstantOfShape" => {
                    a.only(&["value"])?;
                    let value = match a.get("value").and_then(|v| v.t.as_ref()) {
                        Some(t) => self.tensor(t)?,
                        None => Val::Float(Tensor::from_f32(ElemType::F32, vec![1], &[0.0])),
                    };
                    const_math::constant_of_shape(&self.const_input(n, 0)?, &value)?
                }
                "Cos" | "Sin" => {
                    a.only(&[])?;
                    let f = if op == "Cos" { f32::cos } else { f32::sin };
                    const_math::float_unary(&self.const_input(n, 0)?, f)?
                }
                _ => return Ok(None),
            }
        };
        self.bind(out, v);
        Ok(Some(()))
    }

    /// A gather's constant data and integer indices.
    fn data_and_indices(&self, n: &NodeProto) -> R<GatherOperands> {
        let data = self.const_input(n, 0)?;
        let Val::Int { shape, data: idx } = self.const_input(n, 1)? else {
            return Err("the indices must be an integer constant".into());
        };
        Ok(GatherOperands {
            shape: const_shape(&data).expect("invariant: a constant"),
            data,
            ishape: shape,
            indices: idx,
        })
    }

    fn cumsum(&self, n: &NodeProto, a: &Attrs<'_>) -> R<Val> {
        a.only(&["exclusive", "reverse"])?;
        let x = self.const_input(n, 0)?;
        let rank = const_shape(&x).expect("invariant: a constant").len();
        let axis = match self.const_input(n, 1)? {
            Val::Int { data, .. } if data.len() == 1 => norm_axis(data[0], rank)?,
            _ => return Err("the axis must be an integer constant of one element".into()),
        };
        let flag = |name: &str| -> R<bool> {
            match a.int(name, 0)? {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(format!("attribute '{name}' is {v}, not 0 or 1")),
            }
        };
        const_math::cumsum(&x, axis, flag("exclusive")?, flag("reverse")?)
    }
}
