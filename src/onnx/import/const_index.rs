//! Structural operators on import-time constants of any rank and element type (integers,
//! booleans as 0/1, floats): Slice, Expand (broadcasting), Concat, Transpose, Gather, GatherND
//! and GatherElements, each exactly as the ONNX specification defines it.
//!
//! Each operator is computed as a gather map: for every output element (row-major), the flat
//! index of the input element it copies. [`take`] applies a map to integer data and to float bit
//! patterns alike, so every operator is written once for every element type and is bit-exact.
//! Indices are checked against the data (an out-of-range index is an error, never a panic);
//! negative ones count from the end, as the specification says.

use super::values::Val;
use super::R;
use crate::ir::Tensor;

/// The most elements an import-time constant may have: constants are computed in memory while
/// importing, and the plumbing they come from (masks, position tables) is a few times the
/// sequence length squared, far below this.
pub(super) const MAX_CONST_ELEMENTS: u64 = 1 << 28;

/// The elements of `shape`, or an error when a constant that large would be computed.
pub(super) fn count(shape: &[u64]) -> R<usize> {
    shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_CONST_ELEMENTS)
        .map(|n| n as usize)
        .ok_or_else(|| format!("a constant of shape {shape:?} is too large to compute at import"))
}

/// The shape of a constant ([`Val::Int`] or [`Val::Float`]).
pub(super) fn const_shape(v: &Val) -> Option<Vec<u64>> {
    match v {
        Val::Int { shape, .. } => Some(shape.clone()),
        Val::Float(t) => Some(t.shape().to_vec()),
        Val::Ir(_) => None,
    }
}

/// The constant of shape `shape` whose element `i` is element `map[i]` of `v` (a constant).
pub(super) fn take(v: &Val, shape: Vec<u64>, map: &[usize]) -> Val {
    match v {
        Val::Int { data, .. } => Val::Int {
            shape,
            data: map.iter().map(|&i| data[i]).collect(),
        },
        Val::Float(t) => Val::Float(Tensor::from_bits(
            t.elem(),
            shape,
            map.iter().map(|&i| t.bits(i)),
        )),
        Val::Ir(_) => unreachable!("take is called on constants only"),
    }
}

/// Row-major strides of `shape`.
fn strides(shape: &[u64]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1] as usize;
    }
    s
}

