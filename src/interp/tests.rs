//! Tests of [`super::run`]: every op through a tiny function built with `FuncBuilder`, against
//! hand-computed values.

use super::*;
use crate::diag::Span;
use crate::ir::builder::FuncBuilder;
use crate::ir::{ElemType, GeluApprox, Pool2d, ValueId};

fn arr(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

fn seq(shape: &[usize]) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    arr(shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
}

fn vals(a: &ArrayD<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

fn ty(shape: &[u64]) -> TensorType {
    TensorType::fixed(shape, ElemType::F32)
}

fn ty_of(a: &ArrayD<f32>) -> TensorType {
    ty(&a.shape().iter().map(|&d| d as u64).collect::<Vec<_>>())
}

fn constant(b: &mut FuncBuilder, a: &ArrayD<f32>) -> ValueId {
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    let t = Tensor::from_f32(ElemType::F32, shape, &vals(a));
    b.push(OpKind::Constant(t), &[], ty_of(a), None, Span::default())
}

/// A function `(inputs...) -> out` computing `kind(inputs..., consts...)`, consts as
/// `nn.constant`s.
fn build(kind: OpKind, inputs: &[TensorType], consts: &[ArrayD<f32>], out: TensorType) -> Function {
    let mut f = Function::new("f", Span::default());
    let mut b = FuncBuilder::new(&mut f);
    let mut operands: Vec<ValueId> = inputs
        .iter()
        .map(|t| b.add_arg(t.clone(), None, Span::default()))
        .collect();
    for c in consts {
        operands.push(constant(&mut b, c));
    }
    let r = b.push(kind, &operands, out.clone(), None, Span::default());
    b.push_return(&[r], Span::default());
    b.set_result_types(vec![out]);
    f
}

/// Runs one op on `inputs` (function arguments) and `consts` (constants); the result type is
/// `out`.
fn run_op(
    kind: OpKind,
    inputs: &[ArrayD<f32>],
    consts: &[ArrayD<f32>],
    out: &[u64],
) -> Result<ArrayD<f32>, InterpError> {
    let types: Vec<_> = inputs.iter().map(ty_of).collect();
    let f = build(kind, &types, consts, ty(out));
    let mut r = run(&f, inputs)?;
    assert_eq!(r.len(), 1);
    Ok(r.remove(0))
}

fn ok(kind: OpKind, inputs: &[ArrayD<f32>], consts: &[ArrayD<f32>], out: &[u64]) -> ArrayD<f32> {
    let r = run_op(kind, inputs, consts, out).unwrap();
    let want: Vec<usize> = out.iter().map(|&d| d as usize).collect();
    assert_eq!(r.shape(), &want[..]);
    r
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (*g as f64 - w).abs() <= tol,
            "got {got:?}, want {want:?} (tolerance {tol})"
        );
    }
}

fn conv(strides: [u64; 2], pads: [u64; 4], dilations: [u64; 2], groups: u64) -> OpKind {
    OpKind::Conv2d {
        strides,
        pads,
        dilations,
        groups,
    }
}

// ---- convolution ---------------------------------------------------------------------------

#[test]
fn conv2d_asymmetric_pads() {
    // pads [top 1, left 0, bottom 0, right 1] on 0..9 (3x3), 2x2 kernel of ones.
    let y = ok(
        conv([1, 1], [1, 0, 0, 1], [1, 1], 1),
        &[seq(&[1, 1, 3, 3])],
        &[arr(&[1, 1, 2, 2], &[1.; 4])],
        &[1, 1, 3, 3],
    );
    assert_eq!(vals(&y), [1., 3., 2., 8., 12., 7., 20., 24., 13.]);
}

#[test]
fn conv2d_strides_and_bias() {
    let w = arr(&[1, 1, 2, 2], &[1.; 4]);
    let y = ok(
        conv([2, 2], [0; 4], [1, 1], 1),
        &[seq(&[1, 1, 4, 4])],
        &[w],
        &[1, 1, 2, 2],
    );
    assert_eq!(vals(&y), [10., 18., 42., 50.]);
    // Stride 2 along H only, 1x1 kernel of 2, bias 1: rows 0 and 2, doubled, plus one.
    let y = ok(
        conv([2, 1], [0; 4], [1, 1], 1),
        &[seq(&[1, 1, 4, 4])],
        &[arr(&[1, 1, 1, 1], &[2.]), arr(&[1], &[1.])],
        &[1, 1, 2, 4],
    );
    assert_eq!(vals(&y), [1., 3., 5., 7., 17., 19., 21., 23.]);
    // Padding and stride together: pad 1 everywhere, stride 2 on 0..9 (3x3).
    let y = ok(
        conv([2, 2], [1; 4], [1, 1], 1),
        &[seq(&[1, 1, 3, 3])],
        &[arr(&[1, 1, 2, 2], &[1.; 4]), arr(&[1], &[0.5])],
        &[1, 1, 2, 2],
    );
    assert_eq!(vals(&y), [0.5, 3.5, 9.5, 24.5]);
}

