use super::*;
use ndarray::{ArrayD, IxDyn};

fn t(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}
fn seq(shape: &[usize]) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    t(shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
}
fn vals(a: &ArrayD<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

#[test]
fn linear_and_errors() {
    let x = t(&[1, 2, 2], &[1., 2., 3., 4.]);
    let w = t(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
    let b = t(&[3], &[0., 0., 10.]);
    let y = linear(&x, &w, Some(&b)).unwrap();
    assert_eq!(y.shape(), &[1, 2, 3]);
    assert_eq!(vals(&y), vec![1., 2., 13., 3., 4., 17.]);
    assert!(linear(&t(&[3], &[1., 2., 3.]), &w, None).is_err());
}

#[test]
fn matmul_cases() {
    let a = t(&[2, 2], &[1., 2., 3., 4.]);
    let b = t(&[2, 2], &[5., 6., 7., 8.]);
    assert_eq!(vals(&matmul(&a, &b).unwrap()), vec![19., 22., 43., 50.]);
    let v = t(&[2], &[1., 1.]);
    let r = matmul(&a, &v).unwrap();
    assert_eq!((r.shape(), vals(&r)), (&[2][..], vec![3., 7.]));
    let r = matmul(&v, &a).unwrap();
    assert_eq!((r.shape(), vals(&r)), (&[2][..], vec![4., 6.]));
    assert_eq!(matmul(&v, &v).unwrap().shape(), &[] as &[usize]);
    // Batch broadcasting: [2,1,2,2] x [3,2,2] -> [2,3,2,2].
    let ba = seq(&[2, 1, 2, 2]);
    let bb = seq(&[3, 2, 2]);
    let r = matmul(&ba, &bb).unwrap();
    assert_eq!(r.shape(), &[2, 3, 2, 2]);
    // batch (1,2): a=[[4,5],[6,7]], b=[[8,9],[10,11]] -> [[82,91],[118,131]]
    assert_eq!(r[[1, 2, 0, 0]], 82.);
    assert_eq!(r[[1, 2, 1, 1]], 131.);
    assert!(matmul(&a, &t(&[3], &[1., 2., 3.])).is_err());
    assert!(matmul(&seq(&[2, 2, 2]), &seq(&[3, 2, 2])).is_err());
}

#[test]
fn conv_basic_pad_stride() {
    let x = seq(&[1, 1, 3, 3]);
    let w = t(&[1, 1, 2, 2], &[1., 1., 1., 1.]);
    let y = conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 1).unwrap();
    assert_eq!(vals(&y), vec![8., 12., 20., 24.]);
    // pad 1 everywhere, stride 2: windows at (-1,-1),(−1,1),(1,−1),(1,1)
    let b = t(&[1], &[0.5]);
    let y = conv2d(&x, &w, Some(&b), [2, 2], [1, 1, 1, 1], [1, 1], 1).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(vals(&y), vec![0.5, 3.5, 9.5, 24.5]);
}

#[test]
fn conv_dilation_and_groups() {
    let x = seq(&[1, 1, 3, 3]);
    let w = t(&[1, 1, 2, 2], &[1., 1., 1., 1.]);
    let y = conv2d(&x, &w, None, [1, 1], [0; 4], [2, 2], 1).unwrap();
    assert_eq!(vals(&y), vec![0. + 2. + 6. + 8.]);
    // Depthwise: 2 channels, each with its own 1x1 weight.
    let x = seq(&[1, 2, 2, 2]);
    let w = t(&[2, 1, 1, 1], &[2., -1.]);
    let y = conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 2).unwrap();
    assert_eq!(vals(&y), vec![0., 2., 4., 6., -4., -5., -6., -7.]);
    // Grouped: 4 in, 2 out, 2 groups; out0 = c0 + c1, out1 = c2 - c3.
    let x = seq(&[1, 4, 1, 1]);
    let w = t(&[2, 2, 1, 1], &[1., 1., 1., -1.]);
    let y = conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 2).unwrap();
    assert_eq!(vals(&y), vec![1., -1.]);
}

