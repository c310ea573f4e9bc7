//! Transform-dialect schedules that tile and vectorize the compute-heavy layers.
//!
//! The lowering marks the ops of each layer it can schedule with discardable attributes
//! (`nnopt.root`, `nnopt.kernel`, `nnopt.pad_copy`, each = the layer's
//! index) and records a [`Layer`]; [`script`] writes one `@__transform_main` that tiles every
//! layer, then vectorizes all tiled ops at once. The recipes are `../shared/mlir-codegen`'s:
//! - dense (the notes' `mm`, on a weight packed into panels of `TN` columns of `W^T`, see
//!   `packing::pack_dense`): fuse the epilogue (bias add, activation) with the matmul and its
//!   fill into `TM` rows x one panel, loop order panel, rows; K by 1, so each step is an outer
//!   product of `TM` broadcast inputs and the panel's `TN` contiguous weights;
//! - batched matmul: the dense recipe on the unpacked `b[B, K, N]` (rows of `N`, not panels),
//!   `TM` rows x `TN` columns of one batch entry, loop order batch, columns, rows;
//! - conv (NCHW, stride 1, computed over the flattened rows of its padded input, see
//!   `Lower::conv_flat`): tile `[1, TF, TP]` (filters, flat positions) in loop order n, p, f
//!   with the epilogue fused, reduction dims (c, kh, kw) by 1, fold unit dims so the input map
//!   `p + kh * wp + kw` becomes a projected permutation, the padded copy of the input tiled per
//!   row. The notes' `convp` tiled output rows and columns instead; a 56-wide row then ended in
//!   a half-width tile.
//!
//! Remainders are peeled (`transform.loop.peel`): a size pruning leaves odd (53 filters) runs
//! full tiles plus one static remainder tile, never a dynamic or non-power-of-two-wide main
//! tile. Vectorization is `structured.vectorize` on the ops inside the
//! tiled loops plus `fold_tensor_subset_ops_into_vector_transfers`, not
//! `vectorize_children_and_apply_patterns`, which miscompiles rank-expanding `insert_slice`s in
//! MLIR 22 (pitfall 11 of the notes) and would also try to vectorize untiled, unscheduled ops.
//! Ops no layer covers (element-wise ops outside a layer, pools, reductions) stay for the
//! `convert-linalg-to-loops` fallback of the pipeline.

use std::fmt::Write;

/// One scheduled layer: the static sizes of its loop nest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// `y[M, N] = x[M, K] · W[N, K]ᵀ`, then the epilogue, on the packed weight and with `n`
    /// padded to whole panels (`Lower::dense_packed`).
    Dense { m: u64, n: u64, k: u64 },
    /// `y[B, M, N] = a[B, M, K] · b[B, K, N]`, a batched matmul of computed operands (attention's
    /// `QKᵀ` and `softmax · V`; `Lower::matmul`), batch axes collapsed into `B`.
    Matmul { batch: u64, m: u64, n: u64, k: u64 },
    /// A groups-1, stride-1, dilation-1 NCHW conv with `f` filters and `c` input channels,
    /// computed over `len` flat positions of its (padded) input rows (`Lower::conv_flat`);
    /// `padded` when its input goes through the marked fill + copy.
    Conv {
        f: u64,
        c: u64,
        len: u64,
        padded: bool,
    },
}

/// The register tiles of one target, derived from its f32 vector width and vector register
/// count (`super::target::Target`) by [`dense_tile`] and [`conv_tile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    /// Dense `(TM rows, TN columns)`; `TN` is also the panel width of the packed weight
    /// (`packing::pack_dense`).
    pub dense: (u64, u64),
    /// Conv `(filters, flat positions)`.
    pub conv: (u64, u64),
    /// f32 lanes of one vector: the unit a conv's positions split into tasks by.
    pub lanes: u64,
}

impl Tiles {
    /// The tiles for vectors of `lanes` f32 and `registers` vector registers.
    pub fn new(lanes: u64, registers: u64) -> Tiles {
        Tiles {
            dense: dense_tile(lanes, registers),
            conv: conv_tile(lanes, registers),
            lanes,
        }
    }

    pub fn for_target(t: &super::target::Target) -> Tiles {
        Tiles::new(t.lanes(), t.registers())
    }
}