#[test]
fn conv2d_dilations() {
    // dilation 1 along H, 2 along W: y = 1*x[y][x] + 2*x[y][x+2] + 3*x[y+1][x] + 4*x[y+1][x+2]
    // = 10 * (4y + x) + 40 on x[r][c] = 4r + c.
    let y = ok(
        conv([1, 1], [0; 4], [1, 2], 1),
        &[seq(&[1, 1, 4, 4])],
        &[arr(&[1, 1, 2, 2], &[1., 2., 3., 4.])],
        &[1, 1, 3, 2],
    );
    assert_eq!(vals(&y), [40., 50., 80., 90., 120., 130.]);
}

#[test]
fn conv2d_groups_2() {
    // 4 in, 4 out, 2 groups: out0 = c0 + c1, out1 = c0 - c1, out2 = 2*c2, out3 = c3 + 10.
    let w = arr(&[4, 2, 1, 1], &[1., 1., 1., -1., 2., 0., 0., 1.]);
    let b = arr(&[4], &[0., 0., 0., 10.]);
    let y = ok(
        conv([1, 1], [0; 4], [1, 1], 2),
        &[seq(&[1, 4, 1, 2])],
        &[w, b],
        &[1, 4, 1, 2],
    );
    assert_eq!(vals(&y), [2., 4., -2., -2., 8., 10., 16., 17.]);
}

#[test]
fn conv2d_depthwise() {
    // Channel 0 (0..9) with a 2x2 kernel of ones; channel 1 (9..18) with [[1,0],[0,-1]].
    let w = arr(&[2, 1, 2, 2], &[1., 1., 1., 1., 1., 0., 0., -1.]);
    let y = ok(
        conv([1, 1], [0; 4], [1, 1], 2),
        &[seq(&[1, 2, 3, 3])],
        std::slice::from_ref(&w),
        &[1, 2, 2, 2],
    );
    assert_eq!(vals(&y), [8., 12., 20., 24., -4., -4., -4., -4.]);
    // Depthwise with padding 1 and stride 2: windows start at -1 and 1.
    let y = ok(
        conv([2, 2], [1; 4], [1, 1], 2),
        &[seq(&[1, 2, 3, 3])],
        &[w],
        &[1, 2, 2, 2],
    );
    // ch0 as in conv2d_strides_and_bias without bias; ch1 = x[y][x] - x[y+1][x+1] (zero pad):
    // (-1,-1): -x[0][0] = -9; (-1,1): -x[0][2] = -11; (1,-1): -x[2][0] = -15;
    // (1,1): x[1][1] - x[2][2] = 13 - 17 = -4.
    assert_eq!(vals(&y), [0., 3., 9., 24., -9., -11., -15., -4.]);
}

#[test]
fn conv2d_bad_weight_is_an_error_at_the_op() {
    let f = build(
        conv([1, 1], [0; 4], [1, 1], 1),
        &[ty(&[1, 3, 3, 3])],
        &[seq(&[1, 4, 1, 1])],
        ty(&[1, 1, 3, 3]),
    );
    let e = run(&f, &[seq(&[1, 3, 3, 3])]).unwrap_err();
    let conv_op = f.ops().nth(1).unwrap();
    assert_eq!(e.op, Some(conv_op));
    assert_eq!(
        e.to_string(),
        "nn.conv2d: conv2d input has 3 channels but the weight expects 4"
    );
}

// ---- pooling -------------------------------------------------------------------------------

fn pool(kernel: [u64; 2], strides: [u64; 2], pads: [u64; 4], ceil_mode: bool) -> Pool2d {
    Pool2d {
        kernel,
        strides,
        pads,
        ceil_mode,
    }
}

#[test]
fn max_pool_pads_act_as_minus_infinity() {
    let x = seq(&[1, 1, 3, 3]).mapv(|v| v - 10.);
    let y = ok(
        OpKind::MaxPool2d(pool([2, 2], [2, 2], [1; 4], false)),
        &[x],
        &[],
        &[1, 1, 2, 2],
    );
    assert_eq!(vals(&y), [-10., -8., -4., -2.]);
}

#[test]
fn max_pool_ceil_mode() {
    let y = ok(
        OpKind::MaxPool2d(pool([2, 2], [2, 2], [0; 4], true)),
        &[seq(&[1, 1, 5, 5])],
        &[],
        &[1, 1, 3, 3],
    );
    assert_eq!(vals(&y), [6., 8., 9., 16., 18., 19., 21., 23., 24.]);
    let y = ok(
        OpKind::MaxPool2d(pool([2, 2], [2, 2], [0; 4], false)),
        &[seq(&[1, 1, 5, 5])],
        &[],
        &[1, 1, 2, 2],
    );
    assert_eq!(vals(&y), [6., 8., 16., 18.]);
    // Length 3, pad 1/1, kernel 2, stride 2: ceil gives 3 windows, but the third would start
    // at 3, inside the right padding, so it is dropped.
    let y = ok(
        OpKind::MaxPool2d(pool([1, 2], [1, 2], [0, 1, 0, 1], true)),
        &[seq(&[1, 1, 1, 3])],
        &[],
        &[1, 1, 1, 2],
    );
    assert_eq!(vals(&y), [0., 2.]);
    // Length 4, same pads: the third window starts at 3, inside the input, and is kept.
    let y = ok(
        OpKind::MaxPool2d(pool([1, 2], [1, 2], [0, 1, 0, 1], true)),
        &[seq(&[1, 1, 1, 4])],
        &[],
        &[1, 1, 1, 3],
    );
    assert_eq!(vals(&y), [0., 2., 3.]);
}

