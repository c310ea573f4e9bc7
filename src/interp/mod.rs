//! Reference interpreter: plain, obviously-correct implementations of every op, used as the
//! oracle that proves optimized networks compute exactly the same outputs.
//!
//! [`run`] executes a [`Function`]'s ops in layout order over a table of `ArrayD<f32>` values
//! indexed by [`ValueId`]. f16/bf16 constants and weights are widened to f32 and all arithmetic
//! is carried out in f32. Every problem (wrong inputs, a shape the kernels refuse, a result that
//! disagrees with its declared type) is an [`InterpError`], never a panic; an error caused by an
//! op carries its [`OpId`] so the caller can point at `func.span(op)`.

pub mod kernels;
mod npy;
#[cfg(test)]
mod tests;

pub use npy::{read_npy, read_npy_typed, write_npy};

use crate::ir::{Dim, ElemType, Function, OpId, OpKind, Tensor, TensorType};
use cranelift_entity::EntityRef;
use kernels::BinaryOp;
use ndarray::{ArrayD, IxDyn};
use std::fmt;

/// Why [`run`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterpError {
    pub message: String,
    /// The op that failed, if the error is an op's (not, e.g., a wrong number of inputs).
    pub op: Option<OpId>,
}

impl InterpError {
    fn new(message: impl Into<String>) -> InterpError {
        InterpError {
            message: message.into(),
            op: None,
        }
    }

    fn at(op: OpId, message: impl Into<String>) -> InterpError {
        InterpError {
            message: message.into(),
            op: Some(op),
        }
    }
}

/// Prints the message only: the op, if any, is meant to be rendered as a source location.
impl fmt::Display for InterpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InterpError {}

/// Converts constant data (f32, f16 or bf16) to an f32 array of the same shape.
pub fn tensor_to_array(t: &Tensor) -> Result<ArrayD<f32>, String> {
    let shape = t
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("dimension {d} is too large")))
        .collect::<Result<Vec<_>, _>>()?;
    ArrayD::from_shape_vec(IxDyn(&shape), t.to_f32_vec()).map_err(|e| e.to_string())
}

/// `true` if an array of shape `shape` is a value of type `ty` (a `?` dimension takes any size).
pub fn shape_matches(ty: &TensorType, shape: &[usize]) -> bool {
    ty.rank() == shape.len()
        && ty.dims.iter().zip(shape).all(|(d, &n)| match d {
            Dim::Static(s) => *s == n as u64,
            Dim::Dynamic => true,
        })
}

/// Largest magnitude up to which every integer is an f32: the interpreter carries i64 values
/// (token ids) as f32, so a larger one could not be carried exactly and is refused.
pub const MAX_EXACT_INT: f32 = 16_777_216.0;

/// Checks that an i64 argument's values are integers the f32 representation holds exactly.
fn check_integers(a: &ArrayD<f32>) -> Result<(), String> {
    match a
        .iter()
        .find(|v| v.fract() != 0.0 || v.abs() > MAX_EXACT_INT)
    {
        Some(v) => Err(format!(
            "{v} is not an integer of magnitude at most 2^24, which the interpreter carries exactly"
        )),
        None => Ok(()),
    }
}

