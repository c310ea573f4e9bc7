//! Attention heads prune exactly and completely: proptest generates attention blocks as
//! exporters write them (q/k/v projections split into heads, causal mask, softmax, the heads
//! merged into o_proj; rotary embeddings; grouped-query attention with repeat_kv's unsqueeze,
//! expand and reshape; fused q/k/v projections, also on flattened `[S, E]` rows)
//! with planted heads of each kind (o_proj columns zero, value rows zero with a bias, query rows
//! zero), prunes them, and checks that the interpreter (and the compiled code) give the same
//! outputs before and after, and that exactly the removable query and key/value heads went.

#[cfg(feature = "mlir")]
#[path = "common/jit.rs"]
mod jit;
#[path = "common/nnir.rs"]
#[allow(dead_code)]
mod nnir;
use nnir::{assert_same_outputs, f32_in, list, load, nonzero, prune};

use ndarray::ArrayD;
use nnopt::ir::Module;
use proptest::prelude::*;

const E: usize = 6;
const S: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Live,
    /// o_proj's columns of the query head are zero.
    Ignored,
    /// The value rows of the key/value head are zero (every query head of its group is constant).
    ValueZero,
    /// The query rows and bias are zero: uniform attention, not removable.
    QueryZero,
}

#[derive(Clone, Debug)]
struct Block {
    kv: usize,
    group: usize,
    dim: usize,
    /// Per query head.
    kinds: Vec<Kind>,
    /// Rotary embeddings on q and k (rotate_half as two gathers, a negation and a concat).
    rotary: bool,
    /// One projection for q, k and v, its parts gathered (GPT-2's `c_attn`); with `flat`, it
    /// and o_proj run on `[S, E]` rows (GPT-2's Conv1D) between reshapes.
    fused: bool,
    flat: bool,
    weights: Vec<f32>,
}

fn block() -> impl Strategy<Value = Block> {
    (1usize..4, 1usize..3, 1usize..4).prop_flat_map(|(kv, group, dim)| {
        let h = kv * group;
        let kind = prop_oneof![
            3 => Just(Kind::Live),
            1 => Just(Kind::Ignored),
            1 => Just(Kind::ValueZero),
            1 => Just(Kind::QueryZero),
        ];
        let n = 2 * (h * dim * (E + 1) + 2 * kv * dim * (E + 1)) + E * (h * dim + 1);
        (
            prop::collection::vec(kind, h),
            any::<bool>(),
            (any::<bool>(), any::<bool>()),
            prop::collection::vec(nonzero(), n + 2 * S * dim),
        )
            .prop_map(move |(kinds, rotary, (fused, flat), weights)| Block {
                kv,
                group,
                dim,
                kinds,
                rotary: rotary && dim % 2 == 0,
                fused,
                flat: fused && flat,
                weights,
            })
    })
}

fn ty(dims: &[usize]) -> String {
    let d: Vec<String> = dims.iter().map(usize::to_string).collect();
    format!("tensor<{}xf32>", d.join("x"))
}

fn matrix(rows: usize, cols: usize, w: &[f32]) -> String {
    let r: Vec<String> = (0..rows)
        .map(|i| list(&w[i * cols..(i + 1) * cols]))
        .collect();
    format!("[{}]", r.join(", "))
}

