//! Transform-dialect schedules that tile and vectorize the compute-heavy layers.
//!
//! The lowering tags the ops of each layer it can schedule with discardable attributes
//! (`nnopt.root`, `nnopt.kernel`, `nnopt.pad_fill`, `nnopt.pad_copy`, each = the layer's
//! index) and records a [`Layer`]; [`script`] writes one `@__transform_main` that tiles every
//! layer, then vectorizes all tiled ops at once. The recipes are `../shared/mlir-codegen`'s:
//! - dense (`mmtb`, weight kept `[N, K]`): fuse the epilogue (bias add, activation) with the
//!   matmul and its fill into `TM x TN` register tiles, split the K reduction into `VK`-wide
//!   partial sums (`tile_reduction_using_for`), reduce the lanes once per tile;
//! - conv (`convp`, NCHW, stride 1): tile `[1, TF, TH, TW]` in loop order n, oh, f, ow with the
//!   epilogue fused, reduction dims (c, kh, kw) by 1, generalize and fold unit dims so the input
//!   map is a projected permutation, the padded copy of the input tiled per row.
//!
//! Remainders are peeled (`transform.loop.peel`): a size pruning leaves odd (53 filters, a
//! 56-wide row) runs full tiles plus one static remainder tile, never a dynamic or
//! non-power-of-two main tile. Vectorization is `structured.vectorize` on the ops inside the
//! tiled loops plus `fold_tensor_subset_ops_into_vector_transfers`, not
//! `vectorize_children_and_apply_patterns`, which miscompiles rank-expanding `insert_slice`s in
//! MLIR 22 (pitfall 11 of the notes) and would also try to vectorize untiled, unscheduled ops.
//! Ops no layer covers (element-wise ops outside a layer, pools, reductions) stay for the
//! `convert-linalg-to-loops` fallback of the pipeline.

use std::fmt::Write;

/// One scheduled layer: the static sizes of its loop nest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// `y[M, N] = x[M, K] · W[N, K]ᵀ`, then the epilogue.
    Dense { m: u64, n: u64, k: u64 },
    /// A groups-1, stride-1, dilation-1 NCHW conv with `f` filters, `c` input channels and
    /// `oh` x `ow` outputs; `padded` when its input goes through the tagged fill + copy.
    Conv {
        f: u64,
        c: u64,
        oh: u64,
        ow: u64,
        padded: bool,
    },
}

/// The register tile of the dense schedule: `TM x TN` outputs, `VK` lanes of K. 6 x 4 (the
/// notes had 4 x 4): 24 partial-sum vectors, 10 loads per 24 FMAs instead of 8 per 16, which
/// took the MLP benchmark (batch 64) from 13.8–15.9 to 12.3 ms here; 8 x 4 spills.
const DENSE_TILE: (u64, u64, u64) = (6, 4, 16);
/// The register tile of the conv schedule: `CONV_ACC` accumulator vectors of `CONV_TW`
/// output columns each, spread over filters and output rows (see [`conv_tile`]).
const CONV_ACC: u64 = 16;
const CONV_TW: u64 = 16;

/// The conv register tile `(filters, rows, columns)` for a layer (or task) of `f` filters and
/// `oh` x `ow` outputs. Several output rows per tile (4 x 4 x 16, where the notes had 16 x 1 x
/// 16): each step of the reduction then loads `rows` input vectors and broadcasts `filters`
/// weights for `CONV_ACC` FMAs, 8 loads instead of 17, which took the 64-channel 3x3 conv at
/// 56x56 from 2.2 to 1.8 ms here. The rows must divide `oh` (that loop is not peeled).
fn conv_tile(f: u64, oh: u64, ow: u64) -> (u64, u64, u64) {
    let rows = [4, 2, 1]
        .into_iter()
        .find(|&r| oh.is_multiple_of(r))
        .expect("1 divides");
    (tile(f, CONV_ACC / rows), rows, tile(ow, CONV_TW))
}

/// A tile size for a dimension of `n`: `want`, or the largest power of two below `n` when `n`
/// is smaller (the remainder is peeled, so the main tile stays a power of two).
fn tile(n: u64, want: u64) -> u64 {
    if n >= want {
        want
    } else {
        1 << (63 - n.leading_zeros())
    }
}

