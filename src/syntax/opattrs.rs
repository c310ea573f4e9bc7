//! The attribute schema of every op, in both directions: [`build_kind`] turns an attribute
//! dictionary into the typed fields of an [`OpKind`], and [`op_attrs`] lists those fields back
//! as generic attributes for the printer.
//! Keeping both here means an attribute is added, renamed or defaulted in one file.

use crate::diag::{Diagnostic, Span};
use crate::ir::{Attr, Dim, GeluApprox, OpKind, OpTag, Pool2d};
use crate::syntax::ast::{AttrAst, AttrValueAst};
use crate::syntax::lexer::{scan_num_list, unescape};

/// Reads typed values out of an op's attribute dictionary, reporting wrong types and, at the
/// end, attributes the op does not have.
pub struct AttrReader<'a, 'd> {
    attrs: &'a [AttrAst<'a>],
    used: Vec<bool>,
    op_span: Span,
    mnemonic: &'static str,
    diags: &'d mut Vec<Diagnostic>,
    failed: bool,
}

impl<'a, 'd> AttrReader<'a, 'd> {
    pub fn new(
        attrs: &'a [AttrAst<'a>],
        tag: OpTag,
        op_span: Span,
        diags: &'d mut Vec<Diagnostic>,
    ) -> Self {
        let mut seen: Vec<&str> = Vec::new();
        let mut failed = false;
        // A repeated key is reported here and counts as used, so `finish` does not also call
        // it unknown.
        let mut used = vec![false; attrs.len()];
        for (i, a) in attrs.iter().enumerate() {
            if seen.contains(&a.key.text) {
                used[i] = true;
                diags.push(
                    Diagnostic::error(format!("attribute '{}' is given twice", a.key.text))
                        .at(a.key.span),
                );
                failed = true;
            }
            seen.push(a.key.text);
        }
        AttrReader {
            attrs,
            used,
            op_span,
            mnemonic: tag.mnemonic(),
            diags,
            failed,
        }
    }

    fn find(&mut self, key: &str) -> Option<&'a AttrValueAst<'a>> {
        let i = self.attrs.iter().position(|a| a.key.text == key)?;
        self.used[i] = true;
        Some(&self.attrs[i].value)
    }

    fn error(&mut self, span: Span, message: String) {
        self.diags.push(Diagnostic::error(message).at(span));
        self.failed = true;
    }

    fn missing(&mut self, key: &str, what: &str) {
        let m = format!(
            "'{}' requires the attribute '{key}' ({what})",
            self.mnemonic
        );
        self.error(self.op_span, m);
    }

    fn wrong_type(&mut self, key: &str, span: Span, what: &str) {
        let m = format!("attribute '{key}' of '{}' must be {what}", self.mnemonic);
        self.error(span, m);
    }

    /// A list of numbers, each decoded by `parse`.
    fn numbers<T>(
        &mut self,
        key: &str,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let v = self.find(key)?;
        let (text, span) = match v {
            AttrValueAst::NumList(t, s) => (*t, *s),
            // An empty generic list (`[]` is lexed as a number list, so this is e.g. `["a"]`).
            other => {
                self.wrong_type(key, other.span(), what);
                return None;
            }
        };
        let mut out = Vec::new();
        let shape = scan_num_list(text, |item, _| {
            out.push(parse(item).ok_or_else(|| format!("'{item}' is not {what}"))?);
            Ok(())
        });
        match shape {
            Ok(s) if s.len() == 1 => Some(out),
            Ok(_) => {
                self.wrong_type(key, span, what);
                None
            }
            Err((off, m)) => {
                let at = Span::new(span.file, span.start as usize + off, span.end as usize);
                self.error(at, format!("attribute '{key}': {m}"));
                None
            }
        }
    }

    fn scalar<T>(&mut self, key: &str, what: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        match self.find(key)? {
            AttrValueAst::Number(t, s) => match parse(t) {
                Some(v) => Some(v),
                None => {
                    self.wrong_type(key, *s, what);
                    None
                }
            },
            other => {
                self.wrong_type(key, other.span(), what);
                None
            }
        }
    }

    pub fn int(&mut self, key: &str) -> Option<i64> {
        self.scalar(key, "an integer", |t| t.parse().ok())
    }

    pub fn uint(&mut self, key: &str) -> Option<u64> {
        self.scalar(key, "a non-negative integer", |t| t.parse().ok())
    }

    pub fn f32(&mut self, key: &str) -> Option<f32> {
        self.scalar(key, "a number", parse_f32)
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        match self.find(key)? {
            AttrValueAst::Bool(b, _) => Some(*b),
            other => {
                self.wrong_type(key, other.span(), "true or false");
                None
            }
        }
    }

    pub fn str(&mut self, key: &str) -> Option<String> {
        match self.find(key)? {
            AttrValueAst::Str(raw, s) => match unescape(raw) {
                Ok(v) => Some(v),
                Err(m) => {
                    self.error(*s, m);
                    None
                }
            },
            other => {
                self.wrong_type(key, other.span(), "a string");
                None
            }
        }
    }

    pub fn ints(&mut self, key: &str) -> Option<Vec<i64>> {
        self.numbers(key, "a list of integers", |t| t.parse().ok())
    }

    pub fn uints(&mut self, key: &str) -> Option<Vec<u64>> {
        self.numbers(key, "a list of non-negative integers", |t| t.parse().ok())
    }

    pub fn f32s(&mut self, key: &str) -> Option<Vec<f32>> {
        self.numbers(key, "a list of numbers", parse_f32)
    }

    /// A list of exactly `N` non-negative integers.
    pub fn uint_array<const N: usize>(&mut self, key: &str) -> Option<[u64; N]> {
        let span = self.find(key).map(|v| v.span())?;
        let v = self.uints(key)?;
        match <[u64; N]>::try_from(v) {
            Ok(a) => Some(a),
            Err(_) => {
                let what = format!("a list of {N} non-negative integers");
                self.wrong_type(key, span, &what);
                None
            }
        }
    }

    /// Reports attributes nobody asked for; returns false if any attribute was wrong.
    pub fn finish(self) -> bool {
        let mut ok = !self.failed;
        for (a, used) in self.attrs.iter().zip(&self.used) {
            if !used {
                self.diags.push(
                    Diagnostic::error(format!(
                        "'{}' has no attribute '{}'",
                        self.mnemonic, a.key.text
                    ))
                    .at(a.key.span),
                );
                ok = false;
            }
        }
        ok
    }
}