fn text(b: &Block) -> String {
    let (kv, d) = (b.kv, b.dim);
    let h = kv * b.group;
    let mut w = b.weights.iter().copied();
    let mut take = |n: usize| -> Vec<f32> { w.by_ref().take(n).collect() };
    let (mut wq, mut bq) = (take(h * d * E), take(h * d));
    let (wk, bk) = (take(kv * d * E), take(kv * d));
    let (mut wv, bv) = (take(kv * d * E), take(kv * d));
    let (mut wo, bo) = (take(E * h * d), take(E));
    let (cos, sin) = (take(S * d), take(S * d));
    for (q, k) in b.kinds.iter().enumerate() {
        match k {
            Kind::Live => {}
            Kind::Ignored => (0..E).for_each(|r| wo[r * h * d + q * d..][..d].fill(0.0)),
            Kind::ValueZero => wv[(q / b.group) * d * E..][..d * E].fill(0.0),
            Kind::QueryZero => {
                wq[q * d * E..][..d * E].fill(0.0);
                bq[q * d..][..d].fill(0.0);
            }
        }
    }
    let mask: Vec<f32> = (0..S * S)
        .map(|i| if i % S > i / S { -1e9 } else { 0.0 })
        .collect();
    let mut s = format!(
        "func @main(%x: {}) -> ({}) {{\n",
        ty(&[1, S, E]),
        ty(&[1, S, E])
    );
    let mut line = |l: String| {
        s += "  ";
        s += &l;
        s += "\n";
    };
    for (name, rows, cols, data) in [
        ("wq", h * d, E, &wq),
        ("wk", kv * d, E, &wk),
        ("wv", kv * d, E, &wv),
        ("wo", E, h * d, &wo),
    ] {
        line(format!(
            "%{name} = nn.constant dense<{}> : {}",
            matrix(rows, cols, data),
            ty(&[rows, cols])
        ));
    }
    for (name, data) in [("bq", &bq), ("bk", &bk), ("bv", &bv), ("bo", &bo)] {
        line(format!(
            "%{name} = nn.constant dense<{}> : {}",
            list(data),
            ty(&[data.len()])
        ));
    }
    line(format!(
        "%mask = nn.constant dense<{}> : {}",
        matrix(S, S, &mask),
        ty(&[S, S])
    ));
    line(format!(
        "%scale = nn.constant dense<{:?}> : tensor<1xf32>",
        1.0 / (d as f32).sqrt()
    ));
    let parts = [("q", h, 0), ("k", kv, h * d), ("v", kv, (h + kv) * d)];
    if b.fused {
        let rows = (h + 2 * kv) * d;
        let w: Vec<f32> = [&wq, &wk, &wv].into_iter().flatten().copied().collect();
        let bias: Vec<f32> = [&bq, &bk, &bv].into_iter().flatten().copied().collect();
        line(format!(
            "%wqkv = nn.constant dense<{}> : {}",
            matrix(rows, E, &w),
            ty(&[rows, E])
        ));
        line(format!(
            "%bqkv = nn.constant dense<{}> : {}",
            list(&bias),
            ty(&[rows])
        ));
        if b.flat {
            line(format!(
                "%x2 = nn.reshape %x {{shape = [{S}, {E}]}} : {}",
                ty(&[S, E])
            ));
            line(format!(
                "%qkv2 = nn.linear %x2, %wqkv, %bqkv : {}",
                ty(&[S, rows])
            ));
            line(format!(
                "%qkv = nn.reshape %qkv2 {{shape = [1, {S}, {rows}]}} : {}",
                ty(&[1, S, rows])
            ));
        } else {
            line(format!(
                "%qkv = nn.linear %x, %wqkv, %bqkv : {}",
                ty(&[1, S, rows])
            ));
        }
    }
    for (n, heads, offset) in parts {
        if b.fused {
            let idx: Vec<String> = (offset..offset + heads * d)
                .map(|i| i.to_string())
                .collect();
            line(format!(
                "%{n} = nn.gather %qkv {{axis = 2, indices = [{}]}} : {}",
                idx.join(", "),
                ty(&[1, S, heads * d])
            ));
        } else {
            line(format!(
                "%{n} = nn.linear %x, %w{n}, %b{n} : {}",
                ty(&[1, S, heads * d])
            ));
        }
        line(format!(
            "%{n}4 = nn.reshape %{n} {{shape = [1, {S}, {heads}, {d}]}} : {}",
            ty(&[1, S, heads, d])
        ));
        line(format!(
            "%{n}h = nn.transpose %{n}4 {{perm = [0, 2, 1, 3]}} : {}",
            ty(&[1, heads, S, d])
        ));
    }
    if b.rotary {
        line(format!(
            "%cos = nn.constant dense<{}> : {}",
            matrix(S, d, &cos),
            ty(&[S, d])
        ));
        line(format!(
            "%sin = nn.constant dense<{}> : {}",
            matrix(S, d, &sin),
            ty(&[S, d])
        ));
        line("%neg = nn.constant dense<-1.0> : tensor<1xf32>".into());
        let half =
            |r: std::ops::Range<usize>| r.map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        for (n, heads) in [("q", h), ("k", kv)] {
            let t = ty(&[1, heads, S, d]);
            let t2 = ty(&[1, heads, S, d / 2]);
            line(format!(
                "%{n}hi = nn.gather %{n}h {{axis = 3, indices = [{}]}} : {t2}",
                half(d / 2..d)
            ));
            line(format!(
                "%{n}lo = nn.gather %{n}h {{axis = 3, indices = [{}]}} : {t2}",
                half(0..d / 2)
            ));
            line(format!("%{n}n = nn.mul %{n}hi, %neg : {t2}"));
            line(format!(
                "%{n}rot = nn.concat %{n}n, %{n}lo {{axis = 3}} : {t}"
            ));
            line(format!("%{n}c = nn.mul %{n}h, %cos : {t}"));
            line(format!("%{n}s = nn.mul %{n}rot, %sin : {t}"));
            line(format!("%{n}ro = nn.add %{n}c, %{n}s : {t}"));
        }
    }
    let (qh, kh) = if b.rotary {
        ("qro", "kro")
    } else {
        ("qh", "kh")
    };
    let g = b.group;
    for (n, src) in [("k", kh), ("v", "vh")] {
        line(format!(
            "%{n}u = nn.reshape %{src} {{shape = [1, {kv}, 1, {S}, {d}]}} : {}",
            ty(&[1, kv, 1, S, d])
        ));
        let zeros = vec!["0"; g].join(", ");
        line(format!(
            "%{n}e = nn.gather %{n}u {{axis = 2, indices = [{zeros}]}} : {}",
            ty(&[1, kv, g, S, d])
        ));
        line(format!(
            "%{n}r = nn.reshape %{n}e {{shape = [1, {h}, {S}, {d}]}} : {}",
            ty(&[1, h, S, d])
        ));
    }
    line(format!(
        "%kt = nn.transpose %kr {{perm = [0, 1, 3, 2]}} : {}",
        ty(&[1, h, d, S])
    ));
    line(format!("%s = nn.matmul %{qh}, %kt : {}", ty(&[1, h, S, S])));
    line(format!("%ss = nn.mul %s, %scale : {}", ty(&[1, h, S, S])));
    line(format!("%sm = nn.add %ss, %mask : {}", ty(&[1, h, S, S])));
    line(format!(
        "%p = nn.softmax %sm {{axis = -1}} : {}",
        ty(&[1, h, S, S])
    ));
    line(format!("%a = nn.matmul %p, %vr : {}", ty(&[1, h, S, d])));
    line(format!(
        "%at = nn.transpose %a {{perm = [0, 2, 1, 3]}} : {}",
        ty(&[1, S, h, d])
    ));
    // Flattened: o_proj reads the heads merged and flattened by one reshape (GPT-2) for an
    // odd head count, by a merge and then a flatten for an even one.
    let once = b.flat && h % 2 == 1;
    let m_dims = if once {
        vec![S, h * d]
    } else {
        vec![1, S, h * d]
    };
    let m_shape: Vec<String> = m_dims.iter().map(usize::to_string).collect();
    line(format!(
        "%m = nn.reshape %at {{shape = [{}]}} : {}",
        m_shape.join(", "),
        ty(&m_dims)
    ));
    if b.flat {
        let rows = if once {
            "%m".to_string()
        } else {
            line(format!(
                "%m2 = nn.reshape %m {{shape = [{S}, {}]}} : {}",
                h * d,
                ty(&[S, h * d])
            ));
            "%m2".to_string()
        };
        line(format!(
            "%y2 = nn.linear {rows}, %wo, %bo : {}",
            ty(&[S, E])
        ));
        line(format!(
            "%y = nn.reshape %y2 {{shape = [1, {S}, {E}]}} : {}",
            ty(&[1, S, E])
        ));
    } else {
        line(format!("%y = nn.linear %m, %wo, %bo : {}", ty(&[1, S, E])));
    }
    line(format!("return %y : {}", ty(&[1, S, E])));
    s + "}\n"
}

