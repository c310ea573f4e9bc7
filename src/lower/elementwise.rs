//! Element-wise ops: the activations (whose scalar bodies, [`activation`], a fused epilogue
//! shares) and the broadcasting binary ops `nn.add`, `nn.sub`, `nn.mul`. NaN propagation
//! matches the interpreter's `OpKind::eval_unary`.

use super::abi::DimVal;
use super::approx;
use super::mlir_ops::{BResult, Emitter};
use super::state::{LResult, Lower};
use crate::ir::{self, OpId, OpKind, ValueId};
use melior::ir::{Block, Value};

/// `arith.cmpf` predicate `uge` (unordered or greater-or-equal: true for NaN).
const CMPF_UGE: i64 = 10;

/// The scalar body of an activation, matching `OpKind::eval_unary` (NaN propagation included;
/// the interpreter evaluates sigmoid and GELU in f64, this in f32 with the polynomial `exp`,
/// `tanh` and `erf` of `approx.rs`, within their bounds).
pub(super) fn activation<'c, 'x>(
    e: &Emitter<'c, 'x, Block<'c>>,
    kind: &OpKind,
    x: Value<'c, 'x>,
) -> BResult<Value<'c, 'x>> {
    let sigmoid = |x: Value<'c, 'x>| -> BResult<Value<'c, 'x>> {
        let one = e.f32_const(1.0)?;
        let n = e.unf("arith.negf", x)?;
        let ex = approx::exp(e, n)?;
        let den = e.binf("arith.addf", one, ex)?;
        e.binf("arith.divf", one, den)
    };
    match *kind {
        // maximumf propagates NaN, as the interpreter's relu does.
        OpKind::Relu => {
            let z = e.f32_const(0.0)?;
            e.binf("arith.maximumf", x, z)
        }
        OpKind::LeakyRelu { alpha } => {
            let z = e.f32_const(0.0)?;
            let a = e.f32_const(alpha)?;
            let ax = e.binf("arith.mulf", x, a)?;
            let c = e.cmpf(CMPF_UGE, x, z)?;
            e.select(c, x, ax)
        }
        OpKind::Clip { min, max } => {
            let lo = e.f32_const(min)?;
            let hi = e.f32_const(max)?;
            let m = e.binf("arith.maximumf", x, lo)?;
            e.binf("arith.minimumf", m, hi)
        }
        OpKind::Sigmoid => sigmoid(x),
        OpKind::Tanh => approx::tanh(e, x),
        OpKind::Gelu {
            approximate: ir::GeluApprox::None,
        } => {
            let half = e.f32_const(0.5)?;
            let one = e.f32_const(1.0)?;
            let r2 = e.f32_const(std::f32::consts::SQRT_2)?;
            let q = e.binf("arith.divf", x, r2)?;
            let erf = approx::erf(e, q)?;
            let s = e.binf("arith.addf", one, erf)?;
            let hx = e.binf("arith.mulf", half, x)?;
            e.binf("arith.mulf", hx, s)
        }
        OpKind::Gelu {
            approximate: ir::GeluApprox::Tanh,
        } => {
            let half = e.f32_const(0.5)?;
            let one = e.f32_const(1.0)?;
            let k = e.f32_const((2.0 / std::f64::consts::PI).sqrt() as f32)?;
            let c = e.f32_const(0.044715)?;
            let x2 = e.binf("arith.mulf", x, x)?;
            let x3 = e.binf("arith.mulf", x2, x)?;
            let cx3 = e.binf("arith.mulf", c, x3)?;
            let inner = e.binf("arith.addf", x, cx3)?;
            let arg = e.binf("arith.mulf", k, inner)?;
            let t = approx::tanh(e, arg)?;
            let s = e.binf("arith.addf", one, t)?;
            let hx = e.binf("arith.mulf", half, x)?;
            e.binf("arith.mulf", hx, s)
        }
        OpKind::Silu => {
            let s = sigmoid(x)?;
            e.binf("arith.mulf", x, s)
        }
        OpKind::HardSwish => {
            let three = e.f32_const(3.0)?;
            let zero = e.f32_const(0.0)?;
            let six = e.f32_const(6.0)?;
            let p = e.binf("arith.addf", x, three)?;
            let lo = e.binf("arith.maximumf", p, zero)?;
            let cl = e.binf("arith.minimumf", lo, six)?;
            let m = e.binf("arith.mulf", x, cl)?;
            e.binf("arith.divf", m, six)
        }
        _ => Ok(x),
    }
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// An activation, computed on its layer's computed form when it is that layer's epilogue.
    pub(super) fn unary(&mut self, op: OpId, kind: &OpKind, input: ValueId) -> LResult<()> {
        if self.absorbed.remove(&op) {
            let (x, d) = self.val(input);
            self.define(op, x, d);
            return Ok(());
        }
        // The epilogue of a layer computed in another form (a flat conv, a packed dense
        // layer; see `views`) is computed on that form, in the layer's tiles.
        let flat = self
            .views
            .get(&input)
            .filter(|_| self.epilogue.contains_key(&input))
            .copied();
        let (x, d) = match flat {
            Some((y, v)) => (y, v.full_dims()),
            None => self.val(input),
        };
        let r = d.len();
        let k = kind.clone();
        let y = self.elementwise(&[(x, (0..r).map(Some).collect())], &d, move |e, a| {
            activation(e, &k, a[0])
        })?;
        let fused = self.fuse_epilogue(input, y)?;
        if fused.is_none() {
            self.spread(y, &d)?;
        }
        match flat {
            Some((_, v)) => self.define_view(op, y, v, fused.map(|i| (i, y)))?,
            None => self.define(op, y, d),
        }
        Ok(())
    }

    /// `nn.add`, `nn.sub`, `nn.mul` with NumPy broadcasting.
    pub(super) fn binary(&mut self, op: OpId, kind: &OpKind, operands: &[ValueId]) -> LResult<()> {
        let (a, ad) = self.val(operands[0]);
        let (b, bd) = self.val(operands[1]);
        let r = ad.len().max(bd.len());
        let get = |d: &[DimVal], i: usize| {
            let off = r - d.len();
            if i < off {
                DimVal::Static(1)
            } else {
                d[i - off]
            }
        };
        let out: Vec<DimVal> = (0..r)
            .map(|i| self.broadcast_dim(get(&ad, i), get(&bd, i)))
            .collect();
        let name = match kind {
            OpKind::Add => "arith.addf",
            OpKind::Sub => "arith.subf",
            _ => "arith.mulf",
        };
        let y = self.elementwise(
            &[
                (a, Self::broadcast_map(&ad, &out)),
                (b, Self::broadcast_map(&bd, &out)),
            ],
            &out,
            |e, v| e.binf(name, v[0], v[1]),
        )?;
        self.spread(y, &out)?;
        self.define(op, y, out);
        Ok(())
    }
}