/// Parses a number attribute or element as f32: decimal (correctly rounded) or `0x` bits.
pub fn parse_f32(t: &str) -> Option<f32> {
    match t.strip_prefix("0x") {
        Some(h) if h.len() <= 8 => u32::from_str_radix(h, 16).ok().map(f32::from_bits),
        Some(_) => None,
        None => t.parse().ok(),
    }
}

fn required<T>(r: &mut AttrReader, key: &str, what: &str, v: Option<T>) -> Option<T> {
    if v.is_none() && !r.attrs.iter().any(|a| a.key.text == key) {
        r.missing(key, what);
    }
    v
}

/// Builds the typed op of `tag` from its attributes. `None` after reporting diagnostics.
/// `nn.constant` and `nn.weight` take their payload from operands and are built by the reader.
pub fn build_kind(tag: OpTag, r: &mut AttrReader) -> Option<OpKind> {
    let pool = |r: &mut AttrReader| -> Option<Pool2d> {
        let kernel = r.uint_array::<2>("kernel");
        let kernel = required(r, "kernel", "[kh, kw]", kernel);
        let strides = r.uint_array::<2>("strides").unwrap_or([1, 1]);
        let pads = r.uint_array::<4>("pads").unwrap_or([0; 4]);
        let ceil_mode = r.bool("ceil_mode").unwrap_or(false);
        Some(Pool2d {
            kernel: kernel?,
            strides,
            pads,
            ceil_mode,
        })
    };
    let kind = match tag {
        OpTag::Constant | OpTag::Weight => unreachable!("built from operands by the reader"),
        OpTag::Linear => Some(OpKind::Linear),
        OpTag::MatMul => Some(OpKind::MatMul),
        OpTag::Embedding => Some(OpKind::Embedding),
        OpTag::Conv2d => Some(OpKind::Conv2d {
            strides: r.uint_array::<2>("strides").unwrap_or([1, 1]),
            pads: r.uint_array::<4>("pads").unwrap_or([0; 4]),
            dilations: r.uint_array::<2>("dilations").unwrap_or([1, 1]),
            groups: r.uint("groups").unwrap_or(1),
        }),
        OpTag::BatchNorm => Some(OpKind::BatchNorm {
            epsilon: r.f32("epsilon").unwrap_or(1e-5),
        }),
        OpTag::Relu => Some(OpKind::Relu),
        OpTag::LeakyRelu => Some(OpKind::LeakyRelu {
            alpha: r.f32("alpha").unwrap_or(0.01),
        }),
        OpTag::Clip => {
            let min = r.f32("min");
            let min = required(r, "min", "a number", min);
            let max = r.f32("max");
            let max = required(r, "max", "a number", max);
            Some(OpKind::Clip {
                min: min?,
                max: max?,
            })
        }
        OpTag::Sigmoid => Some(OpKind::Sigmoid),
        OpTag::Tanh => Some(OpKind::Tanh),
        OpTag::Gelu => {
            let approximate = match r.str("approximate").as_deref() {
                None | Some("none") => GeluApprox::None,
                Some("tanh") => GeluApprox::Tanh,
                Some(other) => {
                    let span = r.find("approximate").map(|v| v.span()).unwrap_or(r.op_span);
                    let m = format!("'approximate' must be \"none\" or \"tanh\", not \"{other}\"");
                    r.error(span, m);
                    GeluApprox::None
                }
            };
            Some(OpKind::Gelu { approximate })
        }
        OpTag::Silu => Some(OpKind::Silu),
        OpTag::HardSwish => Some(OpKind::HardSwish),
        OpTag::Identity => Some(OpKind::Identity),
        OpTag::Add => Some(OpKind::Add),
        OpTag::Sub => Some(OpKind::Sub),
        OpTag::Mul => Some(OpKind::Mul),
        OpTag::Concat => {
            let axis = r.int("axis");
            required(r, "axis", "an integer", axis).map(|axis| OpKind::Concat { axis })
        }
        OpTag::MaxPool2d => pool(r).map(OpKind::MaxPool2d),
        OpTag::AvgPool2d => {
            let pool = pool(r);
            let count_include_pad = r.bool("count_include_pad").unwrap_or(false);
            pool.map(|pool| OpKind::AvgPool2d {
                pool,
                count_include_pad,
            })
        }
        OpTag::GlobalAvgPool => Some(OpKind::GlobalAvgPool),
        OpTag::Mean => {
            let axes = r.ints("axes");
            let axes = required(r, "axes", "a list of integers", axes);
            let keepdims = r.bool("keepdims").unwrap_or(true);
            axes.map(|axes| OpKind::Mean { axes, keepdims })
        }
        OpTag::Flatten => Some(OpKind::Flatten {
            axis: r.int("axis").unwrap_or(1),
        }),
        OpTag::Reshape => {
            let shape = r.numbers("shape", "a list of sizes and -1", |t| match t {
                "-1" => Some(Dim::Dynamic),
                _ => t.parse().ok().map(Dim::Static),
            });
            required(r, "shape", "a list of sizes and -1", shape)
                .map(|shape| OpKind::Reshape { shape })
        }
        OpTag::Transpose => {
            let perm = r.uints("perm");
            required(r, "perm", "a permutation", perm).map(|perm| OpKind::Transpose { perm })
        }
        OpTag::Softmax => Some(OpKind::Softmax {
            axis: r.int("axis").unwrap_or(-1),
        }),
        OpTag::LayerNorm => Some(OpKind::LayerNorm {
            axis: r.int("axis").unwrap_or(-1),
            epsilon: r.f32("epsilon").unwrap_or(1e-5),
        }),
        OpTag::RmsNorm => Some(OpKind::RmsNorm {
            axis: r.int("axis").unwrap_or(-1),
            epsilon: r.f32("epsilon").unwrap_or(1e-5),
        }),
        OpTag::Gather => {
            let axis = r.int("axis");
            let axis = required(r, "axis", "an integer", axis);
            let indices = r.uints("indices");
            let indices = required(r, "indices", "a list of positions", indices);
            Some(OpKind::Gather {
                axis: axis?,
                indices: indices?,
            })
        }
        OpTag::Scatter => {
            let axis = r.int("axis");
            let axis = required(r, "axis", "an integer", axis);
            let indices = r.uints("indices");
            let indices = required(r, "indices", "a list of positions", indices);
            let size = r.uint("size");
            let size = required(r, "size", "the length of the result axis", size);
            let fill = r.f32s("fill");
            let fill = required(r, "fill", "one number per result position", fill);
            Some(OpKind::Scatter {
                axis: axis?,
                indices: indices?,
                size: size?,
                fill: fill?,
            })
        }
        OpTag::Return => Some(OpKind::Return),
    };
    kind.filter(|_| !r.failed)
}