/// The width of the value named `name` on its last axis.
fn width(m: &Module, name: &str) -> usize {
    let f = &m.funcs[0];
    let v = f
        .ops()
        .filter_map(|o| f.op(o).result())
        .find(|&r| f.value(r).name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("%{name}"));
    let t = f.ty(v);
    t.dim(t.rank() - 1).as_static().unwrap() as usize
}

/// The query and key/value heads that must stay: every query head not ignored and not reading
/// zero values (one stays if none would), and the key/value heads those read.
fn expected_heads(b: &Block) -> (usize, usize) {
    let constant =
        |q: usize| b.kinds[(q / b.group) * b.group..][..b.group].contains(&Kind::ValueZero);
    let mut kept: Vec<usize> = (0..b.kinds.len())
        .filter(|&q| b.kinds[q] != Kind::Ignored && !constant(q))
        .collect();
    if kept.is_empty() {
        kept.push(b.kinds.len() - 1);
    }
    let mut kv: Vec<usize> = kept.iter().map(|q| q / b.group).collect();
    kv.dedup();
    (kept.len(), kv.len())
}

fn input(seed: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_fn(vec![1, S, E], |i| seed[(i[1] * 7 + i[2]) % seed.len()])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn attention_heads_prune_exactly(b in block(), seed in prop::collection::vec(f32_in(-2.0, 2.0), 19)) {
        let text = text(&b);
        let before = load(&text);
        let after = prune(&before);
        assert_same_outputs(&before, &after, &[input(&seed)]);
        let (q, kv) = expected_heads(&b);
        prop_assert_eq!(width(&after, "m"), q * b.dim, "query heads\n{}", text);
        prop_assert_eq!(width(&after, "k"), kv * b.dim, "key/value heads\n{}", text);
    }
}

#[cfg(feature = "mlir")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn pruned_attention_compiles_exactly(b in block(), seed in prop::collection::vec(f32_in(-2.0, 2.0), 19)) {
        let after = prune(&load(&text(&b)));
        jit::assert_jit_matches_interp(&after, &[input(&seed)]);
    }
}