/// The accumulators a register tile may hold: three quarters of the `registers`. Each step of
/// the reduction also needs its operands in registers (the `v` vectors loaded along the tile's
/// vector dimension and one broadcast scalar at a time) plus LLVM's temporaries: with 32
/// registers, 24 accumulators + 4 loads + 1 broadcast fit, and 28 accumulators (a 7 x 64 conv
/// tile) spilled.
fn accumulators(registers: u64) -> u64 {
    registers * 3 / 4
}

/// The dense register tile `(TM, TN)`: `TN = 2` vectors of `lanes`, `TM = A / 2` rows for `A`
/// = [`accumulators`]; each reduction step broadcasts `TM` inputs and loads 2 weight vectors
/// for `2 TM` FMAs. Two vectors, not the squarest split of `A` ([`conv_tile`]'s): `TN` is the
/// panel width N is padded to, so a wider panel computes more discarded columns of a pruned
/// layer, and one vector would pay a broadcast per FMA. 32 registers of 16 lanes (AVX-512)
/// give 12 x 32, 16 of 8 (AVX2) 6 x 16 (MLAS's AVX2 kernel also keeps 12 accumulators), NEON
/// (32 of 4) 12 x 8.
pub fn dense_tile(lanes: u64, registers: u64) -> (u64, u64) {
    (accumulators(registers) / 2, 2 * lanes)
}

/// The conv register tile `(TF filters, TP = v * lanes positions)`: each step of the reduction
/// loads `v` input vectors and broadcasts `TF` weights for `TF * v` FMAs, so for `A` =
/// [`accumulators`] = `TF * v` the loads `v + TF` are fewest when the split is square: `v` is
/// the largest power of two with `v * v <= A` (widths that are not a power of two, 48 or 80,
/// were much slower: LLVM splits such vectors badly) and `TF = A / v`. AVX-512 (32 registers
/// of 16 lanes): 6 x 64; AVX2 (16 of 8): 6 x 16; NEON (32 of 4): 6 x 16.
pub fn conv_tile(lanes: u64, registers: u64) -> (u64, u64) {
    let a = accumulators(registers);
    let mut v = 1;
    while (2 * v) * (2 * v) <= a {
        v *= 2;
    }
    (a / v, v * lanes)
}