/// Runs `func` on `inputs` (one array per function argument, in order) and returns the values
/// of its `return`.
pub fn run(func: &Function, inputs: &[ArrayD<f32>]) -> Result<Vec<ArrayD<f32>>, InterpError> {
    let args = func.args();
    if inputs.len() != args.len() {
        return Err(InterpError::new(format!(
            "function @{} takes {} input(s) but {} were given",
            func.name,
            args.len(),
            inputs.len()
        )));
    }
    let mut values: Vec<Option<ArrayD<f32>>> = vec![None; func.value_capacity()];
    // Uses still to come for each value, so that intermediate arrays are dropped early.
    let mut remaining: Vec<usize> = vec![0; func.value_capacity()];
    for (i, (&arg, input)) in args.iter().zip(inputs).enumerate() {
        let ty = func.ty(arg);
        if !shape_matches(ty, input.shape()) {
            return Err(InterpError::new(format!(
                "input {i} of @{} has shape {:?} but the argument has type {ty}",
                func.name,
                input.shape()
            )));
        }
        if ty.elem == ElemType::I64 {
            check_integers(input).map_err(|m| {
                InterpError::new(format!("input {i} of @{} ({ty}): {m}", func.name))
            })?;
        }
        values[arg.index()] = Some(input.clone());
    }
    for op in func.ops() {
        for &v in func.op(op).operands() {
            if let Some(r) = remaining.get_mut(v.index()) {
                *r += 1;
            }
        }
    }

    for op in func.ops() {
        let data = func.op(op);
        let kind = &data.kind;
        let operands = data.operands();
        if !kind.tag().arity().accepts(operands.len()) {
            return Err(InterpError::at(
                op,
                format!(
                    "{} has {} operand(s), expected {:?}",
                    kind.mnemonic(),
                    operands.len(),
                    kind.tag().arity()
                ),
            ));
        }
        let args = operands
            .iter()
            .map(|&v| {
                values
                    .get(v.index())
                    .and_then(Option::as_ref)
                    .ok_or_else(|| {
                        InterpError::at(
                            op,
                            format!("{} uses {v} before it is defined", kind.mnemonic()),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        if let OpKind::Return = kind {
            return finish(func, op, &args);
        }

        let result = eval(kind, &args)
            .map_err(|m| InterpError::at(op, format!("{}: {m}", kind.mnemonic())))?;
        let Some(res) = data.result() else {
            return Err(InterpError::at(
                op,
                format!("{} has no result value", kind.mnemonic()),
            ));
        };
        let ty = func.ty(res);
        if !shape_matches(ty, result.shape()) {
            return Err(InterpError::at(
                op,
                format!(
                    "{} computed shape {:?} but its result has type {ty}",
                    kind.mnemonic(),
                    result.shape()
                ),
            ));
        }
        drop(args);
        for &v in operands {
            let r = &mut remaining[v.index()];
            *r -= 1;
            if *r == 0 {
                values[v.index()] = None;
            }
        }
        if remaining[res.index()] > 0 {
            values[res.index()] = Some(result);
        }
    }
    Err(InterpError::new(format!(
        "function @{} has no return",
        func.name
    )))
}

/// Checks the returned values against the declared result types.
fn finish(
    func: &Function,
    op: OpId,
    results: &[&ArrayD<f32>],
) -> Result<Vec<ArrayD<f32>>, InterpError> {
    let types = func.result_types();
    if results.len() != types.len() {
        return Err(InterpError::at(
            op,
            format!(
                "return has {} value(s) but @{} declares {} result(s)",
                results.len(),
                func.name,
                types.len()
            ),
        ));
    }
    for (i, (r, ty)) in results.iter().zip(types).enumerate() {
        if !shape_matches(ty, r.shape()) {
            return Err(InterpError::at(
                op,
                format!(
                    "result {i} has shape {:?} but @{} declares {ty}",
                    r.shape(),
                    func.name
                ),
            ));
        }
    }
    Ok(results.iter().map(|&r| r.clone()).collect())
}

fn to_usize(values: &[u64], what: &str) -> Result<Vec<usize>, String> {
    values
        .iter()
        .map(|&v| usize::try_from(v).map_err(|_| format!("{what} {v} is too large")))
        .collect()
}

/// Applies a unary activation through [`OpKind::eval_unary`], the single definition of
/// activation semantics.
fn unary(kind: &OpKind, x: &ArrayD<f32>) -> Result<ArrayD<f32>, String> {
    if kind.eval_unary(0.0).is_none() {
        return Err("not an element-wise activation".into());
    }
    Ok(x.mapv(|v| kind.eval_unary(v).unwrap_or(f32::NAN)))
}

/// Evaluates the non-terminator `op` of `func` on the given operand values (in operand order),
/// as [`run`] does: the constant folder uses it, so folding and interpretation agree.
pub fn eval_op(func: &Function, op: OpId, a: &[&ArrayD<f32>]) -> Result<ArrayD<f32>, String> {
    let kind = func.kind(op);
    if !kind.tag().arity().accepts(a.len()) || matches!(kind, OpKind::Return) {
        return Err(format!(
            "{} cannot be evaluated on {} operand(s)",
            kind.mnemonic(),
            a.len()
        ));
    }
    eval(kind, a)
}

/// Evaluates one non-terminator op. `a` holds the operand values (arity already checked).
fn eval(kind: &OpKind, a: &[&ArrayD<f32>]) -> Result<ArrayD<f32>, String> {
    match kind {
        OpKind::Constant(t) | OpKind::Weight { value: t, .. } => tensor_to_array(t),
        OpKind::Linear => kernels::linear(a[0], a[1], a.get(2).copied()),
        OpKind::MatMul => kernels::matmul(a[0], a[1]),
        OpKind::Conv2d {
            strides,
            pads,
            dilations,
            groups,
        } => kernels::conv2d(
            a[0],
            a[1],
            a.get(2).copied(),
            *strides,
            *pads,
            *dilations,
            *groups,
        ),
        OpKind::BatchNorm { epsilon } => {
            kernels::batch_norm(a[0], a[1], a[2], a[3], a[4], *epsilon)
        }
        OpKind::Relu
        | OpKind::LeakyRelu { .. }
        | OpKind::Clip { .. }
        | OpKind::Sigmoid
        | OpKind::Tanh
        | OpKind::Gelu { .. }
        | OpKind::Silu
        | OpKind::HardSwish
        | OpKind::Identity => unary(kind, a[0]),
        OpKind::Add => kernels::binary(a[0], a[1], BinaryOp::Add),
        OpKind::Sub => kernels::binary(a[0], a[1], BinaryOp::Sub),
        OpKind::Mul => kernels::binary(a[0], a[1], BinaryOp::Mul),
        OpKind::Concat { axis } => kernels::concat(a, *axis),
        OpKind::MaxPool2d(p) => kernels::max_pool2d(a[0], p.kernel, p.strides, p.pads, p.ceil_mode),
        OpKind::AvgPool2d {
            pool: p,
            count_include_pad,
        } => kernels::avg_pool2d(
            a[0],
            p.kernel,
            p.strides,
            p.pads,
            p.ceil_mode,
            *count_include_pad,
        ),
        OpKind::GlobalAvgPool => kernels::global_avg_pool(a[0]),
        OpKind::Mean { axes, keepdims } => kernels::mean(a[0], axes, *keepdims),
        OpKind::Flatten { axis } => kernels::flatten(a[0], *axis),
        OpKind::Reshape { shape } => {
            let shape = reshape_target(shape, a[0].len())?;
            kernels::reshape(a[0], &shape)
        }
        OpKind::Transpose { perm } => kernels::transpose(a[0], &to_usize(perm, "axis")?),
        OpKind::Softmax { axis } => kernels::softmax(a[0], *axis),
        OpKind::LayerNorm { axis, epsilon } => {
            let x = a[0];
            let scale = match a.get(1) {
                Some(s) => (*s).clone(),
                None => {
                    let r = x.ndim() as i64;
                    let ax = if *axis < 0 { axis + r } else { *axis };
                    if ax < 0 || ax >= r {
                        return Err(format!("axis {axis} is out of range for rank {r}"));
                    }
                    ArrayD::ones(IxDyn(&x.shape()[ax as usize..]))
                }
            };
            kernels::layer_norm(x, &scale, a.get(2).copied(), *axis, *epsilon)
        }
        OpKind::RmsNorm { axis, epsilon } => {
            kernels::rms_norm(a[0], a.get(1).copied(), *axis, *epsilon)
        }
        OpKind::Gather { axis, indices } => {
            kernels::gather(a[0], *axis, &to_usize(indices, "index")?)
        }
        OpKind::Embedding => kernels::embedding(a[0], a[1]),
        OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        } => {
            let size = usize::try_from(*size).map_err(|_| format!("size {size} is too large"))?;
            kernels::scatter(a[0], *axis, &to_usize(indices, "index")?, size, fill)
        }
        OpKind::Return => Err("return evaluated as an op".into()),
    }
}

/// The target shape of `nn.reshape` for an input of `count` elements: its `shape`, with the one
/// `-1` entry (if any) the size that keeps the element count.
fn reshape_target(shape: &[Dim], count: usize) -> Result<Vec<usize>, String> {
    let size = |d: &Dim| {
        d.as_static()
            .map_or(Ok(1), |n| to_usize(&[n], "dimension").map(|v| v[0]))
    };
    let mut dims = shape
        .iter()
        .map(size)
        .collect::<Result<Vec<usize>, String>>()?;
    let known = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if let Some(i) = shape.iter().position(|d| *d == Dim::Dynamic) {
        match known {
            Some(k) if k > 0 && count.is_multiple_of(k) => dims[i] = count / k,
            _ => {
                let text = crate::ir::infer::shape_text(shape);
                return Err(format!("cannot reshape {count} elements to {text}"));
            }
        }
    }
    Ok(dims)
}
