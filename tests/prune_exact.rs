//! Pruning is exact: proptest generates random networks with planted fan-in-dead (zero rows,
//! random biases of either sign) and fan-out-dead (zero columns) neurons, prunes them, and
//! checks that the reference interpreter gives the same outputs before and after on random
//! inputs, that the result verifies, and (for MLPs) that the parameter count equals an
//! independent computation of which neurons must go.

#[cfg(feature = "mlir")]
#[path = "common/jit.rs"]
mod jit;
#[path = "common/nnir.rs"]
mod nnir;
#[cfg(feature = "mlir")]
use jit::assert_jit_matches_interp;
use nnir::{assert_same_outputs, f32_in, list, load, nested4, nonzero, params, prune, prune_with};

use ndarray::ArrayD;
use nnopt::ir::{Module, OpKind};
use nnopt::passes;
use proptest::prelude::*;

/// `rows` as a nested NNIR literal.
fn matrix(rows: &[Vec<f32>]) -> String {
    let items: Vec<String> = rows.iter().map(|r| list(r)).collect();
    format!("[{}]", items.join(", "))
}

/// Activation mnemonics and their attribute dictionaries.
const ACTIVATIONS: &[(&str, &str)] = &[
    ("nn.relu", ""),
    ("nn.sigmoid", ""),
    ("nn.tanh", ""),
    ("nn.gelu", ""),
    ("nn.silu", ""),
    ("nn.hardswish", ""),
    ("nn.leaky_relu", " {alpha = 0.1}"),
    ("nn.clip", " {min = 0.0, max = 6.0}"),
];

#[derive(Debug, Clone)]
struct Mlp {
    widths: Vec<usize>,
    layers: Vec<(Vec<Vec<f32>>, Vec<f32>)>,
    acts: Vec<usize>,
}

fn mlp() -> impl Strategy<Value = Mlp> {
    (
        prop::collection::vec(2usize..6, 3..6),
        prop::collection::vec(0..ACTIVATIONS.len(), 5),
    )
        .prop_flat_map(|(widths, acts)| {
            let layers: Vec<_> = widths
                .windows(2)
                .map(|w| {
                    let (inp, out) = (w[0], w[1]);
                    (
                        prop::collection::vec(prop::collection::vec(nonzero(), inp), out),
                        prop::collection::vec(f32_in(-1.0, 1.0), out),
                        // Planted: zero rows (fan-in dead), never row 0 so a path stays live.
                        prop::collection::vec(any::<bool>(), out),
                        // Planted: zero columns (fan-out dead in the previous layer).
                        prop::collection::vec(any::<bool>(), inp),
                    )
                })
                .collect();
            (Just(widths), layers, Just(acts))
        })
        .prop_map(|(widths, layers, acts)| {
            let mut out = Vec::new();
            for (l, (mut w, b, dead_rows, dead_cols)) in layers.into_iter().enumerate() {
                for (j, row) in w.iter_mut().enumerate() {
                    if j > 0 && dead_rows[j] {
                        row.iter_mut().for_each(|x| *x = 0.0);
                    }
                    for (i, x) in row.iter_mut().enumerate() {
                        // Column 0 stays live; the first layer reads the real input.
                        if i > 0 && l > 0 && dead_cols[i] {
                            *x = 0.0;
                        }
                    }
                }
                out.push((w, b));
            }
            Mlp {
                widths,
                layers: out,
                acts,
            }
        })
}

