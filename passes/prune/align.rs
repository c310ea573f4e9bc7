//! Channel alignment (`prune-neurons{round-to=N}`): which removable neurons of a layer stay so
//! that its remaining count is a multiple of N.
//!
//! Runtimes block channels by their vector width (onnxruntime's NCHWc kernels by 8 with AVX2,
//! 16 with AVX-512); a count that is not a multiple of the block sends a conv to slower
//! kernels, which can cost more than the pruning saves. Keeping a removable neuron is exact:
//! its constant output stays, as for a neuron that is not removable at all.

use std::collections::BTreeSet;

/// How many of the `removable` neurons of a layer of `n` must stay so that what is left is a
/// multiple of `round_to`. A layer is never grown past `n`: when the next multiple is larger
/// than `n`, every removable neuron stays.
pub fn kept_for_alignment(n: usize, removable: usize, round_to: usize) -> usize {
    let left = n - removable;
    let target = left.div_ceil(round_to.max(1)) * round_to.max(1);
    target.min(n) - left
}

/// Puts back removals of a layer of `n` neurons from `remove` until what is left is a multiple
/// of `round_to`, those whose removal saves least (highest `cost`) first, and returns how many.
/// With `block` (a grouped conv, or one feeding grouped convs: removals are equal per block of
/// that many positions) it puts back one per block at a time and lets `rebalance` make the
/// other groupings equal again, until aligned.
pub fn align(
    remove: &mut BTreeSet<usize>,
    n: usize,
    round_to: usize,
    block: Option<usize>,
    cost: impl Fn(usize) -> u8,
    rebalance: impl Fn(&mut BTreeSet<usize>) -> usize,
) -> usize {
    let before = remove.len();
    loop {
        let need = kept_for_alignment(n, remove.len(), round_to);
        if need == 0 {
            break;
        }
        let back = match block {
            None => choose_kept(remove, need, &cost),
            Some(block) => (0..n.div_ceil(block))
                .flat_map(|r| {
                    let in_block = remove.range(r * block..(r + 1) * block).copied().collect();
                    choose_kept(&in_block, 1, &cost)
                })
                .collect(),
        };
        for j in back {
            remove.remove(&j);
        }
        if block.is_none() {
            break;
        }
        rebalance(remove);
    }
    before - remove.len()
}

/// The `count` neurons of `remove` to keep: those whose removal saves least (highest `cost`,
/// the extra work removing them brings), lowest index first among equals, so the choice is
/// deterministic.
pub fn choose_kept(
    remove: &BTreeSet<usize>,
    count: usize,
    cost: impl Fn(usize) -> u8,
) -> Vec<usize> {
    let mut by_cost: Vec<usize> = remove.iter().copied().collect();
    // Stable: equal costs stay in index order.
    by_cost.sort_by_key(|&j| std::cmp::Reverse(cost(j)));
    by_cost.truncate(count);
    by_cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remaining_count_becomes_a_multiple() {
        // 288 channels, 57 removable: 231 left, rounded up to 240 keeps 9.
        assert_eq!(kept_for_alignment(288, 57, 16), 9);
        assert_eq!(kept_for_alignment(288, 57, 8), 1);
        assert_eq!(kept_for_alignment(480, 96, 16), 0);
    }

    #[test]
    fn round_to_one_keeps_nothing() {
        assert_eq!(kept_for_alignment(288, 57, 1), 0);
        assert_eq!(kept_for_alignment(10, 10, 1), 0);
    }

    #[test]
    fn a_full_layer_is_never_grown() {
        // 10 channels, 1 removable: 9 rounds to 16 > 10, so the layer stays whole.
        assert_eq!(kept_for_alignment(10, 1, 8), 1);
        // 10 channels, 5 removable: 5 rounds to 8.
        assert_eq!(kept_for_alignment(10, 5, 8), 3);
        assert_eq!(kept_for_alignment(10, 0, 8), 0);
    }

    #[test]
    fn the_costliest_removals_stay_first() {
        let remove: BTreeSet<usize> = [1, 3, 4, 6, 9].into();
        let cost = |j: usize| match j {
            6 => 2,
            3 | 9 => 1,
            _ => 0,
        };
        assert_eq!(choose_kept(&remove, 1, cost), [6]);
        assert_eq!(choose_kept(&remove, 3, cost), [6, 3, 9]);
        assert_eq!(choose_kept(&remove, 4, cost), [6, 3, 9, 1]);
    }

    #[test]
    fn grouped_removals_stay_equal_per_block() {
        // 4 groups of 4, 2 removed from each: 8 left; aligned to 16 all stay, to 12 one per
        // block stays.
        let removed: BTreeSet<usize> = [0, 1, 4, 5, 8, 9, 12, 13].into();
        let never = |_: &mut BTreeSet<usize>| 0;
        let mut remove = removed.clone();
        assert_eq!(align(&mut remove, 16, 12, Some(4), |_| 0, never), 4);
        assert_eq!(remove, [1, 5, 9, 13].into());
        let mut remove = removed.clone();
        assert_eq!(align(&mut remove, 16, 16, Some(4), |_| 0, never), 8);
        assert!(remove.is_empty());
        let mut remove = removed;
        assert_eq!(align(&mut remove, 16, 8, Some(4), |_| 0, never), 0);
    }
}