#[test]
fn max_pool_propagates_nan() {
    let x = arr(&[1, 1, 1, 4], &[1., f32::NAN, 5., 2.]);
    let y = ok(
        OpKind::MaxPool2d(pool([1, 2], [1, 2], [0; 4], false)),
        &[x],
        &[],
        &[1, 1, 1, 2],
    );
    assert!(y[[0, 0, 0, 0]].is_nan());
    assert_eq!(y[[0, 0, 0, 1]], 5.);
}

fn avg(p: Pool2d, count_include_pad: bool) -> OpKind {
    OpKind::AvgPool2d {
        pool: p,
        count_include_pad,
    }
}

#[test]
fn avg_pool_count_include_pad() {
    // 0..9 (3x3), pad 1, kernel 2, stride 2. Windows: {0}, {1,2}, {3,6}, {4,5,7,8}.
    let p = pool([2, 2], [2, 2], [1; 4], false);
    let y = ok(
        avg(p.clone(), true),
        &[seq(&[1, 1, 3, 3])],
        &[],
        &[1, 1, 2, 2],
    );
    assert_eq!(vals(&y), [0., 0.75, 2.25, 6.]);
    let y = ok(avg(p, false), &[seq(&[1, 1, 3, 3])], &[], &[1, 1, 2, 2]);
    assert_eq!(vals(&y), [0., 1.5, 4.5, 6.]);
}

#[test]
fn avg_pool_ceil_mode_overhang_is_never_counted() {
    // 0..6, pads 1/1, kernel 3, stride 2, ceil: windows start at -1, 1, 3, 5; the last covers
    // 5, the pad cell 6 and the overhang 7.
    let p = pool([1, 3], [1, 2], [0, 1, 0, 1], true);
    let y = ok(
        avg(p.clone(), true),
        &[seq(&[1, 1, 1, 6])],
        &[],
        &[1, 1, 1, 4],
    );
    assert_close(&vals(&y), &[1. / 3., 2., 4., 2.5], 1e-6);
    let y = ok(avg(p, false), &[seq(&[1, 1, 1, 6])], &[], &[1, 1, 1, 4]);
    assert_eq!(vals(&y), [0.5, 2., 4., 5.]);
    // No padding: the partial last window [4, 6) only holds 4, whatever count_include_pad.
    for include in [true, false] {
        let p = pool([1, 2], [1, 2], [0; 4], true);
        let y = ok(avg(p, include), &[seq(&[1, 1, 1, 5])], &[], &[1, 1, 1, 3]);
        assert_eq!(vals(&y), [0.5, 2.5, 4.]);
    }
    // Along H as well: 3x1 column 0,1,2, kernel 2, stride 2, ceil, no pads.
    let p = pool([2, 1], [2, 1], [0; 4], true);
    let y = ok(avg(p, true), &[seq(&[1, 1, 3, 1])], &[], &[1, 1, 2, 1]);
    assert_eq!(vals(&y), [0.5, 2.]);
}

#[test]
fn global_avg_pool() {
    let y = ok(
        OpKind::GlobalAvgPool,
        &[seq(&[1, 2, 2, 2])],
        &[],
        &[1, 2, 1, 1],
    );
    assert_eq!(vals(&y), [1.5, 5.5]);
}

// ---- linear algebra ------------------------------------------------------------------------