fn mlp_text(m: &Mlp) -> String {
    let mut s = format!(
        "func @mlp(%x: tensor<?x{}xf32>) -> (tensor<?x{}xf32>) {{\n",
        m.widths[0],
        m.widths.last().unwrap()
    );
    let mut cur = "%x".to_string();
    for (l, (w, b)) in m.layers.iter().enumerate() {
        let (inp, out) = (m.widths[l], m.widths[l + 1]);
        s += &format!(
            "  %w{l} = nn.constant dense<{}> : tensor<{out}x{inp}xf32>\n",
            matrix(w)
        );
        s += &format!(
            "  %b{l} = nn.constant dense<{}> : tensor<{out}xf32>\n",
            list(b)
        );
        s += &format!("  %h{l} = nn.linear {cur}, %w{l}, %b{l} : tensor<?x{out}xf32>\n");
        cur = format!("%h{l}");
        if l + 1 < m.layers.len() {
            let (act, attrs) = ACTIVATIONS[m.acts[l] % ACTIVATIONS.len()];
            s += &format!("  %a{l} = {act} {cur}{attrs} : tensor<?x{out}xf32>\n");
            cur = format!("%a{l}");
        }
    }
    s += &format!(
        "  return {cur} : tensor<?x{}xf32>\n}}\n",
        m.widths.last().unwrap()
    );
    s
}

