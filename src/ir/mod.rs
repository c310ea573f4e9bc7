//! The NNIR in-memory representation.
//!
//! A [`Module`] holds [`Function`]s; a function is one block of SSA operations ending in
//! `return`. Storage follows Cranelift: operations and values live in typed-id arenas
//! (`PrimaryMap<OpId, _>`, `PrimaryMap<ValueId, _>`) and the order of operations is kept apart in
//! a [`Layout`] (a doubly linked list over `OpId`), so erasing an op only unlinks it and leaves a
//! tombstone, and inserting one is O(1). Every value has a use-list (which op uses it as which
//! operand) so a rewrite finds all users of a value without a scan.
//!
//! Invariants (checked by the verifier, relied upon by passes):
//! - every linked op's operands are defined by a function argument or an earlier linked op;
//! - the use-list of a value lists exactly the (op, operand index) pairs of linked ops using it;
//! - the last linked op is the only `return`.
//!
//! Mutation goes through [`builder::FuncBuilder`] (appending, while reading text or ONNX) and the rewrite
//! module's `Rewriter` (everything a pass does), never through public setters. The mutating
//! methods here are private to this module tree except the `raw_*` ones, which are
//! `pub(crate)` only so that the rewriter (a layer above) can reach them: nothing else calls
//! them (tests/layers.rs checks), which keeps use-lists and layout consistent and lets the
//! rewriter record every change for the greedy driver.

pub mod attr;
pub mod builder;
pub mod infer;
pub mod ops;
pub mod tensor;
pub mod types;

pub use attr::Attr;
pub use ops::{Arity, GeluApprox, OpKind, OpTag, Pool2d};
pub use tensor::Tensor;
pub use types::{Dim, ElemType, TensorType};

use crate::diag::Span;
use cranelift_entity::packed_option::PackedOption;
use cranelift_entity::{entity_impl, PrimaryMap, SecondaryMap};
use smallvec::SmallVec;
use std::path::PathBuf;

/// An operation in a function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(u32);
entity_impl!(OpId, "op");

/// An SSA value: a function argument or an op result.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(u32);
entity_impl!(ValueId, "%v");

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueDef {
    /// The n-th function argument.
    Arg(u32),
    /// The (single) result of an op.
    OpResult(OpId),
}

/// One use of a value: operand `index` of `op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Use {
    pub op: OpId,
    pub index: u32,
}

/// An MLIR-style location attached to an op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loc {
    /// `loc("file":line:col)`: where the op came from in a source file.
    FileLineCol { file: String, line: u32, col: u32 },
    /// `loc("name")`: the name the op had in the model it came from (an ONNX node's name),
    /// which exporters give back.
    Name(String),
}

/// An op's kind (with its attributes), operands and result. Operands change only through
/// the `ir` module tree, which keeps the use-lists in step.
#[derive(Clone, Debug)]
pub struct OpData {
    pub kind: OpKind,
    operands: SmallVec<[ValueId; 3]>,
    result: PackedOption<ValueId>,
}

impl OpData {
    pub fn operands(&self) -> &[ValueId] {
        &self.operands
    }

    /// The op's result (every op but `return` has exactly one).
    pub fn result(&self) -> Option<ValueId> {
        self.result.expand()
    }

    pub fn tag(&self) -> OpTag {
        self.kind.tag()
    }
}

/// A value's type and where it is defined.
#[derive(Clone, Debug)]
pub struct ValueData {
    pub ty: TensorType,
    pub def: ValueDef,
    /// The name the user wrote (without `%`), kept for printing.
    pub name: Option<String>,
    /// For a constant that a pass derived from an `nn.weight` (a pruned or rescaled copy): that
    /// weight's name, under which the constant is written back to safetensors.
    pub weight_name: Option<String>,
}

#[derive(Clone, Copy, Debug, Default)]
struct LayoutNode {
    prev: PackedOption<OpId>,
    next: PackedOption<OpId>,
    linked: bool,
}

/// The order of ops in the function's single block, apart from their data.
#[derive(Clone, Debug, Default)]
struct Layout {
    nodes: SecondaryMap<OpId, LayoutNode>,
    first: PackedOption<OpId>,
    last: PackedOption<OpId>,
    len: usize,
}