#[test]
fn linear_3d_input() {
    let x = arr(&[2, 1, 2], &[1., 2., 3., 4.]);
    let w = arr(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
    let b = arr(&[3], &[0., 0., 10.]);
    let y = ok(
        OpKind::Linear,
        std::slice::from_ref(&x),
        &[w.clone(), b],
        &[2, 1, 3],
    );
    assert_eq!(vals(&y), [1., 2., 13., 3., 4., 17.]);
    let y = ok(OpKind::Linear, &[x], &[w], &[2, 1, 3]);
    assert_eq!(vals(&y), [1., 2., 3., 3., 4., 7.]);
}

#[test]
fn matmul_batched() {
    // batch 0: [[0,1,2],[3,4,5]]·[1,1,1]ᵀ = [3, 12]; batch 1: [[6,7,8],[9,10,11]]·[1,0,-1]ᵀ.
    let b = arr(&[2, 3, 1], &[1., 1., 1., 1., 0., -1.]);
    let y = ok(OpKind::MatMul, &[seq(&[2, 2, 3]), b], &[], &[2, 2, 1]);
    assert_eq!(vals(&y), [3., 12., -2., -2.]);
    // A 2-d rhs broadcasts over the batch: each row r -> [r0 + r2, r1 + r2].
    let b = arr(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
    let y = ok(OpKind::MatMul, &[seq(&[2, 2, 3]), b], &[], &[2, 2, 2]);
    assert_eq!(vals(&y), [2., 3., 8., 9., 14., 15., 20., 21.]);
}

#[test]
fn matmul_of_a_permuted_operand() {
    // Grouped-query attention's values: transpose [2, 5, 2, 3] → [2, 2, 5, 3], then repeat each
    // key/value head twice (a gather along the head axis) → [2, 4, 5, 3], a layout no reshape
    // can view. The product equals that of a row-major copy.
    let t = kernels::transpose(&seq(&[2, 5, 2, 3]), &[0, 2, 1, 3]).unwrap();
    let v = kernels::gather(&t, 1, &[0, 0, 1, 1]).unwrap();
    let p = seq(&[2, 4, 4, 5]);
    let want = kernels::matmul(&p, &v.as_standard_layout().into_owned()).unwrap();
    let got = kernels::matmul(&p, &v).unwrap();
    assert_eq!(got, want);
}

#[test]
fn batch_norm_operand_order() {
    // Operands x, scale, bias, mean, var; sqrt(var + eps) = [2, 1].
    let x = arr(&[1, 2, 1, 2], &[1., 3., 5., 7.]);
    let consts = [
        arr(&[2], &[2., 0.5]),
        arr(&[2], &[1., -1.]),
        arr(&[2], &[1., 5.]),
        arr(&[2], &[3.5, 0.5]),
    ];
    let kind = || OpKind::BatchNorm { epsilon: 0.5 };
    let y = ok(kind(), &[x], &consts, &[1, 2, 1, 2]);
    assert_eq!(vals(&y), [1., 3., -1., 0.]);
    // Rank 2 ([N, C]).
    let x = arr(&[2, 2], &[1., 5., 3., 7.]);
    let y = ok(kind(), &[x], &consts, &[2, 2]);
    assert_eq!(vals(&y), [1., -1., 3., 0.]);
}

// ---- element-wise binary -------------------------------------------------------------------

#[test]
fn broadcasting_binary_ops() {
    let a = seq(&[2, 3]);
    let b = arr(&[3], &[10., 20., 30.]);
    let y = ok(OpKind::Add, &[a.clone(), b.clone()], &[], &[2, 3]);
    assert_eq!(vals(&y), [10., 21., 32., 13., 24., 35.]);
    let y = ok(OpKind::Sub, &[a.clone(), b.clone()], &[], &[2, 3]);
    assert_eq!(vals(&y), [-10., -19., -28., -7., -16., -25.]);
    let y = ok(OpKind::Sub, &[b.clone(), a.clone()], &[], &[2, 3]);
    assert_eq!(vals(&y), [10., 19., 28., 7., 16., 25.]);
    let y = ok(OpKind::Mul, &[a, b], &[], &[2, 3]);
    assert_eq!(vals(&y), [0., 20., 60., 30., 80., 150.]);
    let c = arr(&[2, 1], &[1., 2.]);
    let d = arr(&[1, 3], &[10., 20., 30.]);
    let y = ok(OpKind::Mul, &[c.clone(), d.clone()], &[], &[2, 3]);
    assert_eq!(vals(&y), [10., 20., 30., 20., 40., 60.]);
    let y = ok(OpKind::Add, &[c, d], &[], &[2, 3]);
    assert_eq!(vals(&y), [11., 21., 31., 12., 22., 32.]);
    let e = run_op(OpKind::Add, &[seq(&[2, 3]), seq(&[2])], &[], &[2, 3]).unwrap_err();
    assert!(e.op.is_some(), "{e}");
}

// ---- shape ops -----------------------------------------------------------------------------

#[test]
fn concat_along_axes() {
    let y = ok(
        OpKind::Concat { axis: -1 },
        &[seq(&[1, 2]), arr(&[1, 1], &[9.])],
        &[],
        &[1, 3],
    );
    assert_eq!(vals(&y), [0., 1., 9.]);
    let y = ok(
        OpKind::Concat { axis: 0 },
        &[seq(&[1, 2]), seq(&[2, 2]), arr(&[1, 2], &[7., 8.])],
        &[],
        &[4, 2],
    );
    assert_eq!(vals(&y), [0., 1., 0., 1., 2., 3., 7., 8.]);
}

#[test]
fn mean_keepdims() {
    let y = ok(
        OpKind::Mean {
            axes: vec![1],
            keepdims: true,
        },
        &[seq(&[2, 3])],
        &[],
        &[2, 1],
    );
    assert_eq!(vals(&y), [1., 4.]);
    let y = ok(
        OpKind::Mean {
            axes: vec![-1],
            keepdims: false,
        },
        &[seq(&[2, 3])],
        &[],
        &[2],
    );
    assert_eq!(vals(&y), [1., 4.]);
    let y = ok(
        OpKind::Mean {
            axes: vec![0, 2],
            keepdims: false,
        },
        &[seq(&[2, 2, 2])],
        &[],
        &[2],
    );
    // axis 1 = 0: {0,1,4,5} -> 2.5; axis 1 = 1: {2,3,6,7} -> 4.5
    assert_eq!(vals(&y), [2.5, 4.5]);
    let y = ok(
        OpKind::Mean {
            axes: vec![0, 1],
            keepdims: false,
        },
        &[seq(&[2, 3])],
        &[],
        &[],
    );
    assert_eq!(vals(&y), [2.5]);
}

#[test]
fn flatten_reshape_transpose() {
    let y = ok(
        OpKind::Flatten { axis: 1 },
        &[seq(&[2, 3, 4])],
        &[],
        &[2, 12],
    );
    assert_eq!(vals(&y), vals(&seq(&[24])));
    ok(
        OpKind::Flatten { axis: 0 },
        &[seq(&[2, 3, 4])],
        &[],
        &[1, 24],
    );
    ok(
        OpKind::Flatten { axis: -1 },
        &[seq(&[2, 3, 4])],
        &[],
        &[6, 4],
    );
    let y = ok(
        OpKind::Reshape {
            shape: vec![Dim::Static(3), Dim::Static(2)],
        },
        &[seq(&[2, 3])],
        &[],
        &[3, 2],
    );
    assert_eq!(vals(&y), [0., 1., 2., 3., 4., 5.]);
    let y = ok(
        OpKind::Transpose { perm: vec![1, 0] },
        &[seq(&[2, 3])],
        &[],
        &[3, 2],
    );
    assert_eq!(vals(&y), [0., 3., 1., 4., 2., 5.]);
    // out[i, j, k] = x[j, k, i] = 12j + 4k + i
    let y = ok(
        OpKind::Transpose {
            perm: vec![2, 0, 1],
        },
        &[seq(&[2, 3, 4])],
        &[],
        &[4, 2, 3],
    );
    assert_eq!(y[[3, 1, 2]], 12. + 8. + 3.);
    assert_eq!(y[[1, 0, 1]], 4. + 1.);
    // A reshape of a transposed value follows the logical order.
    let mut f = Function::new("f", Span::default());
    let mut b = FuncBuilder::new(&mut f);
    let x = b.add_arg(ty(&[2, 3]), None, Span::default());
    let t = b.push(
        OpKind::Transpose { perm: vec![1, 0] },
        &[x],
        ty(&[3, 2]),
        None,
        Span::default(),
    );
    let r = b.push(
        OpKind::Reshape {
            shape: vec![Dim::Static(6)],
        },
        &[t],
        ty(&[6]),
        None,
        Span::default(),
    );
    b.push_return(&[r], Span::default());
    b.set_result_types(vec![ty(&[6])]);
    let y = run(&f, &[seq(&[2, 3])]).unwrap();
    assert_eq!(vals(&y[0]), [0., 3., 1., 4., 2., 5.]);
}

#[test]
fn reshape_keeps_a_dynamic_batch() {
    let dynamic = |dims: &[Option<u64>]| {
        TensorType::new(
            dims.iter().map(|d| d.map_or(Dim::Dynamic, Dim::Static)),
            ElemType::F32,
        )
    };
    let f = build(
        OpKind::Reshape {
            shape: vec![Dim::Dynamic, Dim::Static(6)],
        },
        &[dynamic(&[None, Some(2), Some(3)])],
        &[],
        dynamic(&[None, Some(6)]),
    );
    let y = run(&f, &[seq(&[4, 2, 3])]).unwrap();
    assert_eq!(y[0].shape(), &[4, 6]);
    assert_eq!(vals(&y[0]), vals(&seq(&[24])));
    // Rows of 4 from a batch of 3 rows of 3: the -1 entry has no whole size.
    let f = build(
        OpKind::Reshape {
            shape: vec![Dim::Dynamic, Dim::Static(4)],
        },
        &[dynamic(&[None, Some(3)])],
        &[],
        dynamic(&[None, Some(4)]),
    );
    let e = run(&f, &[seq(&[3, 3])]).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot reshape 9 elements to [-1, 4]"),
        "{e}"
    );
}

#[test]
fn softmax_axes() {
    let x = arr(&[2, 2], &[0., 3f32.ln(), 1., 1.]);
    let y = ok(OpKind::Softmax { axis: -1 }, &[x], &[], &[2, 2]);
    assert_close(&vals(&y), &[0.25, 0.75, 0.5, 0.5], 1e-6);
    let x = arr(&[2, 2], &[0., 0., 3f32.ln(), 0.]);
    let y = ok(OpKind::Softmax { axis: 0 }, &[x], &[], &[2, 2]);
    assert_close(&vals(&y), &[0.25, 0.5, 0.75, 0.5], 1e-6);
    // Large values do not overflow.
    let x = arr(&[1, 2], &[1000., 1000.]);
    let y = ok(OpKind::Softmax { axis: 1 }, &[x], &[], &[1, 2]);
    assert_eq!(vals(&y), [0.5, 0.5]);
}

#[test]
fn layer_norm_optional_operands() {
    // Rows [1, 3] and [5, 7]: mean 2 / 6, biased variance 1 -> normalized [-1, 1].
    let x = arr(&[2, 2], &[1., 3., 5., 7.]);
    let ln = || OpKind::LayerNorm {
        axis: -1,
        epsilon: 0.0,
    };
    let y = ok(ln(), std::slice::from_ref(&x), &[], &[2, 2]);
    assert_eq!(vals(&y), [-1., 1., -1., 1.]);
    let s = arr(&[2], &[1., 2.]);
    let y = ok(
        ln(),
        std::slice::from_ref(&x),
        std::slice::from_ref(&s),
        &[2, 2],
    );
    assert_eq!(vals(&y), [-1., 2., -1., 2.]);
    let y = ok(
        ln(),
        std::slice::from_ref(&x),
        &[s, arr(&[2], &[0., 1.])],
        &[2, 2],
    );
    assert_eq!(vals(&y), [-1., 3., -1., 3.]);
    // Over both axes: mean 4, variance (9 + 1 + 1 + 9) / 4 = 5, epsilon 1 -> divide by sqrt 6.
    let y = ok(
        OpKind::LayerNorm {
            axis: 0,
            epsilon: 1.0,
        },
        &[x],
        &[],
        &[2, 2],
    );
    let sd = 6f64.sqrt();
    assert_close(&vals(&y), &[-3. / sd, -1. / sd, 1. / sd, 3. / sd], 1e-6);
}

#[test]
fn gather_and_scatter() {
    let kind = OpKind::Gather {
        axis: 1,
        indices: vec![3, 1],
    };
    let y = ok(kind, &[seq(&[2, 4])], &[], &[2, 2]);
    assert_eq!(vals(&y), [3., 1., 7., 5.]);
    let kind = OpKind::Gather {
        axis: 0,
        indices: vec![2, 0],
    };
    let y = ok(kind, &[seq(&[3, 2])], &[], &[2, 2]);
    assert_eq!(vals(&y), [4., 5., 0., 1.]);
    // fill[p] for every position p not in indices (entries at indices are ignored).
    let kind = OpKind::Scatter {
        axis: -1,
        indices: vec![3, 1],
        size: 4,
        fill: vec![-1., -2., -3., -4.],
    };
    let y = ok(kind, &[arr(&[2, 2], &[3., 1., 7., 5.])], &[], &[2, 4]);
    assert_eq!(vals(&y), [-1., 1., -3., 3., -1., 5., -3., 7.]);
    // Scatter along the channel axis of an NCHW tensor.
    let kind = OpKind::Scatter {
        axis: 1,
        indices: vec![0, 2],
        size: 3,
        fill: vec![0., 9., 0.],
    };
    let y = ok(kind, &[seq(&[1, 2, 1, 2])], &[], &[1, 3, 1, 2]);
    assert_eq!(vals(&y), [0., 1., 9., 9., 2., 3.]);
}

// ---- activations ---------------------------------------------------------------------------

#[test]
fn every_activation() {
    let xs = [-4., -1., 0., 0.5, 3.];
    let cases: Vec<(OpKind, [f64; 5])> = vec![
        (OpKind::Relu, [0., 0., 0., 0.5, 3.]),
        (OpKind::LeakyRelu { alpha: 0.1 }, [-0.4, -0.1, 0., 0.5, 3.]),
        (OpKind::Clip { min: -1., max: 2. }, [-1., -1., 0., 0.5, 2.]),
        (
            OpKind::Sigmoid,
            [0.017986210, 0.268941421, 0.5, 0.622459331, 0.952574127],
        ),
        (
            OpKind::Tanh,
            [-0.999329300, -0.761594156, 0., 0.462117157, 0.995054754],
        ),
        (
            OpKind::Gelu {
                approximate: GeluApprox::None,
            },
            [-0.000126685, -0.158655254, 0., 0.345731231, 2.995950306],
        ),
        (
            OpKind::Gelu {
                approximate: GeluApprox::Tanh,
            },
            [-0.000070246, -0.158808009, 0., 0.345714010, 2.996362608],
        ),
        (
            OpKind::Silu,
            [-0.071944840, -0.268941421, 0., 0.311229666, 2.857722380],
        ),
        (OpKind::HardSwish, [0., -1. / 3., 0., 0.5 * 3.5 / 6., 3.]),
        (OpKind::Identity, [-4., -1., 0., 0.5, 3.]),
    ];
    for (kind, want) in cases {
        let name = kind.mnemonic();
        let y = run_op(kind, &[arr(&[1, 5], &xs)], &[], &[1, 5]).unwrap();
        let got = vals(&y);
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-6,
                "{name}: got {got:?}, want {want:?}"
            );
        }
    }
    let y = run_op(OpKind::Relu, &[arr(&[1], &[f32::NAN])], &[], &[1]).unwrap();
    assert!(y[[0]].is_nan());
}

