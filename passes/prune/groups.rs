//! Grouped convs (1 < `groups` < channels, as in ResNeXt and RegNet) in a dead-neuron
//! elimination: as the pruned layer (its filters) and as a consumer (its input channels).
//!
//! A conv with `groups = g` splits its input channels and its filters into g equal blocks;
//! filter block `r` reads only input block `r`, through a weight `[C_out, C_in/g, kh, kw]`
//! whose column `i` of a row in block `r` is input channel `r·C_in/g + i`. Every block must
//! keep the same size, so a removal takes the same number of channels from every block (the
//! rule [`balance`] enforces): then `groups` stays, and each kept filter reads the same input
//! channels as before, at new column positions.

use crate::ir::Tensor;
use crate::passes::analysis::is_zero;
use std::collections::BTreeSet;

/// Trims `remove` (positions in `0..groups·block`) to the same count in every block of
/// `block` consecutive positions: the smallest count, less one when that would empty the
/// blocks (no tensor gets an empty axis). Keeps the lowest positions of each block. Returns
/// how many it put back.
pub fn balance(remove: &mut BTreeSet<usize>, groups: usize, block: usize) -> usize {
    if groups <= 1 || block == 0 {
        return 0;
    }
    let per_block =
        |r: usize, remove: &BTreeSet<usize>| remove.range(r * block..(r + 1) * block).count();
    let m = (0..groups).map(|r| per_block(r, remove)).min().unwrap_or(0);
    let m = m.min(block - 1);
    let before = remove.len();
    let trimmed: BTreeSet<usize> = (0..groups)
        .flat_map(|r| {
            remove
                .range(r * block..(r + 1) * block)
                .take(m)
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    *remove = trimmed;
    before - remove.len()
}

/// Whether input channel `j` of a conv with weight `w` (`[C_out, C_in/groups, ...]`) is read
/// by no filter: its column in the filters of its block counts as zero.
pub fn column_is_zero(w: &Tensor, groups: usize, j: usize, zero_threshold: f32) -> bool {
    let s = w.shape();
    let (per_in, window) = (s[1] as usize, s[2..].iter().product::<u64>() as usize);
    let out_per_group = s[0] as usize / groups;
    let (r, i) = (j / per_in, j % per_in);
    (r * out_per_group..(r + 1) * out_per_group).all(|k| {
        let base = (k * per_in + i) * window;
        (base..base + window).all(|t| is_zero(w.get(t), zero_threshold))
    })
}

/// `b_k += Σ_window W[k, j mod (C_in/groups), ...] · a_j` for every filter `k` in the block of
/// each absorbed input channel `j` (positions, as [`crate::passes::absorb::absorb_columns`]
/// takes them for `groups = 1`), accumulated in f64 and rounded once. Returns whether any
/// `b_k` changed.
pub fn absorb_grouped(
    w: &Tensor,
    groups: usize,
    absorbed: &[(Vec<usize>, f32)],
    b: &mut [f32],
) -> bool {
    let s = w.shape();
    let (per_in, window) = (s[1] as usize, s[2..].iter().product::<u64>() as usize);
    let out_per_group = s[0] as usize / groups;
    let mut acc = vec![0f64; b.len()];
    for (positions, a) in absorbed {
        for &j in positions {
            let (r, i) = (j / per_in, j % per_in);
            for (k, acc) in acc
                .iter_mut()
                .enumerate()
                .skip(r * out_per_group)
                .take(out_per_group)
            {
                let base = (k * per_in + i) * window;
                let taps: f64 = (base..base + window).map(|t| w.get(t) as f64).sum();
                *acc += taps * *a as f64;
            }
        }
    }
    let mut touched = false;
    for (bk, d) in b.iter_mut().zip(acc) {
        if d != 0.0 {
            *bk = (*bk as f64 + d) as f32;
            touched = true;
        }
    }
    touched
}

/// The weight of a grouped conv that reads only input channels `keep` (the same count from
/// every block, as [`balance`] leaves them): the filters of block `r` keep the columns of the
/// channels of `keep` in block `r`, in order. Bit-exact, same element type.
pub fn take_columns(w: &Tensor, groups: usize, keep: &[usize]) -> Tensor {
    let s = w.shape();
    let (per_in, window) = (s[1] as usize, s[2..].iter().product::<u64>() as usize);
    let out_per_group = s[0] as usize / groups;
    let new_per_in = keep.len() / groups;
    let mut bits = Vec::with_capacity(s[0] as usize * new_per_in * window);
    for k in 0..s[0] as usize {
        let r = k / out_per_group;
        for &j in &keep[r * new_per_in..(r + 1) * new_per_in] {
            debug_assert_eq!(j / per_in, r, "balanced: block r keeps its own channels");
            let base = (k * per_in + j % per_in) * window;
            bits.extend((base..base + window).map(|t| w.bits(t)));
        }
    }
    let mut shape = s.to_vec();
    shape[1] = new_per_in as u64;
    Tensor::from_bits(w.elem(), shape, bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ElemType;

    #[test]
    fn balance_takes_the_smallest_count_from_every_block() {
        let mut remove: BTreeSet<usize> = [0, 1, 5, 6, 7].into_iter().collect();
        assert_eq!(balance(&mut remove, 2, 4), 1);
        assert_eq!(remove.into_iter().collect::<Vec<_>>(), vec![0, 1, 5, 6]);
        // Never a whole block: one channel of each stays.
        let mut all: BTreeSet<usize> = (0..4).collect();
        balance(&mut all, 2, 2);
        assert_eq!(all.into_iter().collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn grouped_columns_follow_their_block() {
        // 2 groups, 2 filters each reading 2 channels, 1x1: w[k, i] = 10k + i.
        let w = Tensor::from_f32(
            ElemType::F32,
            vec![4, 2, 1, 1],
            &[0., 1., 10., 11., 20., 21., 30., 31.],
        );
        // Keep channel 1 of block 0 and channel 2 (column 0) of block 1.
        let t = take_columns(&w, 2, &[1, 2]);
        assert_eq!(t.shape(), &[4, 1, 1, 1]);
        assert_eq!(t.to_f32_vec(), vec![1., 11., 20., 30.]);
        let mut b = vec![0.0; 4];
        assert!(absorb_grouped(&w, 2, &[(vec![3], 2.0)], &mut b));
        assert_eq!(b, vec![0., 0., 42., 62.]);
        assert!(!column_is_zero(&w, 2, 3, 0.0));
    }
}