/// Which neurons must stay, derived from the weights alone: a neuron is constant when every
/// non-zero weight of its row reads a constant input; it is ignored when every live neuron of
/// the next layer has a zero weight for it (a fixpoint, since ignoring cascades backwards).
fn expected_params(m: &Mlp) -> usize {
    let n = m.layers.len();
    let mut constant: Vec<Vec<bool>> = Vec::new();
    let mut prev: Vec<bool> = vec![false; m.widths[0]];
    for (w, _) in &m.layers {
        let c: Vec<bool> = w
            .iter()
            .map(|row| row.iter().zip(&prev).all(|(x, &pc)| *x == 0.0 || pc))
            .collect();
        prev = c.clone();
        constant.push(c);
    }
    let mut alive: Vec<Vec<bool>> = constant
        .iter()
        .map(|c| c.iter().map(|&x| !x).collect())
        .collect();
    loop {
        let mut changed = false;
        for l in 0..n - 1 {
            let next = &m.layers[l + 1].0;
            for j in 0..m.widths[l + 1] {
                let read = (0..m.widths[l + 2]).any(|k| alive[l + 1][k] && next[k][j] != 0.0);
                if alive[l][j] && !read {
                    alive[l][j] = false;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut total = 0;
    let mut inputs = m.widths[0];
    for a in &alive {
        let kept = a.iter().filter(|&&x| x).count();
        total += kept * inputs + kept;
        inputs = kept;
    }
    total
}

/// Every weighted layer of `after` kept its width from `before` or has a multiple of
/// `round_to` neurons.
fn assert_aligned(before: &Module, after: &Module, round_to: usize) {
    let widths = |m: &Module| -> Vec<(nnopt::ir::OpId, u64)> {
        let f = &m.funcs[0];
        f.ops()
            .filter(|&op| matches!(f.kind(op), OpKind::Linear | OpKind::Conv2d { .. }))
            .map(|op| (op, f.ty(f.op(op).operands()[1]).dim(0).as_static().unwrap()))
            .collect()
    };
    let was = widths(before);
    for (op, n) in widths(after) {
        let old = was.iter().find(|w| w.0 == op).map(|w| w.1);
        assert!(
            Some(n) == old || n % round_to as u64 == 0,
            "a layer went from {old:?} to {n} neurons, not a multiple of {round_to}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn mlps_prune_exactly(m in mlp(), batch in 1usize..4, seed in prop::collection::vec(f32_in(-2.0, 2.0), 64)) {
        let text = mlp_text(&m);
        let before = load(&text);
        let after = prune(&before);
        let x = ArrayD::from_shape_fn(vec![batch, m.widths[0]], |i| seed[(i[0] * 7 + i[1]) % seed.len()]);
        assert_same_outputs(&before, &after, &[x]);
        prop_assert_eq!(params(&after), expected_params(&m), "{}", text);
    }

    #[test]
    fn aligned_mlps_prune_exactly(m in mlp(), round_to in 2usize..5, seed in prop::collection::vec(f32_in(-2.0, 2.0), 64)) {
        let text = mlp_text(&m);
        let before = load(&text);
        let after = prune_with(&before, &passes::prune_pipeline(&format!("round-to={round_to}")));
        let x = ArrayD::from_shape_fn(vec![2, m.widths[0]], |i| seed[(i[0] * 7 + i[1]) % seed.len()]);
        assert_same_outputs(&before, &after, &[x]);
        // Alignment only keeps neurons that could go: never fewer than unaligned pruning.
        prop_assert!(params(&after) >= expected_params(&m), "{}", text);
        prop_assert!(params(&after) <= params(&before), "{}", text);
        assert_aligned(&before, &after, round_to);
    }
}

/// One conv layer of a generated network.
#[derive(Debug, Clone)]
struct ConvSpec {
    out: usize,
    kernel: u64,
    pad: u64,
    stride: u64,
    dilation: u64,
    depthwise: bool,
    residual: bool,
    batch_norm: bool,
    act: usize,
    dead_rows: Vec<bool>,
    dead_cols: Vec<bool>,
    bias: Vec<f32>,
    weights: Vec<f32>,
}

fn conv_spec() -> impl Strategy<Value = ConvSpec> {
    (
        2usize..5,
        prop_oneof![Just(1u64), Just(3)],
        0u64..2,
        1u64..3,
        1u64..3,
        any::<bool>(),
        (any::<bool>(), any::<bool>()),
        0..ACTIVATIONS.len(),
        prop::collection::vec(any::<bool>(), 8),
        prop::collection::vec(any::<bool>(), 8),
        prop::collection::vec(f32_in(-1.0, 1.0), 8),
        prop::collection::vec(nonzero(), 8 * 8 * 9),
    )
        .prop_map(
            |(
                out,
                kernel,
                pad,
                stride,
                dilation,
                depthwise,
                (residual, batch_norm),
                act,
                dr,
                dc,
                bias,
                weights,
            )| {
                ConvSpec {
                    out,
                    kernel,
                    pad,
                    stride,
                    dilation,
                    depthwise,
                    residual,
                    batch_norm,
                    act,
                    dead_rows: dr,
                    dead_cols: dc,
                    bias,
                    weights,
                }
            },
        )
}

/// A conv network: conv blocks (zero-padded, strided, dilated, depthwise, residual) with
/// planted dead filters and input slices, then global pooling, flatten, a linear head, and
/// optionally a softmax barrier. Returns the text and the input shape.
fn conv_net_text(
    specs: &[ConvSpec],
    c0: usize,
    hw: u64,
    classes: usize,
    softmax: bool,
    flat_head: bool,
) -> (String, Vec<usize>) {
    let mut s = String::new();
    let mut body = String::new();
    let (mut c, mut h) = (c0, hw);
    let mut cur = "%x".to_string();
    let mut k = 0;
    for (l, sp) in specs.iter().enumerate() {
        let span = sp.dilation * (sp.kernel - 1) + 1;
        if h + 2 * sp.pad < span {
            continue;
        }
        let block_in = cur.clone();
        let (out, groups, per_in) = if sp.depthwise {
            (c, c, 1)
        } else {
            (sp.out, 1, c)
        };
        let oh = (h + 2 * sp.pad - span) / sp.stride + 1;
        let mut w = Vec::new();
        for j in 0..out {
            for i in 0..per_in {
                for t in 0..(sp.kernel * sp.kernel) as usize {
                    let dead =
                        (j > 0 && sp.dead_rows[j % 8]) || (i > 0 && l > 0 && sp.dead_cols[i % 8]);
                    w.push(if dead {
                        0.0
                    } else {
                        sp.weights[(k + t) % sp.weights.len()]
                    });
                    k += 1;
                }
            }
        }
        let kk = sp.kernel;
        body += &format!(
            "  %w{l} = nn.constant dense<{}> : tensor<{out}x{per_in}x{kk}x{kk}xf32>\n",
            nested4(&w, out, per_in, kk as usize)
        );
        body += &format!(
            "  %b{l} = nn.constant dense<{}> : tensor<{out}xf32>\n",
            list(
                &sp.bias[..out.min(8)]
                    .iter()
                    .cycle()
                    .take(out)
                    .copied()
                    .collect::<Vec<_>>()
            )
        );
        let p = sp.pad;
        body += &format!(
            "  %c{l} = nn.conv2d {cur}, %w{l}, %b{l} {{strides = [{st}, {st}], pads = [{p}, {p}, {p}, {p}], dilations = [{d}, {d}], groups = {groups}}} : tensor<1x{out}x{oh}x{oh}xf32>\n",
            st = sp.stride,
            d = sp.dilation
        );
        let mut pre = format!("%c{l}");
        if sp.batch_norm {
            let p = |k: usize, lo: f32| -> String {
                let v: Vec<f32> = (0..out)
                    .map(|j| lo + sp.weights[(j * 5 + k) % sp.weights.len()].abs())
                    .collect();
                list(&v)
            };
            for (k, name) in ["scale", "shift", "mean", "var"].iter().enumerate() {
                let lo = if *name == "var" { 0.1 } else { -0.5 };
                body += &format!(
                    "  %bn{name}{l} = nn.constant dense<{}> : tensor<{out}xf32>\n",
                    p(k, lo)
                );
            }
            body += &format!("  %bn{l} = nn.batch_norm %c{l}, %bnscale{l}, %bnshift{l}, %bnmean{l}, %bnvar{l} : tensor<1x{out}x{oh}x{oh}xf32>\n");
            pre = format!("%bn{l}");
        }
        let (act, attrs) = ACTIVATIONS[sp.act];
        body += &format!("  %a{l} = {act} {pre}{attrs} : tensor<1x{out}x{oh}x{oh}xf32>\n");
        cur = format!("%a{l}");
        if sp.residual && out == c && oh == h {
            body +=
                &format!("  %r{l} = nn.add {cur}, {block_in} : tensor<1x{out}x{oh}x{oh}xf32>\n");
            cur = format!("%r{l}");
        }
        c = out;
        h = oh;
        body += &format!("  %keep{l} = nn.identity {cur} : tensor<1x{c}x{h}x{h}xf32>\n");
        cur = format!("%keep{l}");
    }
    // The head reads either the pooled channels or, flattened, H·W features per channel.
    let per_channel = if flat_head { (h * h) as usize } else { 1 };
    if flat_head {
        body += &format!(
            "  %f = nn.flatten {cur} {{axis = 1}} : tensor<1x{}xf32>\n",
            c * per_channel
        );
    } else {
        body += &format!("  %g = nn.global_avg_pool {cur} : tensor<1x{c}x1x1xf32>\n");
        body += &format!("  %f = nn.flatten %g {{axis = 1}} : tensor<1x{c}xf32>\n");
    }
    let features = c * per_channel;
    let head: Vec<Vec<f32>> = (0..classes)
        .map(|o| {
            (0..features)
                .map(|i| {
                    // Whole channels are ignored by some outputs, some by all (fan-out dead).
                    let ch = i / per_channel;
                    if ch > 0 && ((o + ch) % 3 == 0 || ch % 4 == 3) {
                        0.0
                    } else {
                        0.25 + (o * features + i) as f32 * 0.01
                    }
                })
                .collect()
        })
        .collect();
    body += &format!(
        "  %hw = nn.constant dense<{}> : tensor<{classes}x{features}xf32>\n",
        matrix(&head)
    );
    body += &format!("  %y = nn.linear %f, %hw : tensor<1x{classes}xf32>\n");
    let mut result = "%y".to_string();
    if softmax {
        body += &format!("  %sm = nn.softmax %y {{axis = -1}} : tensor<1x{classes}xf32>\n");
        result = "%sm".into();
    }
    s += &format!("func @net(%x: tensor<1x{c0}x{hw}x{hw}xf32>) -> (tensor<1x{classes}xf32>) {{\n{body}  return {result} : tensor<1x{classes}xf32>\n}}\n");
    (s, vec![1, c0, hw as usize, hw as usize])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn conv_nets_prune_exactly(
        specs in prop::collection::vec(conv_spec(), 1..4),
        c0 in 1usize..4,
        hw in 3u64..8,
        classes in 2usize..4,
        softmax in any::<bool>(),
        flat_head in any::<bool>(),
        seed in prop::collection::vec(f32_in(-2.0, 2.0), 97),
        residual in prop::sample::select(vec!["scatter", "keep", "auto"]),
        round_to in prop::sample::select(vec![1usize, 2, 4]),
    ) {
        let (text, shape) = conv_net_text(&specs, c0, hw, classes, softmax, flat_head);
        let before = load(&text);
        let pipeline = format!("canonicalize,fold-batch-norm,prune-neurons{{residual={residual} round-to={round_to}}},canonicalize,dce");
        let after = prune_with(&before, &pipeline);
        let x = ArrayD::from_shape_fn(shape, |i| seed[(i[1] * 31 + i[2] * 7 + i[3]) % seed.len()]);
        assert_same_outputs(&before, &after, &[x]);
        prop_assert!(params(&after) <= params(&before));
        assert_aligned(&before, &after, round_to);
    }
}

/// A scatter into a linear or an (optionally padded) 1x1/3x3 conv with random indices and fills.
#[derive(Debug, Clone)]
struct ScatterSpec {
    size: usize,
    keep: Vec<usize>,
    fill: Vec<f32>,
    conv: Option<(usize, u64)>,
    w: Vec<f32>,
    b: Option<Vec<f32>>,
    /// An activation between the scatter and the consumer (0: none, 1: relu, 2: sigmoid).
    act: usize,
}

/// The scatter's fill as the consumer sees it, through `ScatterSpec::act`.
fn seen_fill(s: &ScatterSpec, c: f32) -> f32 {
    match s.act {
        0 => c,
        1 => c.max(0.0),
        _ => 1.0 / (1.0 + (-c).exp()),
    }
}

fn scatter_spec() -> impl Strategy<Value = ScatterSpec> {
    (
        2usize..6,
        prop::option::of((prop::sample::select(vec![1usize, 3]), 0u64..2)),
    )
        .prop_flat_map(|(size, conv)| {
            let k = conv.map_or(1, |c| c.0 * c.0);
            (
                Just(size),
                prop::sample::subsequence((0..size).collect::<Vec<_>>(), 1..size).prop_shuffle(),
                prop::collection::vec(prop_oneof![Just(0.0f32), f32_in(-2.0, 2.0)], size),
                Just(conv),
                prop::collection::vec(f32_in(-1.0, 1.0), 3 * size * k),
                prop::option::of(prop::collection::vec(f32_in(-1.0, 1.0), 3)),
                0usize..3,
            )
        })
        .prop_map(|(size, keep, fill, conv, w, b, act)| ScatterSpec {
            size,
            keep,
            fill,
            conv,
            w,
            b,
            act,
        })
}

fn scatter_text(s: &ScatterSpec) -> String {
    let n = s.keep.len();
    let idx = s
        .keep
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let bias = s.b.as_ref().map_or(String::new(), |b| {
        format!("  %b = nn.constant dense<{}> : tensor<3xf32>\n", list(b))
    });
    let b_operand = if s.b.is_some() { ", %b" } else { "" };
    let act = |ty: &str| match s.act {
        0 => format!("  %a = nn.identity %s : tensor<{ty}xf32>\n"),
        1 => format!("  %a = nn.relu %s : tensor<{ty}xf32>\n"),
        _ => format!("  %a = nn.sigmoid %s : tensor<{ty}xf32>\n"),
    };
    match s.conv {
        None => {
            let rows: Vec<Vec<f32>> = s.w.chunks(s.size).map(<[f32]>::to_vec).collect();
            format!(
                "func @f(%x: tensor<?x{n}xf32>) -> (tensor<?x3xf32>) {{\n  %s = nn.scatter %x {{axis = 1, indices = [{idx}], size = {sz}, fill = {fill}}} : tensor<?x{sz}xf32>\n{act}  %w = nn.constant dense<{w}> : tensor<3x{sz}xf32>\n{bias}  %y = nn.linear %a, %w{b_operand} : tensor<?x3xf32>\n  return %y : tensor<?x3xf32>\n}}\n",
                sz = s.size,
                fill = list(&s.fill),
                w = matrix(&rows),
                act = act(&format!("?x{}", s.size)),
            )
        }
        Some((k, pad)) => {
            let out_hw = 4 + 2 * pad as usize + 1 - k;
            format!(
                "func @f(%x: tensor<1x{n}x4x4xf32>) -> (tensor<1x3x{o}x{o}xf32>) {{\n  %s = nn.scatter %x {{axis = 1, indices = [{idx}], size = {sz}, fill = {fill}}} : tensor<1x{sz}x4x4xf32>\n{act}  %w = nn.constant dense<{w}> : tensor<3x{sz}x{k}x{k}xf32>\n{bias}  %y = nn.conv2d %a, %w{b_operand} {{pads = [{pad}, {pad}, {pad}, {pad}]}} : tensor<1x3x{o}x{o}xf32>\n  return %y : tensor<1x3x{o}x{o}xf32>\n}}\n",
                sz = s.size,
                fill = list(&s.fill),
                w = nested4(&s.w, 3, s.size, k),
                act = act(&format!("1x{}x4x4", s.size)),
                o = out_hw,
            )
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `sink-scatter` (below the optional activation) and `fold-scatter-into-consumer` (both run
    /// by `canonicalize`) keep outputs equal, and remove the scatter unless a zero-padded conv
    /// would have to absorb a non-zero fill.
    #[test]
    fn scatters_fold_into_consumers_exactly(s in scatter_spec(), seed in prop::collection::vec(f32_in(-2.0, 2.0), 96)) {
        let before = load(&scatter_text(&s));
        let mut after = before.clone();
        let pipeline = passes::PassManager::parse("canonicalize,dce", None).unwrap();
        let mut cx = passes::PassContext::default();
        pipeline.run(&mut after, true, &mut cx, |_, _, _| {}).unwrap();
        let n = s.keep.len();
        let shape: Vec<usize> = match s.conv { None => vec![2, n], Some(_) => vec![1, n, 4, 4] };
        let len: usize = shape.iter().product();
        let x = ArrayD::from_shape_vec(shape, seed.iter().cycle().take(len).copied().collect()).unwrap();
        assert_same_outputs(&before, &after, &[x]);
        let dropped_fill =
            (0..s.size).any(|j| !s.keep.contains(&j) && seen_fill(&s, s.fill[j]) != 0.0);
        let blocked = matches!(s.conv, Some((_, p)) if p > 0) && dropped_fill;
        let f = &after.funcs[0];
        let scatters = f.ops().filter(|&o| matches!(f.kind(o), OpKind::Scatter { .. })).count();
        prop_assert_eq!(scatters, usize::from(blocked));
    }
}

#[cfg(feature = "mlir")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn mlps_compile_exactly(m in mlp(), batch in 1usize..4, seed in prop::collection::vec(f32_in(-2.0, 2.0), 64)) {
        let before = load(&mlp_text(&m));
        let after = prune(&before);
        let x = ArrayD::from_shape_fn(vec![batch, m.widths[0]], |i| seed[(i[0] * 7 + i[1]) % seed.len()]);
        assert_jit_matches_interp(&before, std::slice::from_ref(&x));
        assert_jit_matches_interp(&after, &[x]);
    }

    #[test]
    fn conv_nets_compile_exactly(
        specs in prop::collection::vec(conv_spec(), 1..4),
        c0 in 1usize..4,
        hw in 3u64..8,
        classes in 2usize..4,
        softmax in any::<bool>(),
        flat_head in any::<bool>(),
        seed in prop::collection::vec(f32_in(-2.0, 2.0), 97),
    ) {
        let (text, shape) = conv_net_text(&specs, c0, hw, classes, softmax, flat_head);
        let before = load(&text);
        let after = prune(&before);
        let x = ArrayD::from_shape_fn(shape, |i| seed[(i[1] * 31 + i[2] * 7 + i[3]) % seed.len()]);
        assert_jit_matches_interp(&before, std::slice::from_ref(&x));
        assert_jit_matches_interp(&after, &[x]);
    }
}