#[test]
fn conv_errors() {
    let x = seq(&[1, 3, 3, 3]);
    let w = seq(&[1, 4, 1, 1]);
    let e = conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 1).unwrap_err();
    assert_eq!(e, "conv2d input has 3 channels but the weight expects 4");
    let w = seq(&[1, 3, 5, 5]);
    assert!(conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 1).is_err());
    assert!(conv2d(&seq(&[3, 3]), &w, None, [1, 1], [0; 4], [1, 1], 1).is_err());
    assert!(conv2d(&x, &seq(&[2, 3, 1, 1]), None, [1, 1], [0; 4], [1, 1], 2).is_err());
}

#[test]
fn batch_norm_axis1() {
    let x = t(&[1, 2, 1, 1], &[3., 5.]);
    let one = t(&[2], &[1., 2.]);
    let bias = t(&[2], &[0., 1.]);
    let mean = t(&[2], &[1., 1.]);
    let var = t(&[2], &[4., 1.]);
    let y = batch_norm(&x, &one, &bias, &mean, &var, 0.0).unwrap();
    // ch0: (3-1)/2*1+0 = 1; ch1: (5-1)/1*2+1 = 9
    assert_eq!(vals(&y), vec![1., 9.]);
    assert!(batch_norm(&x, &t(&[3], &[1., 1., 1.]), &bias, &mean, &var, 0.0).is_err());
}

#[test]
fn binary_broadcast() {
    let x = t(&[2, 1], &[1., 2.]);
    let y = t(&[3], &[10., 20., 30.]);
    let r = binary(&x, &y, BinaryOp::Add).unwrap();
    assert_eq!(r.shape(), &[2, 3]);
    assert_eq!(vals(&r), vec![11., 21., 31., 12., 22., 32.]);
    let r = binary(&x, &y, BinaryOp::Sub).unwrap();
    assert_eq!(vals(&r), vec![-9., -19., -29., -8., -18., -28.]);
    let r = binary(&y, &t(&[], &[2.]), BinaryOp::Mul).unwrap();
    assert_eq!(vals(&r), vec![20., 40., 60.]);
    assert!(binary(&t(&[2], &[1., 2.]), &y, BinaryOp::Add).is_err());
}

#[test]
fn concat_axes() {
    let a = seq(&[1, 2]);
    let b = t(&[1, 1], &[9.]);
    let r = concat(&[&a, &b], -1).unwrap();
    assert_eq!(vals(&r), vec![0., 1., 9.]);
    assert!(concat(&[&a, &b], 0).is_err());
    assert!(concat(&[&a, &b], 2).is_err());
    assert!(concat(&[], 0).is_err());
}

#[test]
fn max_pool_ceil_and_pads() {
    let x = seq(&[1, 1, 5, 5]);
    let y = max_pool2d(&x, [2, 2], [2, 2], [0; 4], false).unwrap();
    assert_eq!(vals(&y), vec![6., 8., 16., 18.]);
    let y = max_pool2d(&x, [2, 2], [2, 2], [0; 4], true).unwrap();
    assert_eq!(y.shape(), &[1, 1, 3, 3]);
    assert_eq!(vals(&y), vec![6., 8., 9., 16., 18., 19., 21., 23., 24.]);
    // Padding behaves as -inf even for negative inputs.
    let x = t(&[1, 1, 1, 2], &[-3., -1.]);
    let y = max_pool2d(&x, [1, 2], [1, 2], [0, 1, 0, 1], false).unwrap();
    assert_eq!(vals(&y), vec![-3., -1.]);
    // ceil_mode drops a window that would start entirely in the right padding:
    // len 4, k 2, s 2, pad 1/1 -> ceil((6-2)/2)+1 = 3, last start 4 >= 4+1? no -> 3.
    // len 3, k 2, s 2, pad 1/1 -> ceil(3/2)+1 = 3, last start 4 >= 3+1 -> dropped -> 2.
    let y = max_pool2d(&seq(&[1, 1, 1, 3]), [1, 2], [1, 2], [0, 1, 0, 1], true).unwrap();
    assert_eq!(y.shape(), &[1, 1, 1, 2]);
    assert!(max_pool2d(&seq(&[1, 1, 2, 2]), [3, 3], [1, 1], [0; 4], false).is_err());
    assert!(max_pool2d(&seq(&[2, 2]), [1, 1], [1, 1], [0; 4], false).is_err());
}

