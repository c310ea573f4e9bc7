//! The closed set of NNIR operations.
//!
//! `OpKind` carries each op's attributes as typed fields, so a `match` over it forces every pass,
//! the verifier, the printer and the interpreter to handle a new op. Static facts that do not
//! depend on attributes (mnemonic, operand count, whether the op is element-wise) live in one
//! table, [`op_table!`], from which [`OpTag`] and its methods are generated.

use super::tensor::Tensor;
use super::Dim;

/// Spatial attributes shared by the pooling ops.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool2d {
    pub kernel: [u64; 2],
    pub strides: [u64; 2],
    /// [top, left, bottom, right]
    pub pads: [u64; 4],
    pub ceil_mode: bool,
}

/// Which GELU `nn.gelu` computes: the exact erf form, or the tanh approximation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluApprox {
    None,
    Tanh,
}

impl GeluApprox {
    pub fn name(self) -> &'static str {
        match self {
            GeluApprox::None => "none",
            GeluApprox::Tanh => "tanh",
        }
    }
}

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    /// `min..=max`
    Range(usize, usize),
    AtLeast(usize),
}

impl Arity {
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::Range(lo, hi) => (lo..=hi).contains(&n),
            Arity::AtLeast(k) => n >= k,
        }
    }
}

macro_rules! op_table {
    ($( $tag:ident => $mnemonic:literal, $arity:expr, $elementwise:literal; )*) => {
        /// The attribute-free identity of an op: what patterns match on.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OpTag { $($tag),* }

        impl OpTag {
            pub const ALL: &'static [OpTag] = &[$(OpTag::$tag),*];

            /// The mnemonic in the text format, e.g. `nn.linear`.
            pub fn mnemonic(self) -> &'static str {
                match self { $(OpTag::$tag => $mnemonic),* }
            }

            pub fn from_mnemonic(s: &str) -> Option<OpTag> {
                match s { $($mnemonic => Some(OpTag::$tag),)* _ => None }
            }

            pub fn arity(self) -> Arity {
                match self { $(OpTag::$tag => $arity),* }
            }

            /// Applies a scalar function to each element independently (unary activations).
            pub fn is_elementwise_unary(self) -> bool {
                match self { $(OpTag::$tag => $elementwise),* }
            }
        }
    };
}

op_table! {
    Constant     => "nn.constant",        Arity::Exactly(0), false;
    Weight       => "nn.weight",          Arity::Exactly(0), false;
    Linear       => "nn.linear",          Arity::Range(2, 3), false;
    MatMul       => "nn.matmul",          Arity::Exactly(2), false;
    Conv2d       => "nn.conv2d",          Arity::Range(2, 3), false;
    BatchNorm    => "nn.batch_norm",      Arity::Exactly(5), false;
    Relu         => "nn.relu",            Arity::Exactly(1), true;
    LeakyRelu    => "nn.leaky_relu",      Arity::Exactly(1), true;
    Clip         => "nn.clip",            Arity::Exactly(1), true;
    Sigmoid      => "nn.sigmoid",         Arity::Exactly(1), true;
    Tanh         => "nn.tanh",            Arity::Exactly(1), true;
    Gelu         => "nn.gelu",            Arity::Exactly(1), true;
    Silu         => "nn.silu",            Arity::Exactly(1), true;
    HardSwish    => "nn.hardswish",       Arity::Exactly(1), true;
    Identity     => "nn.identity",        Arity::Exactly(1), true;
    Add          => "nn.add",             Arity::Exactly(2), false;
    Sub          => "nn.sub",             Arity::Exactly(2), false;
    Mul          => "nn.mul",             Arity::Exactly(2), false;
    Concat       => "nn.concat",          Arity::AtLeast(1), false;
    MaxPool2d    => "nn.max_pool2d",      Arity::Exactly(1), false;
    AvgPool2d    => "nn.avg_pool2d",      Arity::Exactly(1), false;
    GlobalAvgPool=> "nn.global_avg_pool", Arity::Exactly(1), false;
    Mean         => "nn.mean",            Arity::Exactly(1), false;
    Flatten      => "nn.flatten",         Arity::Exactly(1), false;
    Reshape      => "nn.reshape",         Arity::Exactly(1), false;
    Transpose    => "nn.transpose",       Arity::Exactly(1), false;
    Softmax      => "nn.softmax",         Arity::Exactly(1), false;
    LayerNorm    => "nn.layer_norm",      Arity::Range(1, 3), false;
    RmsNorm      => "nn.rms_norm",        Arity::Range(1, 2), false;
    Gather       => "nn.gather",          Arity::Exactly(1), false;
    Embedding    => "nn.embedding",       Arity::Exactly(2), false;
    Scatter      => "nn.scatter",         Arity::Exactly(1), false;
    Return       => "return",             Arity::AtLeast(0), false;
}

