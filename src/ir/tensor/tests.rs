//! Tests of `tensor.rs`: every way of reading a view (taken, transposed, composed) gives the
//! bits of its definition.

use super::*;

#[test]
fn bits_survive_for_every_element_type() {
    let specials = [f32::NAN.to_bits() | 1, (-0.0f32).to_bits(), 1, 0x7f80_0000];
    let t = Tensor::from_bits(ElemType::F32, vec![4], specials);
    assert_eq!(t.to_bits_vec(), specials);
    let h = Tensor::from_bits(ElemType::F16, vec![2], [0x8000, 0x0001]);
    assert_eq!(h.to_bits_vec(), [0x8000, 0x0001]);
    assert_eq!(h.get(0).to_bits(), (-0.0f32).to_bits());
}

/// `take` by its definition: element (.., k, ..) of the result is element (.., keep[k], ..)
/// of the input, bit for bit.
fn reference(t: &[u32], s: &[usize], axis: usize, keep: &[usize]) -> Vec<u32> {
    let (outer, n): (usize, usize) = (s[..axis].iter().product(), s[axis]);
    let inner: usize = s[axis + 1..].iter().product();
    let mut out = Vec::new();
    for o in 0..outer {
        for &k in keep {
            for i in 0..inner {
                out.push(t[(o * n + k) * inner + i]);
            }
        }
    }
    out
}

/// Every way of reading a view gives the same bits: element by element, in f32 chunks, in
/// byte chunks (the writers' path), and gathered into a buffer.
fn assert_reads(got: &Tensor, want: &[u32], what: &str) {
    let one_by_one: Vec<u32> = (0..got.len()).map(|i| got.bits(i)).collect();
    assert_eq!(one_by_one, want, "{what}: bits(i)");
    assert_eq!(got.to_bits_vec(), want, "{what}: byte chunks");
    assert_eq!(
        got.materialized().to_bits_vec(),
        want,
        "{what}: materialized"
    );
    let f: Vec<u32> = got.to_f32_vec().iter().map(|v| v.to_bits()).collect();
    let g: Vec<u32> = want
        .iter()
        .map(|&b| bits_to_f32(got.elem(), b).to_bits())
        .collect();
    assert_eq!(f, g, "{what}: f32 chunks");
    // Reads that start and end inside runs.
    for start in 0..got.len() {
        let mut part = Vec::new();
        got.for_each_f32_chunk(start..got.len(), |c| part.extend_from_slice(c));
        assert_eq!(part.len(), got.len() - start);
        assert!(part.iter().zip(&g[start..]).all(|(a, b)| a.to_bits() == *b));
    }
}

#[test]
fn take_matches_its_definition_for_every_run_length_and_composition() {
    let s = [2usize, 5, 3, 2];
    let values: Vec<f32> = (0..s.iter().product::<usize>())
        .map(|i| i as f32 - 7.5)
        .collect();
    // Runs of one element (axis 3), of 2 and 6 elements, and whole blocks (axis 0).
    let takes = [
        (3, vec![1]),
        (2, vec![0, 2]),
        (1, vec![4, 0, 3]),
        (0, vec![1]),
    ];
    for elem in [ElemType::F32, ElemType::F16] {
        let t = Tensor::from_f32(elem, s.iter().map(|&d| d as u64).collect(), &values);
        for (axis, keep) in &takes {
            let got = t.take(*axis, keep);
            let mut shape = t.shape().to_vec();
            shape[*axis] = keep.len() as u64;
            assert_eq!(got.shape(), shape.as_slice());
            let want = reference(&t.to_bits_vec(), &s, *axis, keep);
            assert_reads(&got, &want, &format!("{elem:?} axis {axis}"));
            // A take of a view composes: the same as taking from a buffer of the view.
            for (axis2, keep2) in [(1, vec![2, 0]), (*axis, vec![0]), (3, vec![1, 0])] {
                if keep2.iter().any(|&k| k as u64 >= got.shape()[axis2]) {
                    continue;
                }
                let s2: Vec<usize> = got.shape().iter().map(|&d| d as usize).collect();
                let want2 = reference(&want, &s2, axis2, &keep2);
                let what = format!("{elem:?} axis {axis} then {axis2}");
                assert_reads(&got.take(axis2, &keep2), &want2, &what);
            }
        }
    }
    let empty = Tensor::from_f32(ElemType::F32, vec![0, 3], &[]);
    assert_eq!(empty.take(1, &[2]).shape(), &[0, 1]);
    assert!(empty.take(1, &[2]).to_bits_vec().is_empty());
    let splat = Tensor::splat(ElemType::F32, vec![4, 4], 2.5);
    let s = splat.take(0, &[1, 3]);
    assert!(s.is_splat() && s.shape() == [2, 4] && s.get(0) == 2.5);
}