#[test]
fn avg_pool_count_include_pad() {
    let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    // Pad 1 all around, kernel 2, stride 2: each window holds one real value.
    let y = avg_pool2d(&x, [2, 2], [2, 2], [1; 4], false, true).unwrap();
    assert_eq!(vals(&y), vec![0.25, 0.5, 0.75, 1.0]);
    let y = avg_pool2d(&x, [2, 2], [2, 2], [1; 4], false, false).unwrap();
    assert_eq!(vals(&y), vec![1., 2., 3., 4.]);
    // ceil_mode on [0..5) 1-d row, k 2, s 2, no pad: last window [4,5) is partial and
    // its out-of-range part is never counted, even with count_include_pad.
    let x = seq(&[1, 1, 1, 5]);
    let y = avg_pool2d(&x, [1, 2], [1, 2], [0; 4], true, true).unwrap();
    assert_eq!(vals(&y), vec![0.5, 2.5, 4.]);
    // With right pad 1 and ceil: windows [-1,0],[1,2],[3,4]; count_include_pad divides by 2.
    let y = avg_pool2d(&x, [1, 2], [1, 2], [0, 1, 0, 1], true, true).unwrap();
    assert_eq!(vals(&y), vec![0., 1.5, 3.5]);
    // len 6 padded [1,1] k 3 s 2 ceil: out = ceil(5/2)+1 = 4, windows start -1,1,3,5;
    // last covers 5,6(pad),7(beyond) -> include_pad divides by 2, exclude by 1.
    let x = seq(&[1, 1, 1, 6]);
    let y = avg_pool2d(&x, [1, 3], [1, 2], [0, 1, 0, 1], true, true).unwrap();
    assert_eq!(vals(&y), vec![1. / 3., 2., 4., 2.5]);
    let y = avg_pool2d(&x, [1, 3], [1, 2], [0, 1, 0, 1], true, false).unwrap();
    assert_eq!(vals(&y), vec![0.5, 2., 4., 5.]);
}

#[test]
fn reductions_and_shapes() {
    let x = seq(&[1, 2, 2, 2]);
    let g = global_avg_pool(&x).unwrap();
    assert_eq!((g.shape(), vals(&g)), (&[1, 2, 1, 1][..], vec![1.5, 5.5]));
    let m = mean(&seq(&[2, 3]), &[-1], false).unwrap();
    assert_eq!((m.shape(), vals(&m)), (&[2][..], vec![1., 4.]));
    let m = mean(&seq(&[2, 3]), &[0], true).unwrap();
    assert_eq!((m.shape(), vals(&m)), (&[1, 3][..], vec![1.5, 2.5, 3.5]));
    assert!(mean(&x, &[4], true).is_err());
    assert_eq!(flatten(&x, 1).unwrap().shape(), &[1, 8]);
    assert_eq!(flatten(&x, 0).unwrap().shape(), &[1, 8]);
    assert_eq!(flatten(&x, 4).unwrap().shape(), &[8, 1]);
    assert_eq!(flatten(&x, -2).unwrap().shape(), &[2, 4]);
    assert!(flatten(&x, 5).is_err());
    assert!(reshape(&x, &[3, 3]).is_err());
    let tr = transpose(&seq(&[2, 3]), &[1, 0]).unwrap();
    assert_eq!(vals(&tr), vec![0., 3., 1., 4., 2., 5.]);
    // Reshape of a transposed (non-standard) array follows logical order.
    assert_eq!(
        vals(&reshape(&tr, &[6]).unwrap()),
        vec![0., 3., 1., 4., 2., 5.]
    );
    assert!(transpose(&x, &[0, 0, 1, 2]).is_err());
    assert!(transpose(&x, &[0, 1]).is_err());
}