/// An operation with its attributes. Operands and results live in the function's tables.
/// Equality compares attributes, and a constant's bits ([`Tensor::bit_eq`]).
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    /// `nn.constant dense<...>`: an inline constant.
    Constant(Tensor),
    /// `nn.weight "name"`: a tensor of the module's safetensors file, loaded (mapped) when the
    /// module is read.
    Weight {
        name: String,
        value: Tensor,
    },
    /// `x·Wᵀ + b` over the last axis. Operands: x, W[out, in], optional b[out].
    Linear,
    /// `a·b` (NumPy matmul semantics, batched over leading axes).
    MatMul,
    /// NCHW convolution. Operands: x, W[Cout, Cin/groups, KH, KW], optional b[Cout].
    Conv2d {
        strides: [u64; 2],
        pads: [u64; 4],
        dilations: [u64; 2],
        groups: u64,
    },
    /// Inference batch norm over axis 1. Operands: x, scale, bias, mean, var.
    BatchNorm {
        epsilon: f32,
    },
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    Tanh,
    Gelu {
        approximate: GeluApprox,
    },
    Silu,
    HardSwish,
    Identity,
    Add,
    Sub,
    Mul,
    Concat {
        axis: i64,
    },
    MaxPool2d(Pool2d),
    AvgPool2d {
        pool: Pool2d,
        count_include_pad: bool,
    },
    GlobalAvgPool,
    Mean {
        axes: Vec<i64>,
        keepdims: bool,
    },
    Flatten {
        axis: i64,
    },
    /// Target shape, equal to the result type's dims (kept here so passes need not look it up).
    /// At most one entry is [`Dim::Dynamic`] (`-1` in text): the size that keeps the element
    /// count, as ONNX's `-1`, which is how a dynamic batch passes through a reshape.
    Reshape {
        shape: Vec<Dim>,
    },
    Transpose {
        perm: Vec<u64>,
    },
    Softmax {
        axis: i64,
    },
    /// Normalises over axes `axis..rank`. Operands: x, optional scale, optional bias.
    LayerNorm {
        axis: i64,
        epsilon: f32,
    },
    /// `x / sqrt(mean(x²) + epsilon) · scale` over axes `axis..rank` (RMSNorm: no centring, no
    /// bias). Operands: x, optional scale.
    RmsNorm {
        axis: i64,
        epsilon: f32,
    },
    /// Keeps the listed positions of `axis`, in that order.
    Gather {
        axis: i64,
        indices: Vec<u64>,
    },
    /// `table[ids]`: row `ids[..]` of a float table [V, D] for every i64 token id, so the result
    /// is `ids`' shape + [D] (ONNX `Gather` on axis 0 with run-time indices). The one op that
    /// reads an integer tensor. Operands: table, ids.
    Embedding,
    /// Places the input's positions of `axis` at `indices` of a length-`size` axis; every other
    /// position `p` takes the constant `fill[p]` (`fill` has `size` entries; those at `indices`
    /// are ignored and printed as given).
    Scatter {
        axis: i64,
        indices: Vec<u64>,
        size: u64,
        fill: Vec<f32>,
    },
    /// Terminator: the function's results.
    Return,
}