// ---- whole functions and errors ------------------------------------------------------------

#[test]
fn small_network_with_shared_values() {
    // x -> conv(1x1, weight 2) -> relu -> add(r, r) -> global pool -> flatten -> linear
    let mut f = Function::new("net", Span::default());
    let mut b = FuncBuilder::new(&mut f);
    let sp = Span::default();
    let x = b.add_arg(
        TensorType::new(
            [Dim::Dynamic, Dim::Static(1), Dim::Static(2), Dim::Static(2)],
            ElemType::F32,
        ),
        None,
        sp,
    );
    let w = constant(&mut b, &arr(&[2, 1, 1, 1], &[1., -1.]));
    let c = b.push(
        conv([1, 1], [0; 4], [1, 1], 1),
        &[x, w],
        ty(&[2, 2, 2, 2]),
        None,
        sp,
    );
    let r = b.push(OpKind::Relu, &[c], ty(&[2, 2, 2, 2]), None, sp);
    let s = b.push(OpKind::Add, &[r, r], ty(&[2, 2, 2, 2]), None, sp);
    // A dead value is computed and dropped.
    b.push(OpKind::Tanh, &[s], ty(&[2, 2, 2, 2]), None, sp);
    let g = b.push(OpKind::GlobalAvgPool, &[s], ty(&[2, 2, 1, 1]), None, sp);
    let fl = b.push(OpKind::Flatten { axis: 1 }, &[g], ty(&[2, 2]), None, sp);
    let lw = constant(&mut b, &arr(&[1, 2], &[1., 10.]));
    let lb = constant(&mut b, &arr(&[1], &[0.5]));
    let y = b.push(OpKind::Linear, &[fl, lw, lb], ty(&[2, 1]), None, sp);
    b.push_return(&[y, r], sp);
    b.set_result_types(vec![ty(&[2, 1]), ty(&[2, 2, 2, 2])]);
    let input = arr(&[2, 1, 2, 2], &[1., 2., 3., 4., -1., -2., -3., -4.]);
    let out = run(&f, &[input]).unwrap();
    // Batch 0: relu keeps channel 0 (mean 2.5, doubled 5); batch 1: channel 1 (mean 2.5 -> 5).
    assert_eq!(vals(&out[0]), [5.5, 50.5]);
    assert_eq!(out[1].shape(), &[2, 2, 2, 2]);
}