impl Layout {
    fn append(&mut self, op: OpId) {
        debug_assert!(!self.nodes[op].linked);
        self.nodes[op] = LayoutNode {
            prev: self.last,
            next: None.into(),
            linked: true,
        };
        match self.last.expand() {
            Some(last) => self.nodes[last].next = op.into(),
            None => self.first = op.into(),
        }
        self.last = op.into();
        self.len += 1;
    }

    fn insert_before(&mut self, op: OpId, anchor: OpId) {
        debug_assert!(self.nodes[anchor].linked && !self.nodes[op].linked);
        let prev = self.nodes[anchor].prev;
        self.nodes[op] = LayoutNode {
            prev,
            next: anchor.into(),
            linked: true,
        };
        self.nodes[anchor].prev = op.into();
        match prev.expand() {
            Some(p) => self.nodes[p].next = op.into(),
            None => self.first = op.into(),
        }
        self.len += 1;
    }

    fn unlink(&mut self, op: OpId) {
        let LayoutNode { prev, next, linked } = self.nodes[op];
        debug_assert!(linked);
        match prev.expand() {
            Some(p) => self.nodes[p].next = next,
            None => self.first = next,
        }
        match next.expand() {
            Some(n) => self.nodes[n].prev = prev,
            None => self.last = prev,
        }
        self.nodes[op] = LayoutNode::default();
        self.len -= 1;
    }
}

/// A function: arguments, one block of ops in layout order, and its declared result types.
#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    /// The span of the function's header (`func @name(...) -> (...)`).
    pub span: Span,
    ops: PrimaryMap<OpId, OpData>,
    values: PrimaryMap<ValueId, ValueData>,
    uses: SecondaryMap<ValueId, SmallVec<[Use; 2]>>,
    layout: Layout,
    args: Vec<ValueId>,
    result_types: Vec<TensorType>,
    op_spans: SecondaryMap<OpId, Span>,
    op_locs: SecondaryMap<OpId, Option<Loc>>,
    value_spans: SecondaryMap<ValueId, Span>,
}

/// Iterator over linked ops in layout order.
pub struct OpIter<'f> {
    layout: &'f Layout,
    next: Option<OpId>,
}

impl Iterator for OpIter<'_> {
    type Item = OpId;
    fn next(&mut self) -> Option<OpId> {
        let op = self.next?;
        self.next = self.layout.nodes[op].next.expand();
        Some(op)
    }
}

impl Function {
    pub fn new(name: impl Into<String>, span: Span) -> Function {
        Function {
            name: name.into(),
            span,
            ops: PrimaryMap::new(),
            values: PrimaryMap::new(),
            uses: SecondaryMap::new(),
            layout: Layout::default(),
            args: Vec::new(),
            result_types: Vec::new(),
            op_spans: SecondaryMap::new(),
            op_locs: SecondaryMap::new(),
            value_spans: SecondaryMap::new(),
        }
    }

    // ---- reading ----------------------------------------------------------------------------