impl OpKind {
    pub fn tag(&self) -> OpTag {
        match self {
            OpKind::Constant(_) => OpTag::Constant,
            OpKind::Weight { .. } => OpTag::Weight,
            OpKind::Linear => OpTag::Linear,
            OpKind::MatMul => OpTag::MatMul,
            OpKind::Conv2d { .. } => OpTag::Conv2d,
            OpKind::BatchNorm { .. } => OpTag::BatchNorm,
            OpKind::Relu => OpTag::Relu,
            OpKind::LeakyRelu { .. } => OpTag::LeakyRelu,
            OpKind::Clip { .. } => OpTag::Clip,
            OpKind::Sigmoid => OpTag::Sigmoid,
            OpKind::Tanh => OpTag::Tanh,
            OpKind::Gelu { .. } => OpTag::Gelu,
            OpKind::Silu => OpTag::Silu,
            OpKind::HardSwish => OpTag::HardSwish,
            OpKind::Identity => OpTag::Identity,
            OpKind::Add => OpTag::Add,
            OpKind::Sub => OpTag::Sub,
            OpKind::Mul => OpTag::Mul,
            OpKind::Concat { .. } => OpTag::Concat,
            OpKind::MaxPool2d(_) => OpTag::MaxPool2d,
            OpKind::AvgPool2d { .. } => OpTag::AvgPool2d,
            OpKind::GlobalAvgPool => OpTag::GlobalAvgPool,
            OpKind::Mean { .. } => OpTag::Mean,
            OpKind::Flatten { .. } => OpTag::Flatten,
            OpKind::Reshape { .. } => OpTag::Reshape,
            OpKind::Transpose { .. } => OpTag::Transpose,
            OpKind::Softmax { .. } => OpTag::Softmax,
            OpKind::LayerNorm { .. } => OpTag::LayerNorm,
            OpKind::RmsNorm { .. } => OpTag::RmsNorm,
            OpKind::Gather { .. } => OpTag::Gather,
            OpKind::Embedding => OpTag::Embedding,
            OpKind::Scatter { .. } => OpTag::Scatter,
            OpKind::Return => OpTag::Return,
        }
    }

    pub fn mnemonic(&self) -> &'static str {
        self.tag().mnemonic()
    }

    /// The constant data of `nn.constant` and `nn.weight`.
    pub fn constant_value(&self) -> Option<&Tensor> {
        match self {
            OpKind::Constant(t) | OpKind::Weight { value: t, .. } => Some(t),
            _ => None,
        }
    }

    /// Applies a unary activation to one value; `None` for ops that are not element-wise unary.
    /// This is the single definition of activation semantics, shared by the interpreter and the
    /// pruning analysis so that the two cannot disagree.
    pub fn eval_unary(&self, x: f32) -> Option<f32> {
        Some(match *self {
            // NaN propagates, as in PyTorch.
            OpKind::Relu => {
                if x > 0.0 || x.is_nan() {
                    x
                } else {
                    0.0
                }
            }
            OpKind::LeakyRelu { alpha } => {
                if x >= 0.0 || x.is_nan() {
                    x
                } else {
                    alpha * x
                }
            }
            OpKind::Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(min).min(max)
                }
            }
            OpKind::Sigmoid => sigmoid(x),
            OpKind::Tanh => x.tanh(),
            OpKind::Gelu {
                approximate: GeluApprox::None,
            } => (0.5 * x as f64 * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2))) as f32,
            OpKind::Gelu {
                approximate: GeluApprox::Tanh,
            } => {
                let x = x as f64;
                let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                (0.5 * x * (1.0 + inner.tanh())) as f32
            }
            OpKind::Silu => x * sigmoid(x),
            OpKind::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            OpKind::Identity => x,
            _ => return None,
        })
    }
}

fn sigmoid(x: f32) -> f32 {
    (1.0 / (1.0 + (-(x as f64)).exp())) as f32
}

/// Error function, to f64 precision (Abramowitz–Stegun 7.1.26 is too coarse for an oracle, so
/// this uses the series for small |x| and a continued fraction for the tail).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let mut term = ax;
        let mut sum = ax;
        let x2 = ax * ax;
        // |x| < 2.5 converges to f64 precision within 60 terms.
        for n in 1..80 {
            let n = n as f64;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else if ax > 6.0 {
        1.0
    } else {
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))), Lentz-free
        // evaluation from the back with a fixed depth that converges for x >= 2.5.
        let mut f = ax;
        for k in (1..60).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        1.0 - (-ax * ax).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnemonics_round_trip() {
        for &tag in OpTag::ALL {
            assert_eq!(OpTag::from_mnemonic(tag.mnemonic()), Some(tag));
        }
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!(
                (erf(x) - want).abs() < 1e-13,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
    }

    #[test]
    fn activations_at_zero() {
        assert_eq!(OpKind::Sigmoid.eval_unary(0.0), Some(0.5));
        assert_eq!(OpKind::Relu.eval_unary(-3.0), Some(0.0));
        assert_eq!(
            OpKind::Gelu {
                approximate: GeluApprox::None
            }
            .eval_unary(0.0),
            Some(0.0)
        );
        assert_eq!(OpKind::HardSwish.eval_unary(3.0), Some(3.0));
        assert_eq!(OpKind::Add.eval_unary(1.0), None);
    }
}