/// The attributes of `kind` in canonical order, all of them (defaults included), so that the
/// printed form states every parameter the op computes with.
pub fn op_attrs(kind: &OpKind) -> Vec<(&'static str, Attr)> {
    let uints = |v: &[u64]| Attr::Array(v.iter().map(|&x| Attr::Int(x as i64)).collect());
    let ints = |v: &[i64]| Attr::Array(v.iter().map(|&x| Attr::Int(x)).collect());
    let pool = |p: &Pool2d| {
        vec![
            ("kernel", uints(&p.kernel)),
            ("strides", uints(&p.strides)),
            ("pads", uints(&p.pads)),
            ("ceil_mode", Attr::Bool(p.ceil_mode)),
        ]
    };
    match kind {
        OpKind::Conv2d {
            strides,
            pads,
            dilations,
            groups,
        } => vec![
            ("strides", uints(strides)),
            ("pads", uints(pads)),
            ("dilations", uints(dilations)),
            ("groups", Attr::Int(*groups as i64)),
        ],
        OpKind::BatchNorm { epsilon } => vec![("epsilon", Attr::F32(*epsilon))],
        OpKind::LeakyRelu { alpha } => vec![("alpha", Attr::F32(*alpha))],
        OpKind::Clip { min, max } => vec![("min", Attr::F32(*min)), ("max", Attr::F32(*max))],
        OpKind::Gelu { approximate } => {
            vec![("approximate", Attr::Str(approximate.name().into()))]
        }
        OpKind::Concat { axis } => vec![("axis", Attr::Int(*axis))],
        OpKind::MaxPool2d(p) => pool(p),
        OpKind::AvgPool2d {
            pool: p,
            count_include_pad,
        } => {
            let mut v = pool(p);
            v.push(("count_include_pad", Attr::Bool(*count_include_pad)));
            v
        }
        OpKind::Mean { axes, keepdims } => {
            vec![("axes", ints(axes)), ("keepdims", Attr::Bool(*keepdims))]
        }
        OpKind::Flatten { axis } | OpKind::Softmax { axis } => vec![("axis", Attr::Int(*axis))],
        OpKind::Reshape { shape } => {
            let entry = |d: &Dim| Attr::Int(d.as_static().map_or(-1, |n| n as i64));
            vec![("shape", Attr::Array(shape.iter().map(entry).collect()))]
        }
        OpKind::Transpose { perm } => vec![("perm", uints(perm))],
        OpKind::LayerNorm { axis, epsilon } | OpKind::RmsNorm { axis, epsilon } => {
            vec![("axis", Attr::Int(*axis)), ("epsilon", Attr::F32(*epsilon))]
        }
        OpKind::Gather { axis, indices } => {
            vec![("axis", Attr::Int(*axis)), ("indices", uints(indices))]
        }
        OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        } => vec![
            ("axis", Attr::Int(*axis)),
            ("indices", uints(indices)),
            ("size", Attr::Int(*size as i64)),
            (
                "fill",
                Attr::Array(fill.iter().map(|&x| Attr::F32(x)).collect()),
            ),
        ],
        OpKind::Constant(_)
        | OpKind::Weight { .. }
        | OpKind::Linear
        | OpKind::MatMul
        | OpKind::Embedding
        | OpKind::Relu
        | OpKind::Sigmoid
        | OpKind::Tanh
        | OpKind::Silu
        | OpKind::HardSwish
        | OpKind::Identity
        | OpKind::Add
        | OpKind::Sub
        | OpKind::Mul
        | OpKind::GlobalAvgPool
        | OpKind::Return => Vec::new(),
    }
}
