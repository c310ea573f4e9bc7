//! Pruning across branches is exact and complete: proptest generates SqueezeNet fire modules
//! (a squeeze conv, two expand convs whose outputs are concatenated, a conv reading the concat),
//! grouped convs (equal dead filters per group, and whole dead groups) and two linear branches
//! meeting at an add, with planted dead filters, prunes them, and checks that the interpreter
//! gives the same outputs before and after and that every dead filter's row and its column in
//! the next layer are gone.

#[path = "common/nnir.rs"]
mod nnir;
use nnir::{assert_same_outputs, f32_in, list, load, nested4, nonzero, params, prune};

use ndarray::ArrayD;
use nnopt::ir::{Module, OpKind};
use proptest::prelude::*;

/// `%name = nn.conv2d %input` with the weights `w` (`[out, inp, k, k]`), the bias `b`, zero
/// padding `pad` and `groups`, giving `hw`×`hw` outputs.
fn conv(
    name: &str,
    input: &str,
    w: &[f32],
    b: &[f32],
    shape: [usize; 3],
    (pad, groups, hw): (u64, usize, usize),
) -> String {
    let [out, inp, k] = shape;
    format!(
        "  %{name}_w = nn.constant dense<{}> : tensor<{out}x{inp}x{k}x{k}xf32>\n  %{name}_b = nn.constant dense<{}> : tensor<{out}xf32>\n  %{name} = nn.conv2d {input}, %{name}_w, %{name}_b {{pads = [{pad}, {pad}, {pad}, {pad}], groups = {groups}}} : tensor<1x{out}x{hw}x{hw}xf32>\n",
        nested4(w, out, inp, k),
        list(b)
    )
}

/// Weights of `shape` from `values`, with the rows `dead` (filters) zero.
fn weights(values: &[f32], shape: [usize; 3], dead: &[bool]) -> Vec<f32> {
    let [out, inp, k] = shape;
    let row = inp * k * k;
    (0..out * row)
        .map(|i| {
            if dead[i / row] {
                0.0
            } else {
                values[i % values.len()]
            }
        })
        .collect()
}

/// The inputs of the conv or linear named `name` after pruning: its weight's second dimension.
fn weight_inputs(m: &Module, name: &str) -> usize {
    let f = &m.funcs[0];
    let op = f
        .ops()
        .find(|&o| {
            f.op(o)
                .result()
                .is_some_and(|r| f.value(r).name.as_deref() == Some(name))
        })
        .unwrap_or_else(|| panic!("no %{name}"));
    let w = f.op(op).operands()[1];
    f.ty(w).dim(1).as_static().unwrap() as usize
}

fn scatters(m: &Module) -> usize {
    let f = &m.funcs[0];
    f.ops()
        .filter(|&o| matches!(f.kind(o), OpKind::Scatter { .. }))
        .count()
}

/// A fire module: `%x` → squeeze 1x1 → relu → expand 1x1 and expand 3x3 (zero-padded) → relu
/// → concat → max pool (optional) → 1x1 head.
#[derive(Debug, Clone)]
struct Fire {
    c0: usize,
    squeeze: usize,
    e1: usize,
    e3: usize,
    /// Planted dead filters of the squeeze and expand convs (filter 0 always lives).
    dead_sq: Vec<bool>,
    dead1: Vec<bool>,
    dead3: Vec<bool>,
    bias: Vec<f32>,
    values: Vec<f32>,
    pool: bool,
}

fn fire() -> impl Strategy<Value = Fire> {
    (
        1usize..4,
        1usize..4,
        1usize..6,
        1usize..6,
        prop::collection::vec(any::<bool>(), 6),
        prop::collection::vec(any::<bool>(), 6),
        prop::collection::vec(any::<bool>(), 4),
        prop::collection::vec(f32_in(-1.0, 1.0), 13),
        prop::collection::vec(nonzero(), 29),
        any::<bool>(),
    )
        .prop_map(|(c0, squeeze, e1, e3, d1, d3, dsq, bias, values, pool)| {
            let dead = |d: &[bool], n: usize| (0..n).map(|j| j > 0 && d[j]).collect();
            Fire {
                c0,
                squeeze,
                e1,
                e3,
                dead_sq: dead(&dsq, squeeze),
                dead1: dead(&d1, e1),
                dead3: dead(&d3, e3),
                bias,
                values,
                pool,
            }
        })
}