    /// Linked ops in order (the terminator last).
    pub fn ops(&self) -> OpIter<'_> {
        OpIter {
            layout: &self.layout,
            next: self.layout.first.expand(),
        }
    }

    /// Number of linked ops.
    pub fn num_ops(&self) -> usize {
        self.layout.len
    }

    /// Size of the op arena, tombstones included: an upper bound for `OpId` indices, for
    /// analyses that keep dense side tables.
    pub fn op_capacity(&self) -> usize {
        self.ops.len()
    }

    pub fn value_capacity(&self) -> usize {
        self.values.len()
    }

    pub fn op(&self, op: OpId) -> &OpData {
        &self.ops[op]
    }

    pub fn kind(&self, op: OpId) -> &OpKind {
        &self.ops[op].kind
    }

    /// `false` for an erased op (a tombstone).
    pub fn is_linked(&self, op: OpId) -> bool {
        self.layout.nodes.get(op).is_some_and(|n| n.linked)
    }

    pub fn next_op(&self, op: OpId) -> Option<OpId> {
        self.layout.nodes[op].next.expand()
    }

    pub fn prev_op(&self, op: OpId) -> Option<OpId> {
        self.layout.nodes[op].prev.expand()
    }

    pub fn value(&self, v: ValueId) -> &ValueData {
        &self.values[v]
    }

    pub fn ty(&self, v: ValueId) -> &TensorType {
        &self.values[v].ty
    }

    /// The op defining `v`, or `None` for a function argument.
    pub fn producer(&self, v: ValueId) -> Option<OpId> {
        match self.values[v].def {
            ValueDef::OpResult(op) => Some(op),
            ValueDef::Arg(_) => None,
        }
    }

    /// The op kind defining `v`, if any.
    pub fn producer_kind(&self, v: ValueId) -> Option<&OpKind> {
        self.producer(v).map(|op| self.kind(op))
    }

    /// The constant data of `v` if it is produced by `nn.constant` or `nn.weight`.
    pub fn constant_of(&self, v: ValueId) -> Option<&Tensor> {
        self.producer_kind(v).and_then(OpKind::constant_value)
    }

    pub fn uses(&self, v: ValueId) -> &[Use] {
        &self.uses[v]
    }

    pub fn has_uses(&self, v: ValueId) -> bool {
        !self.uses[v].is_empty()
    }

    /// The distinct ops using `v`, in use-list order.
    pub fn users(&self, v: ValueId) -> impl Iterator<Item = OpId> + '_ {
        let uses = &self.uses[v];
        uses.iter()
            .enumerate()
            .filter(move |(i, u)| uses[..*i].iter().all(|p| p.op != u.op))
            .map(|(_, u)| u.op)
    }

    /// The fewest rows of the tables `nn.embedding` ops read with ids `v` (`None` if none
    /// does): token ids in `v` are valid below it.
    pub fn embedding_rows(&self, v: ValueId) -> Option<u64> {
        self.users(v)
            .filter(|&op| matches!(self.kind(op), OpKind::Embedding))
            .filter_map(|op| self.ty(self.op(op).operands()[0]).dim(0).as_static())
            .min()
    }

    pub fn args(&self) -> &[ValueId] {
        &self.args
    }

    pub fn result_types(&self) -> &[TensorType] {
        &self.result_types
    }

    /// The `return` op, if the function has one last.
    pub fn terminator(&self) -> Option<OpId> {
        let last = self.layout.last.expand()?;
        (self.ops[last].tag() == OpTag::Return).then_some(last)
    }

    pub fn span(&self, op: OpId) -> Span {
        self.op_spans[op]
    }

    pub fn loc(&self, op: OpId) -> Option<&Loc> {
        self.op_locs[op].as_ref()
    }

    /// Where a value was defined in the source (its name for a result, the argument for an arg).
    pub fn value_span(&self, v: ValueId) -> Span {
        self.value_spans[v]
    }

    // ---- mutation, private to `ir` (see the module docs) -------------------------------------

    fn new_value(
        &mut self,
        ty: TensorType,
        def: ValueDef,
        name: Option<String>,
        span: Span,
    ) -> ValueId {
        let v = self.values.push(ValueData {
            ty,
            def,
            name,
            weight_name: None,
        });
        self.value_spans[v] = span;
        v
    }

    fn add_arg(&mut self, ty: TensorType, name: Option<String>, span: Span) -> ValueId {
        let idx = self.args.len() as u32;
        let v = self.new_value(ty, ValueDef::Arg(idx), name, span);
        self.args.push(v);
        v
    }

    /// Creates an unlinked op (and its result value when `result` is given) and registers its
    /// uses. The caller links it.
    fn create_op(
        &mut self,
        kind: OpKind,
        operands: &[ValueId],
        result: Option<(TensorType, Option<String>)>,
        span: Span,
    ) -> OpId {
        let op = self.ops.push(OpData {
            kind,
            operands: operands.into(),
            result: None.into(),
        });
        self.op_spans[op] = span;
        for (i, &v) in operands.iter().enumerate() {
            self.uses[v].push(Use {
                op,
                index: i as u32,
            });
        }
        if let Some((ty, name)) = result {
            let v = self.new_value(ty, ValueDef::OpResult(op), name, span);
            self.ops[op].result = v.into();
        }
        op
    }

    fn remove_use(&mut self, v: ValueId, u: Use) {
        let list = &mut self.uses[v];
        if let Some(pos) = list.iter().position(|x| *x == u) {
            list.swap_remove(pos);
        }
    }

    fn set_operands(&mut self, op: OpId, operands: &[ValueId]) {
        let old = std::mem::take(&mut self.ops[op].operands);
        for (i, v) in old.into_iter().enumerate() {
            self.remove_use(
                v,
                Use {
                    op,
                    index: i as u32,
                },
            );
        }
        for (i, &v) in operands.iter().enumerate() {
            self.uses[v].push(Use {
                op,
                index: i as u32,
            });
        }
        self.ops[op].operands = operands.into();
    }

    // ---- raw mutators, only for ir::builder and rewrite::Rewriter --------------------------

    /// Creates an op (with a result of type `ty`) right before `anchor`; only for
    /// ir::builder and rewrite::Rewriter.
    #[doc(hidden)]
    pub(crate) fn raw_insert_before(
        &mut self,
        anchor: OpId,
        kind: OpKind,
        operands: &[ValueId],
        ty: TensorType,
        span: Span,
    ) -> OpId {
        let op = self.create_op(kind, operands, Some((ty, None)), span);
        self.layout.insert_before(op, anchor);
        op
    }

    /// Makes operand `index` of `op` use `v`; only for ir::builder and rewrite::Rewriter.
    #[doc(hidden)]
    pub(crate) fn raw_set_operand(&mut self, op: OpId, index: usize, v: ValueId) {
        let old = self.ops[op].operands[index];
        let u = Use {
            op,
            index: index as u32,
        };
        self.remove_use(old, u);
        self.ops[op].operands[index] = v;
        self.uses[v].push(u);
    }

    /// Replaces all operands of `op`; only for ir::builder and rewrite::Rewriter.
    #[doc(hidden)]
    pub(crate) fn raw_set_operands(&mut self, op: OpId, operands: &[ValueId]) {
        self.set_operands(op, operands);
    }

    /// Makes every use of `from` use `to`; returns the moved uses. Only for ir::builder and
    /// rewrite::Rewriter.
    #[doc(hidden)]
    pub(crate) fn raw_replace_all_uses(&mut self, from: ValueId, to: ValueId) -> Vec<Use> {
        let uses = std::mem::take(&mut self.uses[from]);
        for u in &uses {
            self.ops[u.op].operands[u.index as usize] = to;
        }
        self.uses[to].extend(uses.iter().copied());
        uses.into_vec()
    }

    /// Changes `op`'s kind in place; only for ir::builder and rewrite::Rewriter.
    #[doc(hidden)]
    pub(crate) fn raw_set_kind(&mut self, op: OpId, kind: OpKind) {
        self.ops[op].kind = kind;
    }

    /// A value's type and names, writable; only for ir::builder and rewrite::Rewriter.
    #[doc(hidden)]
    pub(crate) fn raw_value_mut(&mut self, v: ValueId) -> &mut ValueData {
        &mut self.values[v]
    }

    /// Sets the declared result types; only for ir::builder and rewrite::Rewriter.
    #[doc(hidden)]
    pub(crate) fn raw_set_result_types(&mut self, types: Vec<TensorType>) {
        self.result_types = types;
    }

    /// Unlinks `op` and drops its uses (its result must be unused); only for ir::builder and
    /// rewrite::Rewriter.
    #[doc(hidden)]
    pub(crate) fn raw_erase(&mut self, op: OpId) {
        debug_assert!(
            self.ops[op]
                .result()
                .is_none_or(|r| self.uses[r].is_empty()),
            "erasing {op} whose result still has uses"
        );
        self.set_operands(op, &[]);
        self.layout.unlink(op);
    }
}

/// A weights file named by the module attribute `weights`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightsFile {
    /// As written in the attribute.
    pub written: String,
    /// Resolved against the directory of the .nnir file.
    pub path: PathBuf,
}

/// A module: attributes and functions.
#[derive(Clone, Debug, Default)]
pub struct Module {
    pub name: Option<String>,
    /// Attributes in source order, `weights` included.
    pub attrs: Vec<(String, Attr)>,
    pub funcs: Vec<Function>,
    pub span: Span,
}

impl Module {
    /// The module attribute `weights = "file.safetensors"`, if present.
    pub fn weights_attr(&self) -> Option<&str> {
        self.attrs.iter().find_map(|(k, v)| match (k.as_str(), v) {
            ("weights", Attr::Str(s)) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn func(&self, name: &str) -> Option<&Function> {
        self.funcs.iter().find(|f| f.name == name)
    }
}