/// The conv register tile `(filters, positions)` for a layer (or task) of `f` filters and
/// `len` flat positions.
fn conv_tile_for(tiles: &Tiles, f: u64, len: u64) -> (u64, u64) {
    (tile(f, tiles.conv.0), tile(len, tiles.conv.1))
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
/// remainder: 64 rows are two tasks of 32 = 5 × 6 + 2), convs along the flat positions in
/// whole vectors with a power-of-two remainder, else along the filters (each task peels its
/// own filter remainder). Unequal chunks would make tile sizes dynamic inside the task, which
/// the vectorizer cannot handle, so a layer whose sizes do not divide runs on one thread.
fn split(layer: &Layer, threads: u64, tiles: &Tiles) -> Option<Vec<u64>> {
    if threads < 2 {
        return None;
    }
    match *layer {
        Layer::Dense { m, n, .. } => {
            let panels = n / tiles.dense.1;
            if panels.is_multiple_of(threads) {
                Some(vec![0, panels / threads, 0])
            } else if m.is_multiple_of(threads) {
                Some(vec![m / threads, 0, 0])
            } else {
                None
            }
        }
        Layer::Matmul { batch, m, .. } => {
            if batch.is_multiple_of(threads) {
                Some(vec![batch / threads, 0, 0])
            } else if m.is_multiple_of(threads) {
                Some(vec![0, m / threads, 0])
            } else {
                None
            }
        }
        Layer::Conv { f, len, .. } => {
            // Each task peels its own remainder of position tiles, which must be whole vectors
            // of a power-of-two count: 864 positions (28 rows of 30) in two tasks of 432 = 6 x
            // 64 + 48 would leave a 48-wide tile, slow enough to lose the second thread's gain.
            // A split that leaves such a remainder where the whole layer had none comes after
            // the split by filters: its remainder tiles are kernels of their own to compile
            // (208 positions in two tasks of 104 = 6 x 16 + 8 on AVX2).
            let share = len / threads;
            let rem = share % tile(share, tiles.conv.1);
            // Unless each task would get less than a whole filter tile.
            let whole = len.is_multiple_of(threads * tiles.lanes);
            let filters = f.is_multiple_of(threads);
            if whole && rem == 0 {
                Some(vec![0, 0, share])
            } else if filters && f / threads >= tiles.conv.0 {
                Some(vec![0, f / threads, 0])
            } else if whole && rem.is_power_of_two() {
                Some(vec![0, 0, share])
            } else if filters {
                Some(vec![0, f / threads, 0])
            } else {
                None
            }
        }
    }
}

/// `v` as the comma-separated list of a transform op's sizes.
fn list(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// The whole schedule module for `layers`, to be nested (private) in the payload module. With
/// `threads` > 1 each layer that [`split`]s first becomes an `scf.forall` of equal tasks (the
/// pipeline turns them into async-runtime work items); the rest of the schedule runs inside.
pub fn script(layers: &[Layer], threads: u64, tiles: &Tiles) -> String {
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
        let task = split(layer, threads, tiles);
        if let Some(sizes) = &task {
            let sizes = list(sizes);
            m(w, i, &format!("s{i}"), "root");
            emit!("    %st{i}, %fa{i} = transform.structured.tile_using_forall %s{i} tile_sizes [{sizes}] : ({any}) -> ({any}, {any})");
            m(w, i, &format!("q{i}"), "part");
            emit!("    %qf{i}, %fb{i} = transform.structured.fuse_into_containing_op %q{i} into %fa{i} : ({any}, {any}) -> ({any}, {any})");
        }
        match *layer {
            Layer::Dense { m: rows, .. } => {
                // Loops: panel, then rows (a panel stays in cache for every row tile).
                let rows = match task.as_deref() {
                    Some(&[m_share, 0, 0]) => m_share,
                    _ => rows,
                };
                let tm = tile(rows, tiles.dense.0);
                m(w, i, &format!("r{i}"), "root");
                emit!("    %t{i}, %ln{i}, %lm{i} = transform.structured.fuse %r{i} tile_sizes [{tm}, 1, 0] interchange [1, 0, 2] : ({any}) -> ({any}, {any}, {any})");
                if rows % tm != 0 {
                    peel(w, &format!("lm{i}"));
                    peeled = true;
                }
            }
            Layer::Matmul { m: rows, n, .. } => {
                // Loops: batch entry, column tile, rows (as dense: a `K x TN` block of `b`
                // stays in cache for every row tile); columns left by pruning or odd sizes
                // are peeled too (no panel padding here).
                let rows = match task.as_deref() {
                    Some(&[0, m_share, 0]) => m_share,
                    _ => rows,
                };
                let (tm, tn) = (tile(rows, tiles.dense.0), tile(n, tiles.dense.1));
                m(w, i, &format!("r{i}"), "root");
                emit!("    %t{i}, %lb{i}, %ln{i}, %lm{i} = transform.structured.fuse %r{i} tile_sizes [1, {tm}, {tn}, 0] interchange [0, 2, 1, 3] : ({any}) -> ({any}, {any}, {any}, {any})");
                if rows % tm != 0 {
                    peel(w, &format!("lm{i}"));
                }
                if n % tn != 0 {
                    peel(w, &format!("ln{i}"));
                }
                peeled |= rows % tm != 0 || n % tn != 0;
            }
            Layer::Conv { f, c, len, padded } => {
                let (f, len) = match task.as_deref() {
                    Some(&[0, 0, share]) => (f, share),
                    Some(&[0, share, 0]) => (share, len),
                    _ => (f, len),
                };
                let (tf, tp) = conv_tile_for(tiles, f, len);
                if padded {
                    // Copy the input into the padded buffer one row at a time; with threads,
                    // each task takes an equal share of the channels first (serial, this
                    // copy capped the conv's two-thread speedup). The zero fill before it is
                    // split with the element-wise ops (`nnopt.spread`) and left to the loop
                    // fallback, where LLVM makes it a `memset`.
                    m(w, i, &format!("pc{i}"), "pad_copy");
                    let mut op = format!("pc{i}");
                    if threads > 1 && c.is_multiple_of(threads) {
                        let share = c / threads;
                        emit!("    %pcq{i}, %pcfa{i} = transform.structured.tile_using_forall %{op} tile_sizes [0, {share}, 0, 0] : ({any}) -> ({any}, {any})");
                        op = format!("pcq{i}");
                    }
                    emit!("    %pct{i}, %pca{i}, %pcb{i} = transform.structured.tile_using_for %{op} tile_sizes [0, 1, 1, 0] : ({any}) -> ({any}, {any}, {any})");
                }
                m(w, i, &format!("r{i}"), "root");
                // Loops n, p, f: the input rows of a position tile stay in cache while every
                // filter tile passes over them. The inner loop is peeled first (see dense).
                emit!("    %t{i}, %l{i}n, %l{i}p, %l{i}f = transform.structured.fuse %r{i} tile_sizes [1, {tf}, {tp}] interchange [0, 2, 1] : ({any}) -> ({any}, {any}, {any}, {any})");
                if f % tf != 0 {
                    peel(w, &format!("l{i}f"));
                }
                if len % tp != 0 {
                    peel(w, &format!("l{i}p"));
                }
                peeled |= len % tp != 0 || f % tf != 0;
            }
        }
    }
    // Element-wise ops outside the layers (`Lower::spread`) become `threads` tasks along their
    // marked axis; inside, they stay for the loop fallback (scalar loops: LLVM's cost model
    // leaves a 56-wide row loop unvectorized).
    if threads > 1 {
        for axis in 0..2 {
            let mut counts = vec![0; axis + 1];
            counts[axis] = threads;
            let counts = list(&counts);
            emit!("    %ew{axis} = transform.structured.match attributes {{nnopt.spread = {axis} : i64}} in %root : ({any}) -> {any}");
            emit!("    %ewt{axis}, %ewf{axis} = transform.structured.tile_using_forall %ew{axis} num_threads [{counts}] : ({any}) -> ({any}, {any})");
        }
    }
    if peeled {
        canonicalize(w);
    }
    // Phase 2: tile the reductions of every kernel (all its clones after peeling) by 1. The
    // tile's zero fill becomes a `linalg.generic`, whose unit dims the folding below drops
    // (a `linalg.fill` keeps them): the fill then writes the accumulators' own shape, the
    // kernel's first read of them folds to the zeros and the write dies. Otherwise
    // bufferization kept a tile-sized buffer that every register tile `memset` (a libc call;
    // LLVM forwards the zeros but cannot drop the store).
    for (i, layer) in layers.iter().enumerate() {
        emit!("    %z{i} = transform.structured.match ops{{[\"linalg.fill\"]}} attributes {{nnopt.part = {i} : i64}} in %root : ({any}) -> {any}");
        emit!("    %zg{i} = transform.structured.generalize %z{i} : ({any}) -> {any}");
        m(w, i, &format!("k{i}"), "kernel");
        match *layer {
            Layer::Dense { .. } | Layer::Matmul { .. } => {
                emit!("    %kt{i}, %kk{i} = transform.structured.tile_using_for %k{i} tile_sizes [0, 0, 0, 1] : ({any}) -> ({any}, {any})");
            }
            Layer::Conv { .. } => {
                emit!("    %kt{i}, %kc{i}, %kh{i}, %kw{i} = transform.structured.tile_using_for %k{i} tile_sizes [0, 0, 0, 1, 1, 1] : ({any}) -> ({any}, {any}, {any}, {any})");
            }
        }
    }
    // Drops the unit dims of the reduction tiles (a conv's input map p + kh * wp + kw becomes
    // a projected permutation the vectorizer accepts; a dense tile becomes an outer product)
    // and, like `canonicalize`, folds peeled sizes.
    emit!("    transform.apply_patterns to %func {{");
    emit!("      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices");
    emit!("      transform.apply_patterns.linalg.tiling_canonicalization");
    emit!("      transform.apply_patterns.canonicalization");
    emit!("    }} : {any}");
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

    /// 32 registers of 16 lanes: the tiles the figures of `docs/performance.md` were measured
    /// with.
    const AVX512: Tiles = Tiles {
        dense: (12, 32),
        conv: (6, 64),
        lanes: 16,
    };

    #[test]
    fn tiles_fit_the_registers_of_each_isa() {
        assert_eq!(Tiles::new(16, 32), AVX512);
        // AVX2 and AVX: 16 ymm registers of 8 lanes; SSE: 16 of 4; NEON: 32 of 4.
        assert_eq!((dense_tile(8, 16), conv_tile(8, 16)), ((6, 16), (6, 16)));
        assert_eq!((dense_tile(4, 16), conv_tile(4, 16)), ((6, 8), (6, 8)));
        assert_eq!((dense_tile(4, 32), conv_tile(4, 32)), ((12, 8), (6, 16)));
        // Accumulators + one step's loads leave a register for the broadcast.
        for (lanes, regs) in [(16, 32), (8, 16), (4, 16), (4, 32)] {
            let (tm, tn) = dense_tile(lanes, regs);
            assert!(tm * (tn / lanes) + tn / lanes < regs);
            let (tf, tp) = conv_tile(lanes, regs);
            assert!(tf * (tp / lanes) + tp / lanes < regs);
            assert!((tp / lanes).is_power_of_two());
        }
        // AVX2 schedules 6-row dense tiles and 6 x 16 conv tiles; conv positions split into
        // tasks in whole 8-lane vectors.
        let avx2 = Tiles::new(8, 16);
        let s = script(
            &[Layer::Dense {
                m: 64,
                n: 1024,
                k: 64,
            }],
            1,
            &avx2,
        );
        assert!(s.contains("tile_sizes [6, 1, 0]"), "{s}");
        let conv = Layer::Conv {
            f: 64,
            c: 64,
            len: 208,
            padded: true,
        };
        assert!(script(&[conv], 1, &avx2).contains("tile_sizes [1, 6, 16]"));
        // 208 = 2 x 104 = 2 x (6 x 16 + 8): whole 8-lane vectors, not whole 16-lane ones; the
        // 8-wide remainder would be a kernel of its own, so the 64 filters split instead,
        // unless a task's share is less than a filter tile.
        assert_eq!(split(&conv, 2, &avx2), Some(vec![0, 32, 0]));
        let eight = Layer::Conv {
            f: 8,
            c: 64,
            len: 208,
            padded: true,
        };
        assert_eq!(split(&eight, 2, &avx2), Some(vec![0, 0, 104]));
        assert_eq!(split(&conv, 2, &AVX512), Some(vec![0, 32, 0]));
    }

    #[test]
    fn batched_matmuls_take_the_dense_tile_and_split_by_batch() {
        // softmax . V of 4 heads: 16 columns are one AVX2 tile of 2 vectors, 128 rows = 21 x 6
        // + 2 (peeled); on AVX-512 the 16 columns are below TN = 32 and take 16.
        let mm = |batch, m| Layer::Matmul {
            batch,
            m,
            n: 16,
            k: 128,
        };
        let sv = mm(4, 128);
        let avx2 = script(&[sv], 1, &Tiles::new(8, 16));
        assert!(
            avx2.contains("tile_sizes [1, 6, 16, 0] interchange [0, 2, 1, 3]"),
            "{avx2}"
        );
        assert!(
            avx2.contains("%lm0.main, %lm0.rem = transform.loop.peel"),
            "{avx2}"
        );
        assert!(!avx2.contains("%ln0.main"), "{avx2}");
        let s = script(&[sv], 1, &AVX512);
        assert!(s.contains("tile_sizes [1, 12, 16, 0]"), "{s}");
        assert!(s.contains("tile_sizes [0, 0, 0, 1]"), "{s}");
        // Threads split the batch, else the rows, else nothing.
        assert_eq!(split(&sv, 2, &AVX512), Some(vec![2, 0, 0]));
        let one = mm(1, 128);
        assert_eq!(split(&one, 2, &AVX512), Some(vec![0, 64, 0]));
        assert_eq!(split(&mm(3, 13), 2, &AVX512), None);
        // A task of 64 rows tiles them by 12 and peels 4.
        let threaded = script(&[one], 2, &AVX512);
        assert!(threaded.contains("tile_sizes [0, 64, 0]"), "{threaded}");
        assert!(threaded.contains("%lm0.main"), "{threaded}");
    }

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
        // Dense layers have whole panels (N is padded); only the rows can leave a remainder.
        let dense = |m, n, k| script(&[Layer::Dense { m, n, k }], 1, &AVX512);
        let even = dense(60, 1024, 53);
        assert!(!even.contains("loop.peel"), "{even}");
        let rows = dense(64, 1024, 1024);
        assert_eq!(rows.matches("transform.loop.peel").count(), 1, "{rows}");
        assert!(rows.contains("tile_sizes [12, 1, 0]"), "{rows}");
        let conv = |f, len| {
            script(
                &[Layer::Conv {
                    f,
                    c: 64,
                    len,
                    padded: true,
                }],
                1,
                &AVX512,
            )
        };
        assert!(!conv(54, 3264).contains("loop.peel"));
        let conv = conv(53, 3264 - 32);
        assert_eq!(conv.matches("transform.loop.peel").count(), 2, "{conv}");
        assert!(conv.contains("nnopt.pad_copy = 0"), "{conv}");
    }

    #[test]
    fn threads_split_only_into_equal_tasks() {
        // Dense: whole panels of 32 columns per task, else rows.
        let dense = |m, n| Layer::Dense { m, n, k: 64 };
        assert_eq!(split(&dense(64, 1024), 2, &AVX512), Some(vec![0, 16, 0]));
        assert_eq!(split(&dense(48, 96), 2, &AVX512), Some(vec![24, 0, 0]));
        // Each task's 9 rows are an 8-row tile and a peeled row.
        let nine = script(&[dense(18, 96)], 2, &AVX512);
        assert!(nine.contains("tile_sizes [9, 0, 0]"), "{nine}");
        assert!(nine.contains("tile_sizes [8, 1, 0]"), "{nine}");
        assert_eq!(nine.matches("transform.loop.peel").count(), 1, "{nine}");
        assert_eq!(split(&dense(3, 96), 2, &AVX512), None);
        assert_eq!(split(&dense(64, 1024), 1, &AVX512), None);
        let conv = |f, len| Layer::Conv {
            f,
            c: 64,
            len,
            padded: true,
        };
        // 56 rows of 58 are 3248 positions, rounded up to 3264 = 2 x 1632 = 2 x (25 x 64 + 32):
        // 8 filters are less than a tile per task, so the positions split, each task with its
        // 32-wide remainder (as lit/lower/schedule-threads.nnir checks); 64 filters split.
        assert_eq!(split(&conv(8, 3264), 2, &AVX512), Some(vec![0, 0, 1632]));
        assert_eq!(split(&conv(64, 3264), 2, &AVX512), Some(vec![0, 32, 0]));
        let two = script(&[conv(64, 3264)], 2, &AVX512);
        assert!(two.contains("tile_sizes [1, 6, 64]"), "{two}");
        // 32 filters = 5 x 6 + 2 per task; 3264 = 51 x 64.
        assert_eq!(two.matches("transform.loop.peel").count(), 1, "{two}");
        // 864 positions would leave each task a 48-wide remainder: the filters split instead.
        assert_eq!(split(&conv(128, 864), 2, &AVX512), Some(vec![0, 64, 0]));
        assert_eq!(split(&conv(128, 896), 2, &AVX512), Some(vec![0, 0, 448]));
        // A length that does not split into whole vectors splits the filters, else nothing.
        assert_eq!(split(&conv(54, 200), 2, &AVX512), Some(vec![0, 27, 0]));
        assert_eq!(split(&conv(53, 200), 2, &AVX512), None);
        // The odd conv stays serial, but its input is copied into the padded buffer in two
        // tasks of 32 channels.
        let s = script(&[dense(64, 1024), conv(53, 200)], 2, &AVX512);
        assert_eq!(s.matches("tile_using_forall").count(), 4, "{s}");
        assert_eq!(s.matches("tile_sizes [0, 32, 0, 0]").count(), 1, "{s}");
        // Element-wise ops marked `nnopt.spread = axis` split into `threads` tasks along it; on
        // one thread they are left alone.
        assert!(s.contains("{nnopt.spread = 1 : i64}"), "{s}");
        assert!(s.contains("num_threads [0, 2]"), "{s}");
        assert!(s.contains("num_threads [2]"), "{s}");
        assert!(!script(&[dense(64, 1024)], 1, &AVX512).contains("nnopt.spread"));
    }
}