#[test]
fn half_precision_constants_are_widened() {
    for elem in [ElemType::F16, ElemType::BF16] {
        let mut f = Function::new("f", Span::default());
        let mut b = FuncBuilder::new(&mut f);
        let x = b.add_arg(ty(&[2]), None, Span::default());
        let t = Tensor::from_f32(elem, vec![2], &[0.5, -2.]);
        let c = b.push(
            OpKind::Constant(t),
            &[],
            TensorType::fixed(&[2], elem),
            None,
            Span::default(),
        );
        let splat = Tensor::splat(elem, vec![2], 0.25);
        let s = b.push(
            OpKind::Weight {
                name: "w".into(),
                value: splat,
            },
            &[],
            TensorType::fixed(&[2], elem),
            None,
            Span::default(),
        );
        let y = b.push(OpKind::Add, &[x, c], ty(&[2]), None, Span::default());
        let y = b.push(OpKind::Add, &[y, s], ty(&[2]), None, Span::default());
        b.push_return(&[y], Span::default());
        b.set_result_types(vec![ty(&[2])]);
        let out = run(&f, &[arr(&[2], &[1., 1.])]).unwrap();
        assert_eq!(vals(&out[0]), [1.75, -0.75]);
    }
}

#[test]
fn wrong_inputs_are_errors_not_panics() {
    let f = build(OpKind::Relu, &[ty(&[1, 3])], &[], ty(&[1, 3]));
    let e = run(&f, &[seq(&[1, 4])]).unwrap_err();
    assert_eq!(e.op, None);
    assert!(e.message.contains("shape [1, 4]"), "{e}");
    assert!(run(&f, &[seq(&[3])]).is_err());
    assert!(run(&f, &[]).is_err());
    assert!(run(&f, &[seq(&[1, 3]), seq(&[1, 3])]).is_err());
    // A dynamic dimension accepts any size, the static ones still have to match.
    let dynamic = TensorType::new([Dim::Dynamic, Dim::Static(3)], ElemType::F32);
    let f = build(
        OpKind::Relu,
        std::slice::from_ref(&dynamic),
        &[],
        dynamic.clone(),
    );
    assert_eq!(run(&f, &[seq(&[5, 3])]).unwrap()[0].shape(), &[5, 3]);
    assert!(run(&f, &[seq(&[5, 4])]).is_err());
}