/// Calls `f` with every multi-index of `shape`, in row-major order.
fn for_each_index(shape: &[u64], mut f: impl FnMut(&[u64])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0u64; shape.len()];
    loop {
        f(&idx);
        let mut k = shape.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// The NumPy broadcast of two shapes (right-aligned; equal sizes, or one of them 1).
pub(super) fn broadcast_shape(a: &[u64], b: &[u64]) -> R<Vec<u64>> {
    let rank = a.len().max(b.len());
    let at = |s: &[u64], k: usize| (k + s.len()).checked_sub(rank).map_or(1, |i| s[i]);
    (0..rank)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// The map that broadcasts a constant of shape `src` to `out` (a broadcast of `src` of at
/// least its rank).
fn broadcast_map(src: &[u64], out: &[u64]) -> R<Vec<usize>> {
    let st = strides(src);
    let lead = out.len() - src.len();
    let mut map = Vec::with_capacity(count(out)?);
    for_each_index(out, |idx| {
        let i = (0..src.len())
            .filter(|&k| src[k] != 1)
            .map(|k| idx[lead + k] as usize * st[k])
            .sum();
        map.push(i);
    });
    Ok(map)
}

/// A constant broadcast to `out` (Expand, and the operands of element-wise operators).
pub(super) fn broadcast(v: &Val, out: &[u64]) -> R<Val> {
    let src = const_shape(v).expect("invariant: a constant");
    if src == out {
        return Ok(v.clone());
    }
    if broadcast_shape(&src, out)? != out {
        return Err(format!("shape {src:?} does not broadcast to {out:?}"));
    }
    let map = broadcast_map(&src, out)?;
    Ok(take(v, out.to_vec(), &map))
}

/// The positions ONNX Slice takes along an axis of length `len`: negative bounds count from the
/// end, then are clamped (to [0, len] going forwards, to [-1, len - 1] going backwards).
pub(super) fn slice_positions(len: u64, start: i64, end: i64, step: i64) -> R<Vec<u64>> {
    if step == 0 {
        return Err("a slice step of 0".into());
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    let len = len as i64;
    let from_end = |i: i64| if i < 0 { i.saturating_add(len) } else { i };
    let (start, end) = if step > 0 {
        (from_end(start).clamp(0, len), from_end(end).clamp(0, len))
    } else {
        (
            from_end(start).clamp(0, len - 1),
            from_end(end).clamp(-1, len - 1),
        )
    };
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        out.push(i as u64);
        i += step;
    }
    Ok(out)
}

/// The map that takes, along each axis `k`, the positions `keep[k]` (in that order, repeats
/// allowed): Slice and Gather are this with one axis or several. Returns the output shape.
pub(super) fn select_map(shape: &[u64], keep: &[Vec<u64>]) -> R<(Vec<u64>, Vec<usize>)> {
    let st = strides(shape);
    let out: Vec<u64> = keep.iter().map(|k| k.len() as u64).collect();
    let mut map = Vec::with_capacity(count(&out)?);
    for_each_index(&out, |idx| {
        map.push(
            (0..shape.len())
                .map(|k| keep[k][idx[k] as usize] as usize * st[k])
                .sum(),
        );
    });
    Ok((out, map))
}

/// An index of an axis of size `size`, negative ones counting from the end.
fn position(i: i64, size: u64) -> R<u64> {
    let j = if i < 0 { i + size as i64 } else { i };
    if j < 0 || j as u64 >= size {
        return Err(format!("index {i} is out of range for size {size}"));
    }
    Ok(j as u64)
}

/// ONNX Gather: the positions `indices` (shape `ishape`) of axis `axis`; the output has the
/// data's dims with `axis` replaced by the indices' dims.
pub(super) fn gather_map(
    shape: &[u64],
    axis: usize,
    ishape: &[u64],
    indices: &[i64],
) -> R<(Vec<u64>, Vec<usize>)> {
    let mut keep: Vec<Vec<u64>> = shape.iter().map(|&d| (0..d).collect()).collect();
    keep[axis] = indices
        .iter()
        .map(|&i| position(i, shape[axis]))
        .collect::<R<_>>()?;
    let (_, map) = select_map(shape, &keep)?;
    let mut out = shape[..axis].to_vec();
    out.extend_from_slice(ishape);
    out.extend_from_slice(&shape[axis + 1..]);
    Ok((out, map))
}

/// ONNX Transpose: output axis `k` is input axis `perm[k]`.
pub(super) fn transpose_map(shape: &[u64], perm: &[usize]) -> R<(Vec<u64>, Vec<usize>)> {
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if sorted != (0..shape.len()).collect::<Vec<_>>() {
        return Err(format!(
            "perm {perm:?} is not a permutation of rank {}",
            shape.len()
        ));
    }
    let st = strides(shape);
    let out: Vec<u64> = perm.iter().map(|&p| shape[p]).collect();
    let mut map = Vec::with_capacity(count(&out)?);
    for_each_index(&out, |idx| {
        map.push((0..perm.len()).map(|k| idx[k] as usize * st[perm[k]]).sum());
    });
    Ok((out, map))
}

/// ONNX Concat of constants of one kind along `axis` (already normalised): the inputs' elements
/// one after another, then a map into them.
pub(super) fn concat(parts: &[Val], axis: usize) -> R<Val> {
    let shapes: Vec<Vec<u64>> = parts
        .iter()
        .map(|p| const_shape(p).expect("invariant: constants"))
        .collect();
    let first = &shapes[0];
    for s in &shapes {
        if s.len() != first.len() || (0..s.len()).any(|k| k != axis && s[k] != first[k]) {
            return Err(format!(
                "shapes {first:?} and {s:?} cannot be concatenated on axis {axis}"
            ));
        }
    }
    let mut out = first.clone();
    out[axis] = shapes.iter().map(|s| s[axis]).sum();
    // The part, and the flat offset where its elements start, for each position along `axis`.
    let mut owner = Vec::new();
    let mut base = 0usize;
    for (j, s) in shapes.iter().enumerate() {
        owner.extend((0..s[axis]).map(|p| (j, base, p)));
        base += count(s)?;
    }
    let all_strides: Vec<Vec<usize>> = shapes.iter().map(|s| strides(s)).collect();
    let mut map = Vec::with_capacity(count(&out)?);
    for_each_index(&out, |idx| {
        let (j, base, p) = owner[idx[axis] as usize];
        let st = &all_strides[j];
        let i: usize = (0..idx.len())
            .map(|k| if k == axis { p } else { idx[k] } as usize * st[k])
            .sum();
        map.push(base + i);
    });
    let flat = match &parts[0] {
        Val::Int { .. } => Val::Int {
            shape: vec![base as u64],
            data: parts
                .iter()
                .flat_map(|p| match p {
                    Val::Int { data, .. } => data.clone(),
                    _ => unreachable!("invariant: parts of one kind"),
                })
                .collect(),
        },
        Val::Float(t0) => {
            let mut bits = Vec::with_capacity(base);
            for p in parts {
                let Val::Float(t) = p else {
                    unreachable!("invariant: parts of one kind")
                };
                if t.elem() != t0.elem() {
                    return Err("the constants have different element types".into());
                }
                bits.extend(t.to_bits_vec());
            }
            Val::Float(Tensor::from_bits(t0.elem(), vec![base as u64], bits))
        }
        Val::Ir(_) => unreachable!("invariant: constants"),
    };
    Ok(take(&flat, out, &map))
}

/// ONNX GatherND with `batch_dims` b: each row of the last indices axis (m entries) picks a
/// slice of the data's axes b..b+m within the batch given by the leading b axes.
pub(super) fn gather_nd_map(
    shape: &[u64],
    ishape: &[u64],
    indices: &[i64],
    batch_dims: usize,
) -> R<(Vec<u64>, Vec<usize>)> {
    let (q, r) = (ishape.len(), shape.len());
    let m = *ishape
        .last()
        .ok_or("the indices must have rank 1 or more")? as usize;
    if batch_dims >= q.min(r) || batch_dims + m > r || shape[..batch_dims] != ishape[..batch_dims] {
        return Err(format!(
            "indices of shape {ishape:?} with batch_dims {batch_dims} do not fit data of shape {shape:?}"
        ));
    }
    let st = strides(shape);
    let rows = &ishape[..q - 1];
    let rest = &shape[batch_dims + m..];
    let mut out = rows.to_vec();
    out.extend_from_slice(rest);
    let mut map = Vec::with_capacity(count(&out)?);
    let inner = count(rest)?;
    let mut row = 0usize;
    let mut err = None;
    for_each_index(rows, |idx| {
        let mut base: usize = (0..batch_dims).map(|k| idx[k] as usize * st[k]).sum();
        for (t, &i) in indices[row * m..(row + 1) * m].iter().enumerate() {
            match position(i, shape[batch_dims + t]) {
                Ok(p) => base += p as usize * st[batch_dims + t],
                Err(e) => err = err.take().or(Some(e)),
            }
        }
        map.extend(base..base + inner);
        row += 1;
    });
    match err {
        Some(e) => Err(e),
        None => Ok((out, map)),
    }
}

/// ONNX GatherElements: output element `idx` is the data element at `idx` with its `axis`
/// coordinate replaced by `indices[idx]` (indices and data have the same rank).
pub(super) fn gather_elements_map(
    shape: &[u64],
    axis: usize,
    ishape: &[u64],
    indices: &[i64],
) -> R<Vec<usize>> {
    if ishape.len() != shape.len() || (0..shape.len()).any(|k| k != axis && ishape[k] > shape[k]) {
        return Err(format!(
            "indices of shape {ishape:?} do not fit data of shape {shape:?} on axis {axis}"
        ));
    }
    let st = strides(shape);
    let mut map = Vec::with_capacity(count(ishape)?);
    let mut err = None;
    let mut n = 0;
    for_each_index(ishape, |idx| {
        match position(indices[n], shape[axis]) {
            Ok(p) => map.push(
                (0..idx.len())
                    .map(|k| if k == axis { p } else { idx[k] } as usize * st[k])
                    .sum(),
            ),
            Err(e) => err = err.take().or(Some(e)),
        }
        n += 1;
    });
    match err {
        Some(e) => Err(e),
        None => Ok(map),
    }
}

/// Constants written and read back in tests (shared with `const_math.rs`'s).
#[cfg(test)]
pub(super) mod testing {
    use super::Val;
    use crate::ir::{ElemType, Tensor};

    pub fn int(shape: &[u64], data: &[i64]) -> Val {
        Val::Int {
            shape: shape.to_vec(),
            data: data.to_vec(),
        }
    }

    pub fn flt(shape: &[u64], data: &[f32]) -> Val {
        Val::Float(Tensor::from_f32(ElemType::F32, shape.to_vec(), data))
    }

    /// Shape and integers of an integer constant.
    pub fn ints(v: &Val) -> (Vec<u64>, Vec<i64>) {
        match v {
            Val::Int { shape, data } => (shape.clone(), data.clone()),
            other => panic!("not an integer constant: {other:?}"),
        }
    }

    /// Shape and values of a float constant.
    pub fn floats(v: &Val) -> (Vec<u64>, Vec<f32>) {
        match v {
            Val::Float(t) => (t.shape().to_vec(), t.to_f32_vec()),
            other => panic!("not a float constant: {other:?}"),
        }
    }
}

/// Each operator on the examples of the ONNX specification's operator page.
#[cfg(test)]
mod tests {
    use super::testing::{floats, flt, int, ints};
    use super::*;

    fn apply(v: &Val, (shape, map): (Vec<u64>, Vec<usize>)) -> Val {
        take(v, shape, &map)
    }

    #[test]
    fn slice_positions_follow_onnx_clamping() {
        assert_eq!(slice_positions(4, -1, i64::MAX, 1), Ok(vec![3]));
        assert_eq!(slice_positions(4, 0, 2, 1), Ok(vec![0, 1]));
        assert_eq!(slice_positions(4, i64::MIN, -2, 1), Ok(vec![0, 1]));
        assert_eq!(slice_positions(4, 5, 9, 1), Ok(vec![]));
        assert_eq!(slice_positions(4, -1, i64::MIN, -1), Ok(vec![3, 2, 1, 0]));
        assert_eq!(slice_positions(4, 9, 0, -2), Ok(vec![3, 1]));
        assert_eq!(slice_positions(0, -1, 0, -1), Ok(vec![]));
        assert!(slice_positions(4, 0, 1, 0).is_err());
    }

    #[test]
    fn slice_of_a_2d_constant() {
        // Spec: data [[1,2,3,4],[5,6,7,8]], starts [1,0], ends [2,3], steps [1,2] -> [[5,7]].
        let data = int(&[2, 4], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let keep = [
            slice_positions(2, 1, 2, 1).unwrap(),
            slice_positions(4, 0, 3, 2).unwrap(),
        ];
        let out = apply(&data, select_map(&[2, 4], &keep).unwrap());
        assert_eq!(ints(&out), (vec![1, 2], vec![5, 7]));
        // starts [0,1], ends [-1,1000] -> [[2,3,4]].
        let keep = [
            slice_positions(2, 0, -1, 1).unwrap(),
            slice_positions(4, 1, 1000, 1).unwrap(),
        ];
        let out = apply(&data, select_map(&[2, 4], &keep).unwrap());
        assert_eq!(ints(&out), (vec![1, 3], vec![2, 3, 4]));
    }

    #[test]
    fn expand_broadcasts_both_ways() {
        // Spec: [[1],[2],[3]] expanded to [2,1,6] has shape [2,3,6].
        let data = flt(&[3, 1], &[1.0, 2.0, 3.0]);
        let shape = broadcast_shape(&[3, 1], &[2, 1, 6]).unwrap();
        assert_eq!(shape, [2, 3, 6]);
        let (s, v) = floats(&broadcast(&data, &shape).unwrap());
        assert_eq!(s, [2, 3, 6]);
        assert_eq!(
            &v[..12],
            &[1.0; 6]
                .iter()
                .chain(&[2.0; 6])
                .copied()
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(v[17], 3.0);
        assert_eq!(v[18], 1.0);
        // Spec: to [3,4]: each row repeated.
        let out = broadcast(&int(&[3, 1], &[1, 2, 3]), &[3, 4]).unwrap();
        assert_eq!(ints(&out).1, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
        assert!(broadcast_shape(&[3], &[4]).is_err());
    }

    #[test]
    fn concat_on_each_axis() {
        let (a, b) = (int(&[2, 2], &[1, 2, 3, 4]), int(&[2, 2], &[5, 6, 7, 8]));
        let rows = concat(&[a.clone(), b.clone()], 0).unwrap();
        assert_eq!(ints(&rows), (vec![4, 2], vec![1, 2, 3, 4, 5, 6, 7, 8]));
        let cols = concat(&[a, b], 1).unwrap();
        assert_eq!(ints(&cols), (vec![2, 4], vec![1, 2, 5, 6, 3, 4, 7, 8]));
        let f = concat(&[flt(&[1, 2], &[1.0, 2.0]), flt(&[1, 1], &[3.0])], 1).unwrap();
        assert_eq!(floats(&f), (vec![1, 3], vec![1.0, 2.0, 3.0]));
        assert!(concat(&[int(&[2], &[1, 2]), int(&[1, 1], &[3])], 0).is_err());
    }

    #[test]
    fn transpose_permutes_axes() {
        let data = int(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let out = apply(&data, transpose_map(&[2, 3], &[1, 0]).unwrap());
        assert_eq!(ints(&out), (vec![3, 2], vec![1, 4, 2, 5, 3, 6]));
        assert!(transpose_map(&[2, 3], &[0, 0]).is_err());
    }

    #[test]
    fn gather_on_axis_0_and_1() {
        // Spec: axis 0, indices [[0,1],[1,2]] of a [3,2] table -> [2,2,2].
        let data = flt(&[3, 2], &[1.0, 1.2, 2.3, 3.4, 4.5, 5.7]);
        let out = apply(
            &data,
            gather_map(&[3, 2], 0, &[2, 2], &[0, 1, 1, 2]).unwrap(),
        );
        assert_eq!(
            floats(&out),
            (vec![2, 2, 2], vec![1.0, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7])
        );
        // Spec: axis 1, indices [[0,2]] of a [3,3] table -> [3,1,2].
        let data = int(&[3, 3], &[10, 12, 19, 23, 34, 39, 45, 57, 59]);
        let out = apply(&data, gather_map(&[3, 3], 1, &[1, 2], &[0, -1]).unwrap());
        assert_eq!(ints(&out), (vec![3, 1, 2], vec![10, 19, 23, 39, 45, 59]));
        assert!(gather_map(&[3, 3], 1, &[1], &[3]).is_err());
    }

    #[test]
    fn gather_nd_with_and_without_batch_dims() {
        let d2 = int(&[2, 2], &[0, 1, 2, 3]);
        let out = apply(
            &d2,
            gather_nd_map(&[2, 2], &[2, 2], &[0, 0, 1, 1], 0).unwrap(),
        );
        assert_eq!(ints(&out), (vec![2], vec![0, 3]));
        let out = apply(&d2, gather_nd_map(&[2, 2], &[2, 1], &[1, 0], 0).unwrap());
        assert_eq!(ints(&out), (vec![2, 2], vec![2, 3, 0, 1]));
        let d3 = int(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        let out = apply(
            &d3,
            gather_nd_map(&[2, 2, 2], &[2, 2], &[0, 1, 1, 0], 0).unwrap(),
        );
        assert_eq!(ints(&out), (vec![2, 2], vec![2, 3, 4, 5]));
        let out = apply(
            &d3,
            gather_nd_map(&[2, 2, 2], &[2, 1, 2], &[0, 1, 1, 0], 0).unwrap(),
        );
        assert_eq!(ints(&out), (vec![2, 1, 2], vec![2, 3, 4, 5]));
        // batch_dims = 1: indices [[1],[0]] pick row 1 of batch 0 and row 0 of batch 1.
        let out = apply(&d3, gather_nd_map(&[2, 2, 2], &[2, 1], &[1, 0], 1).unwrap());
        assert_eq!(ints(&out), (vec![2, 2], vec![2, 3, 4, 5]));
        assert!(gather_nd_map(&[2, 2], &[1, 2], &[0, 2], 0).is_err());
    }

    #[test]
    fn gather_elements_on_axis_0_and_1() {
        let d = int(&[2, 2], &[1, 2, 3, 4]);
        let map = gather_elements_map(&[2, 2], 1, &[2, 2], &[0, 0, 1, 0]).unwrap();
        assert_eq!(ints(&take(&d, vec![2, 2], &map)).1, [1, 1, 4, 3]);
        let d = int(&[3, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let map = gather_elements_map(&[3, 3], 0, &[2, 3], &[1, 2, 0, 2, 0, 0]).unwrap();
        assert_eq!(ints(&take(&d, vec![2, 3], &map)).1, [4, 8, 3, 7, 2, 3]);
        let map = gather_elements_map(&[3, 3], 0, &[2, 3], &[-1, -2, 0, -2, 0, 0]).unwrap();
        assert_eq!(ints(&take(&d, vec![2, 3], &map)).1, [7, 5, 3, 4, 2, 3]);
        assert!(gather_elements_map(&[3, 3], 0, &[1, 1], &[3]).is_err());
    }

    use ndarray::{ArrayD, IxDyn, SliceInfoElem};
    use proptest::prelude::*;

    /// A shape of rank 1 to 4 with sizes 1 to 4, and integers 0.. filling it.
    fn shape_and_data() -> impl Strategy<Value = (Vec<u64>, Vec<i64>)> {
        prop::collection::vec(1u64..=4, 1..=4).prop_map(|shape| {
            let n = shape.iter().product::<u64>() as i64;
            (shape, (0..n).collect())
        })
    }

    fn array(shape: &[u64], data: &[i64]) -> ArrayD<i64> {
        let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        ArrayD::from_shape_vec(IxDyn(&dims), data.to_vec()).unwrap()
    }

    fn flat(a: ArrayD<i64>) -> (Vec<u64>, Vec<i64>) {
        (
            a.shape().iter().map(|&d| d as u64).collect(),
            a.iter().copied().collect(),
        )
    }

    proptest! {
        /// The gather maps agree with ndarray's views: a transpose is `permuted_axes`, a
        /// forward slice with positive steps is `slice`, a broadcast is `broadcast`.
        #[test]
        fn maps_agree_with_ndarray(
            (shape, data) in shape_and_data(),
            seed in any::<u64>(),
        ) {
            let rank = shape.len();
            let v = int(&shape, &data);
            let a = array(&shape, &data);
            // A permutation and per-axis slice bounds drawn from the seed.
            let mut perm: Vec<usize> = (0..rank).collect();
            perm.rotate_left((seed % rank as u64) as usize);
            let (out, map) = transpose_map(&shape, &perm).unwrap();
            prop_assert_eq!(ints(&take(&v, out, &map)), flat(a.clone().permuted_axes(perm).as_standard_layout().into_owned()));
            let bounds: Vec<(i64, i64, i64)> = shape
                .iter()
                .enumerate()
                .map(|(k, &d)| {
                    let s = (seed >> (8 * k)) as i64;
                    (s.rem_euclid(d as i64), (s >> 3).rem_euclid(d as i64 + 1), 1 + (s >> 5).rem_euclid(2))
                })
                .collect();
            let keep: Vec<Vec<u64>> = bounds
                .iter()
                .zip(&shape)
                .map(|(&(b, e, st), &d)| slice_positions(d, b, e, st).unwrap())
                .collect();
            let (out, map) = select_map(&shape, &keep).unwrap();
            let info: Vec<SliceInfoElem> = bounds
                .iter()
                .map(|&(b, e, st)| SliceInfoElem::Slice { start: b as isize, end: Some((e.max(b)) as isize), step: st as isize })
                .collect();
            prop_assert_eq!(ints(&take(&v, out, &map)), flat(a.slice(info.as_slice()).to_owned()));
            let mut target = vec![2u64];
            target.extend(shape.iter().map(|&d| if d == 1 { 3 } else { d }));
            let dims: Vec<usize> = target.iter().map(|&d| d as usize).collect();
            let want = a.broadcast(IxDyn(&dims)).unwrap().to_owned();
            prop_assert_eq!(ints(&broadcast(&v, &target).unwrap()), flat(want));
        }
    }

    #[test]
    fn too_large_constants_are_refused() {
        assert!(count(&[1 << 20, 1 << 20]).is_err());
        assert_eq!(count(&[]), Ok(1));
    }
}