/// How a layer's root is split into `threads` equal `scf.forall` tasks, if it can be: dense
/// layers along N in whole register tiles, else along M (each task peels its own row
/// remainder: 64 rows are two tasks of 32 = 5 × 6 + 2), convs along output rows. Unequal
/// chunks would make tile sizes dynamic inside the task, which the vectorizer cannot handle, so
/// a layer whose sizes do not divide runs on one thread.
fn split(layer: &Layer, threads: u64) -> Option<Vec<u64>> {
    if threads < 2 {
        return None;
    }
    match *layer {
        Layer::Dense { m, n, .. } => {
            let tn = tile(n, DENSE_TILE.1);
            if n % (threads * tn) == 0 {
                Some(vec![0, n / threads])
            } else if m % threads == 0 {
                Some(vec![m / threads, 0])
            } else {
                None
            }
        }
        Layer::Conv { oh, .. } => (oh % threads == 0).then(|| vec![0, 0, oh / threads, 0]),
    }
}

/// The whole schedule module for `layers`, to be nested (private) in the payload module. With
/// `threads` > 1 each layer that [`split`]s first becomes an `scf.forall` of equal tasks (the
/// pipeline turns them into async-runtime work items); the rest of the schedule runs inside.
pub fn script(layers: &[Layer], threads: u64) -> String {
    let mut s = String::new();
    let any = "!transform.any_op";
    let w = &mut s;
    // `write!` to a String cannot fail.
    macro_rules! emit {
        ($($t:tt)*) => { let _ = writeln!(w, $($t)*); };
    }
    emit!("module @__nnopt_schedule attributes {{transform.with_named_sequence, sym_visibility = \"private\"}} {{");
    emit!("  transform.named_sequence @__transform_main(%root: {any} {{transform.readonly}}) {{");
    // Matches start from %root: %func may hold several functions.
    emit!(
        "    %func = transform.structured.match ops{{[\"func.func\"]}} in %root : ({any}) -> {any}"
    );
    let peel = |w: &mut String, h: &str| {
        let _ = writeln!(
            w,
            "    %{h}.c = transform.cast %{h} : {any} to !transform.op<\"scf.for\">\n    %{h}.main, %{h}.rem = transform.loop.peel %{h}.c : (!transform.op<\"scf.for\">) -> ({any}, {any})"
        );
    };
    // Folds the `affine.min` sizes of peeled tiles to constants: later transforms need static
    // shapes (reduction tiling of a dynamic tile builds an invalid `linalg.reduce`).
    let canonicalize = |w: &mut String| {
        let _ = writeln!(w, "    transform.apply_patterns to %func {{\n      transform.apply_patterns.linalg.tiling_canonicalization\n      transform.apply_patterns.canonicalization\n    }} : {any}");
    };
    let m = |w: &mut String, i: usize, name: &str, attr: &str| {
        let _ = writeln!(w, "    %{name} = transform.structured.match attributes {{nnopt.{attr} = {i} : i64}} in %root : ({any}) -> {any}");
    };
    // Phase 1, in program order: tile each layer's root and fuse the layer into it. An earlier
    // layer is a loop nest by then, which `fuse` does not pull in; the lowering puts a
    // `tensor.cast` barrier in front of each layer's input so an unscheduled producer (an
    // activation, a pool) is not pulled in either and recomputed per tile.
    let mut peeled = false;
    for (i, layer) in layers.iter().enumerate() {
        let task = split(layer, threads);
        if let Some(sizes) = &task {
            let sizes = sizes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            m(w, i, &format!("s{i}"), "root");
            emit!("    %st{i}, %fa{i} = transform.structured.tile_using_forall %s{i} tile_sizes [{sizes}] : ({any}) -> ({any}, {any})");
            m(w, i, &format!("q{i}"), "part");
            emit!("    %qf{i}, %fb{i} = transform.structured.fuse_into_containing_op %q{i} into %fa{i} : ({any}, {any}) -> ({any}, {any})");
        }
        match *layer {
            Layer::Dense { m: rows, n, .. } => {
                // Tiles and remainders are those of a task's share.
                let (rows, n) = match task.as_deref() {
                    Some(&[0, n_share]) => (rows, n_share),
                    Some(&[m_share, 0]) => (m_share, n),
                    _ => (rows, n),
                };
                let (tm, tn) = (tile(rows, DENSE_TILE.0), tile(n, DENSE_TILE.1));
                m(w, i, &format!("r{i}"), "root");
                emit!("    %t{i}, %ln{i}, %lm{i} = transform.structured.fuse %r{i} tile_sizes [{tm}, {tn}] interchange [1, 0] : ({any}) -> ({any}, {any}, {any})");
                // Inner loop first: peeling the outer one then clones both inner parts.
                if rows % tm != 0 {
                    peel(w, &format!("lm{i}"));
                }
                if n % tn != 0 {
                    peel(w, &format!("ln{i}"));
                }
                peeled |= rows % tm != 0 || n % tn != 0;
            }
            Layer::Conv {
                f,
                c,
                oh,
                ow,
                padded,
            } => {
                // Inside a task the tile must divide the task's rows.
                let task_rows = task.map_or(oh, |s| s[2]);
                let (tf, th, tw) = conv_tile(f, task_rows, ow);
                if padded {
                    // Zero-fill and copy the padded input one row at a time; with threads,
                    // each task takes an equal share of the channels first (serial, this
                    // copy capped the conv's two-thread speedup).
                    let share = (threads > 1 && c % threads == 0).then(|| c / threads);
                    for (name, attr) in [("pf", "pad_fill"), ("pc", "pad_copy")] {
                        m(w, i, &format!("{name}{i}"), attr);
                        let mut op = format!("{name}{i}");
                        if let Some(share) = share {
                            emit!("    %{name}q{i}, %{name}fa{i} = transform.structured.tile_using_forall %{op} tile_sizes [0, {share}, 0, 0] : ({any}) -> ({any}, {any})");
                            op = format!("{name}q{i}");
                        }
                        emit!("    %{name}t{i}, %{name}a{i}, %{name}b{i} = transform.structured.tile_using_for %{op} tile_sizes [0, 1, 1, 0] : ({any}) -> ({any}, {any}, {any})");
                    }
                }
                m(w, i, &format!("r{i}"), "root");
                emit!("    %t{i}, %l{i}n, %l{i}h, %l{i}f, %l{i}w = transform.structured.fuse %r{i} tile_sizes [1, {tf}, {th}, {tw}] interchange [0, 2, 1, 3] : ({any}) -> ({any}, {any}, {any}, {any}, {any})");
                if ow % tw != 0 {
                    peel(w, &format!("l{i}w"));
                }
                if f % tf != 0 {
                    peel(w, &format!("l{i}f"));
                }
                peeled |= ow % tw != 0 || f % tf != 0;
            }
        }
    }
    if peeled {
        canonicalize(w);
    }
    // Phase 2: tile the reductions of every kernel (all its clones after peeling).
    let mut convs = false;
    let mut peeled = false;
    for (i, layer) in layers.iter().enumerate() {
        m(w, i, &format!("k{i}"), "kernel");
        match *layer {
            Layer::Dense { k, .. } => {
                let vk = tile(k, DENSE_TILE.2);
                emit!("    %kf{i}, %ks{i}, %kc{i}, %kl{i} = transform.structured.tile_reduction_using_for %k{i} by tile_sizes = [0, 0, {vk}] : ({any}) -> ({any}, {any}, {any}, {any})");
                if k % vk != 0 {
                    peel(w, &format!("kl{i}"));
                    peeled = true;
                }
            }
            Layer::Conv { .. } => {
                convs = true;
                emit!("    %kt{i}, %kc{i}, %kh{i}, %kw{i} = transform.structured.tile_using_for %k{i} tile_sizes [0, 0, 0, 0, 1, 1, 1] : ({any}) -> ({any}, {any}, {any}, {any})");
                emit!("    %kg{i} = transform.structured.generalize %kt{i} : ({any}) -> {any}");
            }
        }
    }
    if peeled && !convs {
        canonicalize(w);
    }
    if convs {
        // Also folds peeled sizes (like `canonicalize`) and drops the unit dims of the 1x1 reduction tiles: the input map (oh + kh, ow + kw)
        // becomes a projected permutation the vectorizer accepts.
        emit!("    transform.apply_patterns to %func {{");
        emit!("      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices");
        emit!("      transform.apply_patterns.linalg.tiling_canonicalization");
        emit!("      transform.apply_patterns.canonicalization");
        emit!("    }} : {any}");
    }
    // Every linalg op inside a loop is a tile of a scheduled layer (the lowering makes no
    // loops of its own); loop handles died in canonicalization, so find them again.
    emit!(
        "    %loops = transform.structured.match ops{{[\"scf.for\"]}} in %root : ({any}) -> {any}"
    );
    emit!("    %tiled = transform.foreach %loops : {any} -> {any} {{");
    emit!("    ^bb0(%l: {any}):");
    emit!("      %x = transform.structured.match interface{{LinalgOp}} in %l : ({any}) -> {any}");
    emit!("      transform.yield %x : {any}");
    emit!("    }}");
    emit!("    %ops = transform.merge_handles %tiled {{deduplicate}} : {any}");
    emit!("    transform.structured.vectorize %ops : {any}");
    emit!("    transform.apply_patterns to %func {{");
    emit!("      transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers");
    emit!("      transform.apply_patterns.canonicalization");
    emit!("    }} : {any}");
    // Accumulators become loop-carried vectors: once per reduction loop level (c, kh, kw).
    for h in 0..3 {
        emit!("    %h{h} = transform.structured.match ops{{[\"scf.for\"]}} in %root : ({any}) -> {any}");
        emit!("    transform.loop.hoist_loop_invariant_subsets %h{h} : {any}");
    }
    emit!("    transform.apply_patterns to %func {{");
    emit!("      transform.apply_patterns.vector.lower_contraction lowering_strategy = \"outerproduct\"");
    emit!("      transform.apply_patterns.vector.lower_outerproduct");
    emit!("      transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = \"innerreduction\"");
    emit!("      transform.apply_patterns.vector.transfer_permutation_patterns");
    emit!(
        "      transform.apply_patterns.vector.lower_transpose lowering_strategy = \"shuffle_1d\""
    );
    emit!("      transform.apply_patterns.canonicalization");
    emit!("    }} : {any}");
    emit!("    transform.yield");
    emit!("  }}");
    emit!("}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_powers_of_two_at_most_the_wanted_size() {
        assert_eq!(tile(1000, 16), 16);
        assert_eq!(tile(16, 16), 16);
        assert_eq!(tile(13, 16), 8);
        assert_eq!(tile(3, 4), 2);
        assert_eq!(tile(1, 4), 1);
    }

    #[test]
    fn remainders_are_peeled_only_when_there_is_one() {
        let dense = |m, n, k| script(&[Layer::Dense { m, n, k }], 1);
        let even = dense(60, 1000, 1024);
        assert!(!even.contains("loop.peel"), "{even}");
        let odd = dense(60, 53, 53);
        assert_eq!(odd.matches("transform.loop.peel").count(), 2, "{odd}");
        let rows = dense(64, 1000, 1024);
        assert_eq!(rows.matches("transform.loop.peel").count(), 1, "{rows}");
        let conv = script(
            &[Layer::Conv {
                f: 53,
                c: 64,
                oh: 56,
                ow: 56,
                padded: true,
            }],
            1,
        );
        assert_eq!(conv.matches("transform.loop.peel").count(), 2, "{conv}");
        assert!(conv.contains("nnopt.pad_copy = 0"), "{conv}");
    }

    #[test]
    fn threads_split_only_into_equal_tasks() {
        let dense = |m, n| Layer::Dense { m, n, k: 64 };
        assert_eq!(split(&dense(64, 1024), 2), Some(vec![0, 512]));
        assert_eq!(split(&dense(48, 53), 2), Some(vec![24, 0]));
        assert_eq!(split(&dense(64, 53), 2), Some(vec![32, 0]));
        // 18 rows are divisible by the 6-row tile, but each task's 9 are not: peeled per task.
        let nine = script(&[dense(18, 53)], 2);
        assert!(nine.contains("tile_sizes [9, 0]"), "{nine}");
        assert_eq!(nine.matches("transform.loop.peel").count(), 2, "{nine}");
        assert_eq!(split(&dense(3, 53), 2), None);
        assert_eq!(split(&dense(64, 1024), 1), None);
        let conv = |oh| Layer::Conv {
            f: 64,
            c: 64,
            oh,
            ow: 56,
            padded: true,
        };
        assert_eq!(split(&conv(56), 2), Some(vec![0, 0, 28, 0]));
        assert_eq!(split(&conv(7), 2), None);
        // A task of 28 rows gets 4-row tiles, one of 7 rows (the 14-row layer) 1-row tiles.
        assert!(script(&[conv(56)], 2).contains("tile_sizes [1, 4, 4, 16]"));
        assert!(script(&[conv(14)], 2).contains("tile_sizes [1, 16, 1, 16]"));
        assert!(script(&[conv(14)], 1).contains("tile_sizes [1, 8, 2, 16]"));
        // The 7-row conv stays serial, but its padded input is filled and copied in two tasks
        // of 32 channels.
        let s = script(&[dense(64, 1024), conv(7)], 2);
        assert_eq!(s.matches("tile_using_forall").count(), 3, "{s}");
        assert_eq!(s.matches("tile_sizes [0, 32, 0, 0]").count(), 2, "{s}");
    }
}