const HW: usize = 4;
const HEAD: usize = 3;

fn fire_text(s: &Fire) -> String {
    let b = |n: usize, o: usize| -> Vec<f32> {
        (0..n).map(|j| s.bias[(j + o) % s.bias.len()]).collect()
    };
    let (sq, e) = (s.squeeze, s.e1 + s.e3);
    let mut t = format!(
        "func @fire(%x: tensor<1x{}x{HW}x{HW}xf32>) -> (tensor<1x{HEAD}x{o}x{o}xf32>) {{\n",
        s.c0,
        o = if s.pool { HW / 2 } else { HW }
    );
    let live = vec![false; sq.max(HEAD)];
    t += &conv(
        "sq",
        "%x",
        &weights(&s.values, [sq, s.c0, 1], &s.dead_sq),
        &b(sq, 0),
        [sq, s.c0, 1],
        (0, 1, HW),
    );
    t += &format!("  %sr = nn.relu %sq : tensor<1x{sq}x{HW}x{HW}xf32>\n");
    t += &conv(
        "e1",
        "%sr",
        &weights(&s.values[3..], [s.e1, sq, 1], &s.dead1),
        &b(s.e1, 3),
        [s.e1, sq, 1],
        (0, 1, HW),
    );
    t += &conv(
        "e3",
        "%sr",
        &weights(&s.values[7..], [s.e3, sq, 3], &s.dead3),
        &b(s.e3, 7),
        [s.e3, sq, 3],
        (1, 1, HW),
    );
    t += &format!("  %r1 = nn.relu %e1 : tensor<1x{}x{HW}x{HW}xf32>\n", s.e1);
    t += &format!("  %r3 = nn.relu %e3 : tensor<1x{}x{HW}x{HW}xf32>\n", s.e3);
    t += &format!("  %cat = nn.concat %r1, %r3 {{axis = 1}} : tensor<1x{e}x{HW}x{HW}xf32>\n");
    let (mut cur, mut hw) = ("%cat", HW);
    if s.pool {
        hw = HW / 2;
        t += &format!("  %p = nn.max_pool2d %cat {{kernel = [2, 2], strides = [2, 2], pads = [0, 0, 0, 0], ceil_mode = false}} : tensor<1x{e}x{hw}x{hw}xf32>\n");
        cur = "%p";
    }
    t += &conv(
        "head",
        cur,
        &weights(&s.values[11..], [HEAD, e, 1], &live),
        &b(HEAD, 11),
        [HEAD, e, 1],
        (0, 1, hw),
    );
    t + &format!("  return %head : tensor<1x{HEAD}x{hw}x{hw}xf32>\n}}\n")
}