#[test]
fn result_disagreeing_with_its_type_is_an_error() {
    let f = build(OpKind::Relu, &[ty(&[1, 3])], &[], ty(&[3, 1]));
    let e = run(&f, &[seq(&[1, 3])]).unwrap_err();
    assert_eq!(e.op, f.ops().next());
    // Kernel refusals become errors at the op too (linear with mismatched features).
    let e = run_op(OpKind::Linear, &[seq(&[2, 4])], &[seq(&[3, 5])], &[2, 3]).unwrap_err();
    assert!(
        e.op.is_some() && e.message.starts_with("nn.linear: "),
        "{e}"
    );
    // Absurd attributes are errors, not overflows.
    let e = run_op(
        conv([1, 1], [0; 4], [u64::MAX, 1], 1),
        &[seq(&[1, 1, 3, 3])],
        &[seq(&[1, 1, 2, 2])],
        &[1, 1, 2, 2],
    )
    .unwrap_err();
    assert!(e.op.is_some(), "{e}");
    let e = run_op(
        OpKind::Reshape {
            shape: vec![Dim::Static(u64::MAX), Dim::Static(4)],
        },
        &[seq(&[2, 3])],
        &[],
        &[6],
    )
    .unwrap_err();
    assert!(e.op.is_some(), "{e}");
}