#[test]
fn large_views_stream_in_chunks_and_reshape_gathered() {
    // More than one 64 KiB chunk, with a chunk boundary inside a 3-element run.
    let values: Vec<f32> = (0..300 * 301).map(|i| i as f32).collect();
    let t = Tensor::from_f32(ElemType::F32, vec![300, 301], &values);
    let keep: Vec<usize> = (0..301).filter(|k| k % 3 != 1).collect();
    let v = t
        .take(1, &keep)
        .take(0, &(0..300).rev().collect::<Vec<_>>());
    let want: Vec<u32> = (0..300)
        .rev()
        .flat_map(|r| keep.iter().map(move |&c| ((r * 301 + c) as f32).to_bits()))
        .collect();
    let mut chunks = 0;
    let mut got = Vec::new();
    v.for_each_byte_chunk(|c| {
        chunks += 1;
        got.extend(
            c.chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap())),
        );
    });
    assert!(chunks > 1);
    assert_eq!(got, want);
    let r = v.reshaped(vec![v.len() as u64]).unwrap();
    assert!(r.raw_bytes().is_some() && r.to_bits_vec() == want);
}

/// A transposed view reads element (r, c) of the original as (c, r), however it is read,
/// for every element type; takes of it compose with it (rows of the view are columns of
/// the original); transposing back gives the original buffer, not a view.
#[test]
fn transposed_views_match_their_definition() {
    let (r, c) = (37usize, 5usize);
    let values: Vec<f32> = (0..r * c).map(|i| i as f32 * 0.5 - 3.0).collect();
    for elem in [ElemType::F32, ElemType::F16, ElemType::BF16] {
        let t = Tensor::from_f32(elem, vec![r as u64, c as u64], &values);
        let bits = t.to_bits_vec();
        let tt = t.transposed();
        assert_eq!(tt.shape(), &[c as u64, r as u64]);
        let want: Vec<u32> = (0..c)
            .flat_map(|j| (0..r).map(move |i| (i, j)))
            .map(|(i, j)| bits[i * c + j])
            .collect();
        assert_reads(&tt, &want, &format!("{elem:?} transposed"));
        let rows = [4usize, 0, 2];
        let want_rows = reference(&want, &[c, r], 0, &rows);
        assert_reads(&tt.take(0, &rows), &want_rows, "rows of a transpose");
        let cols: Vec<usize> = (0..r).filter(|i| i % 4 != 1).collect();
        let both = tt.take(0, &rows).take(1, &cols);
        let want_both = reference(&want_rows, &[3, r], 1, &cols);
        assert_reads(&both, &want_both, "rows, then columns of a transpose");
        // Transposed back: the pruned view of the original (columns 4, 0, 2 of it).
        let back = both.transposed();
        assert_reads(
            &back,
            &reference(&reference(&bits, &[r, c], 1, &rows), &[r, 3], 0, &cols),
            "transposed back",
        );
        assert!(tt.is_transposed() && !both.transposed().is_transposed());
        assert!(tt.transposed().raw_bytes().is_some());
    }
    let s = Tensor::splat(ElemType::F32, vec![2, 3], 1.5).transposed();
    assert!(s.is_splat() && s.shape() == [3, 2]);
}

#[test]
fn wrong_byte_counts_are_refused() {
    assert!(Tensor::from_bytes(ElemType::F32, vec![2], vec![0u8; 7].into()).is_none());
    assert!(Tensor::from_bytes(ElemType::F32, vec![u64::MAX, 2], vec![].into()).is_none());
}