/// A `[1, c, HW, HW]` input that cycles through `seed`.
fn input(c: usize, seed: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_fn(vec![1, c, HW, HW], |i| {
        seed[(i[1] * 17 + i[2] * 5 + i[3]) % seed.len()]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The dead expand filters are constants (relu of their bias): they go, the scatters that
    /// restore them at the concat sink below it (past the border map a dead squeeze filter may
    /// add, and the pool) and fold into the head, which keeps one column per live filter, and
    /// no scatter is left.
    #[test]
    fn fire_modules_prune_to_the_live_filters(s in fire(), seed in prop::collection::vec(f32_in(-2.0, 2.0), 37)) {
        let text = fire_text(&s);
        let before = load(&text);
        let after = prune(&before);
        let x = input(s.c0, &seed);
        assert_same_outputs(&before, &after, &[x]);
        let live = |d: &[bool]| d.iter().filter(|&&d| !d).count();
        prop_assert_eq!(weight_inputs(&after, "head"), live(&s.dead1) + live(&s.dead3), "{}", text);
        prop_assert_eq!(scatters(&after), 0, "{}", text);
        // Without dead squeeze filters (whose constants may need a border map in the padded
        // expand conv, or stay): the rows and biases of the live filters, and the head's
        // columns for them.
        if s.dead_sq.iter().all(|&d| !d) {
            let (l1, l3, sq) = (live(&s.dead1), live(&s.dead3), s.squeeze);
            let expected = sq * s.c0 + sq + l1 * sq + l1 + l3 * sq * 9 + l3 + HEAD * (l1 + l3) + HEAD;
            prop_assert_eq!(params(&after), expected, "{}", text);
        }
    }
}

/// `%x` → conv P → relu → grouped conv G → relu → 1x1 head, with the same number of dead
/// filters planted in every group of P's output (as G's input groups see them) and of G.
#[derive(Debug, Clone)]
struct Grouped {
    c0: usize,
    groups: usize,
    /// Input channels and filters per group of G.
    per_in: usize,
    per_out: usize,
    /// Dead filters per group (never filter 0 of a group) and where each group puts them.
    dead_in: usize,
    dead_out: usize,
    shift: Vec<usize>,
    kernel: usize,
    pad: u64,
    bias: Vec<f32>,
    values: Vec<f32>,
}

fn grouped() -> impl Strategy<Value = Grouped> {
    (1usize..3, 2usize..4, 2usize..4, 2usize..4)
        .prop_flat_map(|(c0, groups, per_in, per_out)| {
            (
                Just((c0, groups, per_in, per_out)),
                0..per_in,
                0..per_out,
                prop::collection::vec(0usize..8, 4),
                prop::sample::select(vec![1usize, 3]),
                0u64..2,
                prop::collection::vec(f32_in(-1.0, 1.0), 11),
                prop::collection::vec(nonzero(), 31),
            )
        })
        .prop_map(
            |(
                (c0, groups, per_in, per_out),
                dead_in,
                dead_out,
                shift,
                kernel,
                pad,
                bias,
                values,
            )| Grouped {
                c0,
                groups,
                per_in,
                per_out,
                dead_in,
                dead_out,
                shift,
                kernel,
                pad,
                bias,
                values,
            },
        )
}

/// Which of `groups·block` filters are dead: `dead` per group, at positions 1.. shifted by
/// the group's `shift` (position 0 always lives).
fn dead_in_groups(groups: usize, block: usize, dead: usize, shift: &[usize]) -> Vec<bool> {
    (0..groups * block)
        .map(|j| {
            let (r, i) = (j / block, j % block);
            i > 0 && (i - 1 + shift[r % shift.len()]) % (block - 1) < dead
        })
        .collect()
}

/// The text of `s`, with every channel of P's groups `whole` (as G reads them) dead too, and
/// the biases of P's dead filters made `<= 0` when `negative` (relu makes them 0).
fn grouped_text(s: &Grouped, whole: &[bool], negative: bool) -> String {
    let b = |n: usize, o: usize| -> Vec<f32> {
        (0..n).map(|j| s.bias[(j + o) % s.bias.len()]).collect()
    };
    let (c, out, k) = (s.groups * s.per_in, s.groups * s.per_out, s.kernel);
    let hw = HW + 2 * s.pad as usize + 1 - k;
    let dead_p: Vec<bool> = dead_in_groups(s.groups, s.per_in, s.dead_in, &s.shift)
        .into_iter()
        .enumerate()
        .map(|(j, d)| d || whole.get(j / s.per_in).copied().unwrap_or(false))
        .collect();
    let bias_p: Vec<f32> = b(c, 0)
        .into_iter()
        .zip(&dead_p)
        .map(|(v, &d)| if d && negative { -v.abs() } else { v })
        .collect();
    let dead_g = dead_in_groups(s.groups, s.per_out, s.dead_out, &s.shift[1..]);
    let mut t = format!(
        "func @grouped(%x: tensor<1x{}x{HW}x{HW}xf32>) -> (tensor<1x{HEAD}x{hw}x{hw}xf32>) {{\n",
        s.c0
    );
    t += &conv(
        "p",
        "%x",
        &weights(&s.values, [c, s.c0, 1], &dead_p),
        &bias_p,
        [c, s.c0, 1],
        (0, 1, HW),
    );
    t += &format!("  %pr = nn.relu %p : tensor<1x{c}x{HW}x{HW}xf32>\n");
    t += &conv(
        "g",
        "%pr",
        &weights(&s.values[5..], [out, s.per_in, k], &dead_g),
        &b(out, 3),
        [out, s.per_in, k],
        (s.pad, s.groups, hw),
    );
    t += &format!("  %gr = nn.relu %g : tensor<1x{out}x{hw}x{hw}xf32>\n");
    let live = vec![false; HEAD];
    t += &conv(
        "head",
        "%gr",
        &weights(&s.values[17..], [HEAD, out, 1], &live),
        &b(HEAD, 7),
        [HEAD, out, 1],
        (0, 1, hw),
    );
    t + &format!("  return %head : tensor<1x{HEAD}x{hw}x{hw}xf32>\n}}\n")
}

/// The filters of the conv named `name` after pruning.
fn conv_filters(m: &Module, name: &str) -> usize {
    let f = &m.funcs[0];
    let op = f
        .ops()
        .find(|&o| {
            f.op(o)
                .result()
                .is_some_and(|r| f.value(r).name.as_deref() == Some(name))
        })
        .unwrap_or_else(|| panic!("no %{name}"));
    f.ty(f.op(op).result().unwrap()).dim(1).as_static().unwrap() as usize
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Equal numbers of dead filters per group go from P (G loses those input columns in every
    /// group) and from G (the head loses their columns); `groups` stays. A zero-padded G sees
    /// P's constants only inside the image and takes no border map, so P keeps them when they
    /// are not 0.
    #[test]
    fn grouped_convs_prune_equal_groups(s in grouped(), seed in prop::collection::vec(f32_in(-2.0, 2.0), 37)) {
        let text = grouped_text(&s, &[], false);
        let before = load(&text);
        let after = prune(&before);
        let x = input(s.c0, &seed);
        assert_same_outputs(&before, &after, &[x]);
        prop_assert_eq!(conv_filters(&after, "g"), s.groups * (s.per_out - s.dead_out), "{}", text);
        prop_assert_eq!(weight_inputs(&after, "head"), s.groups * (s.per_out - s.dead_out), "{}", text);
        if s.pad == 0 {
            prop_assert_eq!(weight_inputs(&after, "g"), s.per_in - s.dead_in, "{}", text);
        }
    }
}

fn count(m: &Module, is: impl Fn(&OpKind) -> bool) -> usize {
    let f = &m.funcs[0];
    f.ops().filter(|&o| is(f.kind(o))).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whole groups of G whose input channels are all dead output constants (when G is
    /// unpadded, or the constants are 0): they go, `groups` drops by their number, the head
    /// folds their constants, and P loses the channels they read (through the gather the
    /// removal puts in front of G, which then goes as the identity). Exact in every case; the
    /// counts are checked where they do not hang on border-map trade-offs (a zero-padded G
    /// seeing non-zero constants: a border map may take some of them, leaving a group that
    /// reads only zeros).
    #[test]
    fn dead_groups_go_whole(
        s in grouped(),
        whole in prop::collection::vec(any::<bool>(), 4),
        negative in any::<bool>(),
        seed in prop::collection::vec(f32_in(-2.0, 2.0), 37),
    ) {
        // Group 0 always lives.
        let whole: Vec<bool> = (0..s.groups).map(|r| r > 0 && whole[r]).collect();
        let text = grouped_text(&s, &whole, negative);
        let before = load(&text);
        let after = prune(&before);
        assert_same_outputs(&before, &after, &[input(s.c0, &seed)]);
        prop_assert_eq!(count(&after, |k| matches!(k, OpKind::Gather { .. })), 0, "{}", text);
        if s.pad == 0 || negative {
            let gone = whole.iter().filter(|&&d| d).count();
            let live_out = s.per_out - s.dead_out;
            prop_assert_eq!(conv_filters(&after, "g"), (s.groups - gone) * live_out, "{}", text);
            prop_assert_eq!(weight_inputs(&after, "head"), (s.groups - gone) * live_out, "{}", text);
            prop_assert_eq!(conv_filters(&after, "p"), (s.groups - gone) * (s.per_in - s.dead_in), "{}", text);
            prop_assert_eq!(count(&after, |k| matches!(k, OpKind::Scatter { .. })), 0, "{}", text);
        }
    }
}

/// `%x` → two linear branches of `n` neurons (the dead ones have zero weights: constant
/// biases) → add → relu → linear head of `HEAD`.
fn branches_text(n: usize, c0: usize, dead: [&[bool]; 2], bias: &[f32], values: &[f32]) -> String {
    let b = |o: usize| -> Vec<f32> { (0..n).map(|j| bias[(j + o) % bias.len()]).collect() };
    let w = |o: usize, dead: &[bool]| -> Vec<f32> {
        (0..n * c0)
            .map(|i| {
                if dead[i / c0] {
                    0.0
                } else {
                    values[(i + o) % values.len()]
                }
            })
            .collect()
    };
    let matrix = |w: &[f32], cols: usize| -> String {
        let rows: Vec<String> = w.chunks(cols).map(list).collect();
        format!("[{}]", rows.join(", "))
    };
    let mut t = format!("func @branches(%x: tensor<2x{c0}xf32>) -> (tensor<2x{HEAD}xf32>) {{\n");
    for (k, d) in dead.iter().enumerate() {
        t += &format!(
            "  %p{k}_w = nn.constant dense<{}> : tensor<{n}x{c0}xf32>\n  %p{k}_b = nn.constant dense<{}> : tensor<{n}xf32>\n  %p{k} = nn.linear %x, %p{k}_w, %p{k}_b : tensor<2x{n}xf32>\n",
            matrix(&w(7 * k, d), c0),
            list(&b(5 * k)),
        );
    }
    t += &format!(
        "  %s = nn.add %p0, %p1 : tensor<2x{n}xf32>\n  %r = nn.relu %s : tensor<2x{n}xf32>\n"
    );
    t += &format!(
        "  %hw = nn.constant dense<{}> : tensor<{HEAD}x{n}xf32>\n  %hb = nn.constant dense<{}> : tensor<{HEAD}xf32>\n  %y = nn.linear %r, %hw, %hb : tensor<2x{HEAD}xf32>\n  return %y : tensor<2x{HEAD}xf32>\n}}\n",
        matrix(&(0..HEAD * n).map(|i| values[(i + 3) % values.len()]).collect::<Vec<_>>(), n),
        list(&[0.25; HEAD]),
    );
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The two branches' dead neurons go, restored at the add by scatters with their constant
    /// biases. Where both scatters drop a position the sum is constant: the scatters move onto
    /// the union of what they keep (`sink-scatter-union`) and the outer one folds into the head,
    /// which keeps one column per position live in either branch.
    #[test]
    fn unlike_scatters_fold_what_both_drop(
        n in 2usize..7,
        c0 in 1usize..4,
        d0 in prop::collection::vec(any::<bool>(), 6),
        d1 in prop::collection::vec(any::<bool>(), 6),
        bias in prop::collection::vec(f32_in(-1.0, 1.0), 13),
        values in prop::collection::vec(nonzero(), 29),
        seed in prop::collection::vec(f32_in(-2.0, 2.0), 37),
    ) {
        // Neuron 0 of each branch lives.
        let dead = |d: &[bool]| -> Vec<bool> { (0..n).map(|j| j > 0 && d[j]).collect() };
        let (d0, d1) = (dead(&d0), dead(&d1));
        let text = branches_text(n, c0, [&d0, &d1], &bias, &values);
        let before = load(&text);
        let after = prune(&before);
        let x = ArrayD::from_shape_fn(vec![2, c0], |i| seed[(i[0] * 7 + i[1]) % seed.len()]);
        assert_same_outputs(&before, &after, &[x]);
        let both = d0.iter().zip(&d1).filter(|(a, b)| **a && **b).count();
        prop_assert_eq!(weight_inputs(&after, "y"), n - both, "{}", text);
    }
}