// ---- npy -----------------------------------------------------------------------------------

#[test]
fn npy_round_trip_and_f64() {
    use ndarray_npy::WriteNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    let a = arr(&[2, 3], &[1., -2.5, 3., f32::INFINITY, 0., 1e-30]);
    write_npy(&p, &a).unwrap();
    assert_eq!(read_npy(&p).unwrap(), a);
    // Overwriting replaces the file; a transposed (non-standard layout) array keeps its
    // logical order.
    let t = a.t().into_owned();
    let tv = a.clone().reversed_axes();
    write_npy(&p, &tv).unwrap();
    assert_eq!(read_npy(&p).unwrap(), t);
    // Only the destination is left in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // f64 files are read and rounded to f32.
    let p64 = dir.path().join("y.npy");
    let d = ndarray::ArrayD::<f64>::from_shape_vec(IxDyn(&[3]), vec![0.5, -1.0, 0.1]).unwrap();
    d.write_npy(std::fs::File::create(&p64).unwrap()).unwrap();
    assert_eq!(vals(&read_npy(&p64).unwrap()), [0.5, -1.0, 0.1f32]);
    // int64 files (token ids) are read exactly, up to 2^24 in magnitude.
    let ids = dir.path().join("ids.npy");
    let d = ndarray::ArrayD::<i64>::from_shape_vec(IxDyn(&[3]), vec![0, 16_777_216, -5]).unwrap();
    d.write_npy(std::fs::File::create(&ids).unwrap()).unwrap();
    assert_eq!(vals(&read_npy(&ids).unwrap()), [0.0, 16_777_216.0, -5.0]);
    let d = ndarray::ArrayD::<i64>::from_shape_vec(IxDyn(&[1]), vec![16_777_217]).unwrap();
    d.write_npy(std::fs::File::create(&ids).unwrap()).unwrap();
    assert!(read_npy(&ids).unwrap_err().contains("beyond 2^24"));
    // Other element types and non-npy files are errors.
    let pi = dir.path().join("i.npy");
    let i = ndarray::ArrayD::<i32>::zeros(IxDyn(&[2]));
    i.write_npy(std::fs::File::create(&pi).unwrap()).unwrap();
    assert!(read_npy(&pi).is_err());
    std::fs::write(dir.path().join("bad.npy"), b"not numpy").unwrap();
    assert!(read_npy(dir.path().join("bad.npy")).is_err());
    assert!(read_npy(dir.path().join("missing.npy")).is_err());
    assert!(write_npy(dir.path().join("no/such/dir/z.npy"), &a).is_err());
}

/// `(ids: i64) -> nn.embedding(table, ids)` for a constant table.
fn embedding_fn(table: &ArrayD<f32>, ids: &[u64]) -> Function {
    let mut f = Function::new("f", Span::default());
    let mut b = FuncBuilder::new(&mut f);
    let id = b.add_arg(TensorType::fixed(ids, ElemType::I64), None, Span::default());
    let t = constant(&mut b, table);
    let out = TensorType::fixed(&[ids, &[table.shape()[1] as u64]].concat(), ElemType::F32);
    let r = b.push(
        OpKind::Embedding,
        &[t, id],
        out.clone(),
        None,
        Span::default(),
    );
    b.push_return(&[r], Span::default());
    b.set_result_types(vec![out]);
    f
}

#[test]
fn embedding_reads_one_table_row_per_id() {
    let f = embedding_fn(&seq(&[4, 3]), &[2, 2]);
    let y = run(&f, &[arr(&[2, 2], &[3.0, 0.0, 1.0, 3.0])]).unwrap();
    assert_eq!(y[0].shape(), &[2, 2, 3]);
    assert_eq!(
        vals(&y[0]),
        [9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 10.0, 11.0]
    );
    // An id past the table, and an argument value that is no integer, are errors.
    let e = run(&f, &[arr(&[2, 2], &[4.0, 0.0, 0.0, 0.0])]).unwrap_err();
    assert!(e.message.contains("token id 4 is out of range"), "{e}");
    let e = run(&f, &[arr(&[2, 2], &[0.5, 0.0, 0.0, 0.0])]).unwrap_err();
    assert!(e.message.contains("0.5 is not an integer"), "{e}");
}