#[test]
fn softmax_stable() {
    let x = t(&[2, 2], &[1000., 1000., 0., 2f32.ln()]);
    let y = softmax(&x, -1).unwrap();
    let v = vals(&y);
    assert_eq!(&v[..2], &[0.5, 0.5]);
    assert!((v[2] - 1. / 3.).abs() < 1e-6 && (v[3] - 2. / 3.).abs() < 1e-6);
    assert!(softmax(&x, 2).is_err());
}

#[test]
fn layer_norm_trailing_axes() {
    let x = t(&[2, 2], &[1., 3., 5., 7.]);
    let s = t(&[2], &[1., 2.]);
    let b = t(&[2], &[0., 1.]);
    // Each row has mean m and biased variance 1: normalized [-1, 1] -> [-1, 3].
    let y = layer_norm(&x, &s, Some(&b), -1, 0.0).unwrap();
    assert_eq!(vals(&y), vec![-1., 3., -1., 3.]);
    let y = layer_norm(&x, &t(&[2, 2], &[1.; 4]), None, 0, 0.0).unwrap();
    // mean 4, var (9+1+1+9)/4 = 5
    let sd = 5f32.sqrt();
    assert!((y[[0, 0]] - (-3. / sd)).abs() < 1e-6);
    assert!((y[[1, 1]] - (3. / sd)).abs() < 1e-6);
    assert!(layer_norm(&x, &t(&[3], &[1.; 3]), None, -1, 0.0).is_err());
}

#[test]
fn rms_norm_trailing_axes() {
    // Rows [3, 4] and [0, 0]: the mean squares are 12.5 and 0, so with eps 0 the first row
    // divides by sqrt(12.5) and the second is 0 · 1/sqrt(eps) once eps > 0.
    let x = t(&[2, 2], &[3., 4., 0., 0.]);
    let s = t(&[2], &[1., 2.]);
    let y = rms_norm(&x, Some(&s), -1, 0.0).unwrap();
    let r = 12.5f32.sqrt();
    assert_eq!(vals(&y)[..2], [3. * (1. / r), 4. * (1. / r) * 2.]);
    let y = rms_norm(&x, None, -1, 1e-6).unwrap();
    assert_eq!(vals(&y)[2..], [0., 0.]);
    // Not centred: a constant row normalizes to ±1, where layer_norm gives 0.
    let c = t(&[1, 3], &[-2., -2., -2.]);
    assert_eq!(vals(&rms_norm(&c, None, 1, 0.0).unwrap()), vec![-1.; 3]);
    // Over both axes: mean square (9 + 16) / 4.
    let y = rms_norm(&x, None, 0, 0.0).unwrap();
    assert_eq!(y[[0, 1]], 4. * (1. / 6.25f32.sqrt()));
    assert!(rms_norm(&x, Some(&t(&[3], &[1.; 3])), -1, 0.0).is_err());
    assert!(rms_norm(&x, None, 2, 0.0).is_err());
}

#[test]
fn gather_scatter_inverse() {
    let x = seq(&[2, 4]);
    let idx = [3, 1];
    let g = gather(&x, 1, &idx).unwrap();
    assert_eq!(vals(&g), vec![3., 1., 7., 5.]);
    let fill = [-1., -2., -3., -4.];
    let s = scatter(&g, -1, &idx, 4, &fill).unwrap();
    assert_eq!(vals(&s), vec![-1., 1., -3., 3., -1., 5., -3., 7.]);
    // gather(scatter(y)) == y
    assert_eq!(gather(&s, 1, &idx).unwrap(), g);
    assert!(gather(&x, 1, &[4]).is_err());
    assert!(scatter(&g, 1, &[0], 4, &fill).is_err());
    assert!(scatter(&g, 1, &[0, 4], 4, &fill).is_err());
    assert!(scatter(&g, 1, &[0, 0], 4, &fill).is_err());
    assert!(scatter(&g, 1, &idx, 4, &fill[..3]).is_err());
}
