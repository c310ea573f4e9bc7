//! AST → IR: resolves names, checks SSA (each value defined once, before use), decodes types,
//! attributes and literals, and loads external weights. Every problem becomes a diagnostic and
//! reading goes on, so one run reports all of a file's errors. A value whose definition failed
//! is *poisoned*: its uses are skipped silently instead of adding a cascade of follow-up errors.
//! Type rules between ops are the verifier's (`crate::verify`), which runs on the result.

use crate::diag::{Diagnostic, Span};
use crate::ir::builder::FuncBuilder;
use crate::ir::types::MAX_ELEMENTS;
use crate::ir::{Attr, ElemType, Function, Loc, Module, OpKind, OpTag, Tensor, TensorType};
use crate::ir::{ValueId, WeightsFile};
use crate::syntax::ast::*;
use crate::syntax::lexer::{parse_tensor_type, scan_num_list, unescape};
use crate::syntax::opattrs::{build_kind, parse_f32, AttrReader};
use crate::weights::WeightStore;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Reads a parsed module. `base_dir` resolves the `weights` file. Returns `None` when any
/// error was reported.
pub fn read_module(
    ast: &ModuleAst<'_>,
    base_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<Module> {
    let errors_before = count_errors(diags);
    let mut module = Module {
        name: ast.name.map(|n| n.text.to_string()),
        attrs: Vec::new(),
        funcs: Vec::new(),
        span: ast.span,
    };
    let mut weights = None;
    let mut weights_failed = false;
    for a in &ast.attrs {
        if module.attrs.iter().any(|(k, _)| k == a.key.text) {
            diags.push(
                Diagnostic::error(format!("module attribute '{}' is given twice", a.key.text))
                    .at(a.key.span),
            );
            continue;
        }
        let Some(value) = generic_attr(&a.value, diags) else {
            continue;
        };
        if a.key.text == "weights" {
            weights = open_weights(&value, a.value.span(), base_dir, diags);
            if weights.is_none() {
                weights_failed = true;
                continue;
            }
        }
        module.attrs.push((a.key.text.to_string(), value));
    }
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for f in &ast.funcs {
        if let Some(prev) = seen.insert(f.name.text, f.name.span) {
            diags.push(
                Diagnostic::error(format!("redefinition of function @{}", f.name.text))
                    .at(f.name.span)
                    .with_label(prev, "first defined here"),
            );
        }
        let reader = FuncReader {
            names: HashMap::new(),
            poisoned: HashSet::new(),
            weights: weights.as_ref().map(|(w, file)| (w, file)),
            weights_failed,
            diags,
        };
        if let Some(func) = reader.read(f) {
            module.funcs.push(func);
        }
    }
    (count_errors(diags) == errors_before).then_some(module)
}

fn count_errors(diags: &[Diagnostic]) -> usize {
    diags
        .iter()
        .filter(|d| d.severity == crate::diag::Severity::Error)
        .count()
}

fn open_weights(
    value: &Attr,
    span: Span,
    base_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<(WeightStore, WeightsFile)> {
    let Attr::Str(written) = value else {
        diags.push(Diagnostic::error("module attribute 'weights' must be a file name").at(span));
        return None;
    };
    let path = base_dir.join(written);
    match WeightStore::open(&path) {
        Ok(store) => Some((
            store,
            WeightsFile {
                written: written.clone(),
                path,
            },
        )),
        Err(e) => {
            diags.push(Diagnostic::error(e.to_string()).at(span));
            None
        }
    }
}

/// Module attributes are kept as generic values.
fn generic_attr(v: &AttrValueAst<'_>, diags: &mut Vec<Diagnostic>) -> Option<Attr> {
    let number = |t: &str| -> Option<Attr> {
        if let Ok(i) = t.parse::<i64>() {
            Some(Attr::Int(i))
        } else if let Some(h) = t.strip_prefix("0x") {
            u64::from_str_radix(h, 16)
                .ok()
                .map(|b| Attr::Float(f64::from_bits(b)))
        } else {
            t.parse::<f64>().ok().map(Attr::Float)
        }
    };
    match v {
        AttrValueAst::Number(t, s) => {
            let a = number(t);
            if a.is_none() {
                diags.push(Diagnostic::error(format!("invalid number '{t}'")).at(*s));
            }
            a
        }
        AttrValueAst::Bool(b, _) => Some(Attr::Bool(*b)),
        AttrValueAst::Str(raw, s) => match unescape(raw) {
            Ok(v) => Some(Attr::Str(v)),
            Err(m) => {
                diags.push(Diagnostic::error(m).at(*s));
                None
            }
        },
        AttrValueAst::NumList(text, s) => {
            let mut items = Vec::new();
            let mut bad = None;
            let shape = scan_num_list(text, |t, off| {
                match number(t) {
                    Some(a) => items.push(a),
                    None => bad = Some(off),
                }
                Ok(())
            });
            match (shape, bad) {
                (Ok(sh), None) if sh.len() == 1 => Some(Attr::Array(items)),
                _ => {
                    diags.push(
                        Diagnostic::error("module attributes take flat lists of numbers").at(*s),
                    );
                    None
                }
            }
        }
        AttrValueAst::List(items, _) => items
            .iter()
            .map(|i| generic_attr(i, diags))
            .collect::<Option<Vec<_>>>()
            .map(Attr::Array),
    }
}

struct FuncReader<'a, 'd> {
    names: HashMap<&'a str, (ValueId, Span)>,
    poisoned: HashSet<&'a str>,
    weights: Option<(&'d WeightStore, &'d WeightsFile)>,
    /// The weights file could not be read (already reported): weight ops fail silently.
    weights_failed: bool,
    diags: &'d mut Vec<Diagnostic>,
}

impl<'a, 'd> FuncReader<'a, 'd> {
    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(message).at(span));
    }

    fn read(mut self, f: &'a FuncAst<'a>) -> Option<Function> {
        let errors_before = count_errors(self.diags);
        let mut func = Function::new(f.name.text, f.span);
        let mut b = FuncBuilder::new(&mut func);
        // Names defined anywhere in the body, to tell "used before its definition" apart from
        // "never defined".
        let later: HashMap<&str, Span> = f
            .body
            .iter()
            .filter_map(|op| op.result.map(|n| (n.text, n.span)))
            .collect();
        for (name, ty) in &f.args {
            let ty = self.read_type(ty);
            match ty {
                Some(ty) => {
                    let v = b.add_arg(ty, Some(name.text.to_string()), name.span);
                    self.define(*name, v);
                }
                None => {
                    self.poisoned.insert(name.text);
                }
            }
        }
        let results: Vec<Option<TensorType>> =
            f.results.iter().map(|t| self.read_type(t)).collect();
        b.set_result_types(results.into_iter().flatten().collect());
        for op in &f.body {
            self.read_op(&mut b, op, &later);
        }
        (count_errors(self.diags) == errors_before).then_some(func)
    }

    fn define(&mut self, name: Name<'a>, v: ValueId) {
        if let Some((_, prev)) = self.names.insert(name.text, (v, name.span)) {
            self.diags.push(
                Diagnostic::error(format!("redefinition of value %{}", name.text))
                    .at(name.span)
                    .with_label(prev, "first defined here"),
            );
        }
    }

    fn read_type(&mut self, t: &TypeAst<'_>) -> Option<TensorType> {
        let ty = match parse_tensor_type(t.text) {
            Ok(ty) => ty,
            Err(m) => {
                self.error(t.span, m);
                return None;
            }
        };
        let too_big = match ty.static_shape() {
            Some(_) => ty.num_elements().is_none(),
            // A dynamic type is too big if its static part alone is.
            None => ty
                .dims
                .iter()
                .filter_map(|d| d.as_static())
                .try_fold(1u64, |acc, d| {
                    acc.checked_mul(d).filter(|&n| n <= MAX_ELEMENTS)
                })
                .is_none(),
        };
        if too_big {
            self.error(
                t.span,
                format!("tensor type {ty} has more than 2^40 elements, the supported maximum"),
            );
            return None;
        }
        Some(ty)
    }

    /// Resolves a value operand; `None` (with a diagnostic unless poisoned) otherwise.
    fn operand(&mut self, o: &OperandAst<'a>, later: &HashMap<&str, Span>) -> Option<ValueId> {
        match o {
            OperandAst::Value(n) => {
                if let Some(&(v, _)) = self.names.get(n.text) {
                    return Some(v);
                }
                if self.poisoned.contains(n.text) {
                    return None;
                }
                match later.get(n.text) {
                    Some(def) => self.diags.push(
                        Diagnostic::error(format!(
                            "value %{} is used before it is defined",
                            n.text
                        ))
                        .at(n.span)
                        .with_label(*def, "defined here"),
                    ),
                    None => self.error(n.span, format!("use of undefined value %{}", n.text)),
                }
                None
            }
            other => {
                self.error(other.span(), "expected a value name (%x) here");
                None
            }
        }
    }

    fn read_op(&mut self, b: &mut FuncBuilder, op: &'a OpAst<'a>, later: &HashMap<&str, Span>) {
        let ok = self.try_read_op(b, op, later);
        if !ok {
            if let Some(r) = op.result {
                self.poisoned.insert(r.text);
            }
        }
    }

    fn try_read_op(
        &mut self,
        b: &mut FuncBuilder,
        op: &'a OpAst<'a>,
        later: &HashMap<&str, Span>,
    ) -> bool {
        let Some(tag) = OpTag::from_mnemonic(op.op.text) else {
            let mut d =
                Diagnostic::error(format!("unknown operation '{}'", op.op.text)).at(op.op.span);
            if !op.op.text.starts_with("nn.")
                && OpTag::from_mnemonic(&format!("nn.{}", op.op.text)).is_some()
            {
                d = d.with_note(format!("did you mean 'nn.{}'?", op.op.text));
            } else {
                d = d.with_note("`nnopt --list-ops` lists the operations");
            }
            self.diags.push(d);
            return false;
        };
        let loc = op.loc.and_then(|l| self.read_loc(&l));
        if tag == OpTag::Return {
            let operands: Option<Vec<ValueId>> =
                op.operands.iter().map(|o| self.operand(o, later)).collect();
            let types: Vec<Option<TensorType>> =
                op.types.iter().map(|t| self.read_type(t)).collect();
            let Some(operands) = operands else {
                return false;
            };
            if !op.types.is_empty() {
                if op.types.len() != operands.len() {
                    self.error(
                        op.span,
                        format!(
                            "return lists {} types for {} operands",
                            op.types.len(),
                            operands.len()
                        ),
                    );
                    return false;
                }
                for ((&v, t), ast) in operands.iter().zip(&types).zip(&op.types) {
                    if let Some(t) = t {
                        if t != b.func().ty(v) {
                            let m = format!(
                                "return type {t} does not match the operand's type {}",
                                b.func().ty(v)
                            );
                            self.error(ast.span, m);
                        }
                    }
                }
            }
            let r = b.push_return(&operands, op.span);
            if let Some(loc) = loc {
                b.set_loc(r, loc);
            }
            return true;
        }
        let Some(result) = op.result else {
            return false;
        };
        let ty = self.read_type(&op.types[0]);
        let arity = tag.arity();
        // The payload of a constant or weight is not a value operand; `payload` checks it.
        let payload_op = matches!(tag, OpTag::Constant | OpTag::Weight);
        if !payload_op && !arity.accepts(op.operands.len()) {
            let want = match arity {
                crate::ir::Arity::Exactly(1) => "1 operand".to_string(),
                crate::ir::Arity::Exactly(n) => format!("{n} operands"),
                crate::ir::Arity::Range(lo, hi) => format!("{lo} or {hi} operands"),
                crate::ir::Arity::AtLeast(1) => "at least 1 operand".to_string(),
                crate::ir::Arity::AtLeast(n) => format!("at least {n} operands"),
            };
            let given = match op.operands.len() {
                1 => "1 is given".to_string(),
                n => format!("{n} are given"),
            };
            self.error(
                op.op.span,
                format!("'{}' takes {want}, but {given}", tag.mnemonic()),
            );
        }
        let (kind, operands) = match tag {
            OpTag::Constant | OpTag::Weight => {
                if !op.attrs.is_empty() {
                    AttrReader::new(&op.attrs, tag, op.span, self.diags).finish();
                }
                let kind = ty.as_ref().and_then(|ty| self.payload(tag, op, ty));
                (kind, Some(Vec::new()))
            }
            _ => {
                let operands: Option<Vec<ValueId>> =
                    op.operands.iter().map(|o| self.operand(o, later)).collect();
                let mut r = AttrReader::new(&op.attrs, tag, op.op.span, self.diags);
                let kind = build_kind(tag, &mut r);
                let attrs_ok = r.finish();
                (kind.filter(|_| attrs_ok), operands)
            }
        };
        let (Some(kind), Some(operands), Some(ty)) = (kind, operands, ty) else {
            return false;
        };
        if !arity.accepts(operands.len()) {
            return false;
        }
        let v = b.push(
            kind,
            &operands,
            ty,
            Some(result.text.to_string()),
            result.span.to(op.span),
        );
        if let (Some(loc), Some(o)) = (loc, b.func().producer(v)) {
            b.set_loc(o, loc);
        }
        self.define(result, v);
        true
    }

    fn read_loc(&mut self, l: &LocAst<'_>) -> Option<Loc> {
        let text = unescape(l.text).map_err(|m| self.error(l.span, m)).ok()?;
        let Some((line, col)) = l.line_col else {
            return Some(Loc::Name(text));
        };
        match (line.parse(), col.parse()) {
            (Ok(line), Ok(col)) => Some(Loc::FileLineCol {
                file: text,
                line,
                col,
            }),
            _ => {
                self.error(
                    l.span,
                    "location line and column must be non-negative integers",
                );
                None
            }
        }
    }

    /// The payload of `nn.constant` (a dense literal) or `nn.weight` (a tensor name).
    fn payload(&mut self, tag: OpTag, op: &OpAst<'a>, ty: &TensorType) -> Option<OpKind> {
        let Some(shape) = ty.static_shape() else {
            self.error(
                op.types[0].span,
                format!("'{}' needs a static type", tag.mnemonic()),
            );
            return None;
        };
        if !ty.elem.is_float() {
            self.error(
                op.types[0].span,
                format!(
                    "'{}' holds floating-point data, not {}",
                    tag.mnemonic(),
                    ty.elem
                ),
            );
            return None;
        }
        match (tag, op.operands.as_slice()) {
            (OpTag::Constant, [OperandAst::Dense(d, _)]) => {
                self.dense(d, ty.elem, shape).map(OpKind::Constant)
            }
            (OpTag::Weight, [OperandAst::Str(raw, span)]) => {
                let name = unescape(raw).map_err(|m| self.error(*span, m)).ok()?;
                let value = self.weight(&name, *span, ty)?;
                Some(OpKind::Weight { name, value })
            }
            (OpTag::Constant, _) => {
                self.error(op.span, "'nn.constant' takes one dense<...> literal");
                None
            }
            _ => {
                self.error(
                    op.span,
                    "'nn.weight' takes one tensor name, e.g. nn.weight \"fc1.weight\"",
                );
                None
            }
        }
    }

    fn weight(&mut self, name: &str, span: Span, ty: &TensorType) -> Option<Tensor> {
        let Some((store, file)) = self.weights else {
            if self.weights_failed {
                return None;
            }
            self.diags.push(
                Diagnostic::error(format!("weight \"{name}\" needs a weights file"))
                    .at(span)
                    .with_note("name one with the module attribute weights = \"file.safetensors\""),
            );
            return None;
        };
        let t = match store.tensor(name) {
            Ok(t) => t,
            Err(e) => {
                self.error(span, e.to_string());
                return None;
            }
        };
        if t.ty() != *ty {
            self.error(
                span,
                format!(
                    "weight \"{name}\" in {} is {}, but the op declares {ty}",
                    file.written,
                    t.ty()
                ),
            );
            return None;
        }
        Some(t)
    }

    fn dense(&mut self, d: &DenseAst<'_>, elem: ElemType, shape: Vec<u64>) -> Option<Tensor> {
        match *d {
            DenseAst::Splat(text, span) => match parse_elem_bits(text, elem) {
                Some(bits) => Some(Tensor::splat_bits(elem, shape, bits)),
                None => {
                    self.error(span, format!("'{text}' is not a valid {elem} value"));
                    None
                }
            },
            DenseAst::List(text, span) => {
                let n = shape.iter().product::<u64>() as usize;
                let mut bytes: Vec<u8> = Vec::with_capacity(n * elem.size());
                let scanned = scan_num_list(text, |item, _| {
                    let bits = parse_elem_bits(item, elem)
                        .ok_or_else(|| format!("'{item}' is not a valid {elem} value"))?;
                    match elem.size() {
                        4 => bytes.extend_from_slice(&bits.to_le_bytes()),
                        _ => bytes.extend_from_slice(&(bits as u16).to_le_bytes()),
                    }
                    Ok(())
                });
                match scanned {
                    Ok(lit_shape)
                        if lit_shape == shape
                            || (shape.is_empty() && bytes.len() == elem.size()) =>
                    {
                        Tensor::from_bytes(elem, shape, Arc::from(bytes))
                    }
                    Ok(lit_shape) => {
                        self.error(
                            span,
                            format!(
                                "literal has shape [{}] but the type says [{}]",
                                join(&lit_shape),
                                join(&shape)
                            ),
                        );
                        None
                    }
                    Err((off, m)) => {
                        let at = Span::new(
                            span.file,
                            span.start as usize + off,
                            span.start as usize + off + 1,
                        );
                        self.error(at, m);
                        None
                    }
                }
            }
            DenseAst::Hex(raw, span) => {
                let bytes = raw.strip_prefix("0x").and_then(decode_hex);
                let Some(bytes) = bytes else {
                    self.error(
                        span,
                        "a hex literal is \"0x\" followed by pairs of hex digits",
                    );
                    return None;
                };
                let want = shape.iter().product::<u64>() * elem.size() as u64;
                if bytes.len() as u64 != want {
                    self.error(
                        span,
                        format!(
                            "hex literal has {} bytes but tensor<{}x{elem}> needs {want}",
                            bytes.len(),
                            shape
                                .iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join("x")
                        ),
                    );
                    return None;
                }
                Tensor::from_bytes(elem, shape, Arc::from(bytes))
            }
        }
    }
}

fn join(v: &[u64]) -> String {
    v.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A literal element as the bit pattern of `elem`: `0x` bits (at most the element's width) or a
/// decimal rounded to nearest.
pub fn parse_elem_bits(t: &str, elem: ElemType) -> Option<u32> {
    if let Some(h) = t.strip_prefix("0x") {
        return (h.len() <= elem.size() * 2)
            .then(|| u32::from_str_radix(h, 16).ok())
            .flatten();
    }
    match elem {
        ElemType::F32 => parse_f32(t).map(f32::to_bits),
        ElemType::F16 => t
            .parse::<f64>()
            .ok()
            .map(|v| half::f16::from_f64(v).to_bits() as u32),
        ElemType::BF16 => t
            .parse::<f64>()
            .ok()
            .map(|v| half::bf16::from_f64(v).to_bits() as u32),
        // The reader refuses integer constants before reading their elements.
        ElemType::I64 => None,
    }
}

fn decode_hex(h: &str) -> Option<Vec<u8>> {
    let b = h.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks_exact(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}
