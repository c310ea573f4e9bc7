//! The run cache's side of compiling (`nnopt run`, `nnopt bench`): the key of a compile, built
//! from the NNIR module before anything is lowered, and the entry, which holds what a hit needs
//! to skip lowering, MLIR's passes and LLVM: the object file and each function's calling
//! convention. The store itself (files, checksums, warnings) is `tool::cache`'s, behind
//! [`ObjectCache`].
//!
//! The key is the specialized module's NNIR text (ops, attributes, inline constants, the
//! shapes the code is specialized to), a 64-bit foldhash of every `nn.weight`'s bytes with its
//! name, shape and element type, the pipeline (`--mlir-pipeline` or the built-in one for the
//! thread count), the threads, the code generation partitions, the target's CPU and features,
//! and the nnopt build (version,
//! and the executable's size and modification time, so a rebuilt nnopt never reuses another
//! build's code). Weights are keyed by content, not by their file's path and modification
//! time: a weight file changed in place is a miss even when its time is kept, and the content
//! is read anyway (the run reads every weight). Hashing runs at memory speed (`foldhash`'s
//! long-input loop), a few milliseconds for ResNet-50's 100 MB.
//!
//! The entry is `object count u32 | (object length u64 | object)* | signature count u32 |
//! signatures`, little-endian (one object per code generation partition, `object.rs`);
//! a signature is its function's name, its weights' names (checked against the module's
//! `nn.weight` ops on a hit) and packings, its outputs' dimensions and its constraints.
//! The input types (and the token ids' bounds, `abi::id_rows`) are the specialized function's
//! argument types and the weights' values come
//! from the module, as lowering takes them (`boundary.rs`: one argument per `nn.weight` op, in
//! op order). An entry that does not decode or does not match the module is compiled again.

use super::abi::{DimVal, Signature, WeightArg};
use super::jit::{scheduled_pipeline, Jit, DEFAULT_PIPELINE};
use super::packing::Packing;
use super::target::Target;
use crate::ir::{self, OpKind};
use std::fmt::Write;
use std::hash::{BuildHasher, Hasher};

/// Where compiled code is kept between runs (`tool::cache` keeps it in files). `key` is
/// everything the code depends on ([`key`] builds it); the store hashes it.
pub trait ObjectCache {
    /// The entry stored under `key`, if any (and intact).
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores `entry` under `key`; failures are the store's to report.
    fn put(&self, key: &str, entry: &[u8]);
    /// The NNIR text of `m` (`syntax::printer::print_module`), part of the key: the store
    /// prints it because the lowering sits below the syntax layer and cannot.
    fn module_text(&self, m: &ir::Module) -> String;
}

/// An entry holding `objects` and the calling conventions `meta` ([`encode_signatures`]).
pub(super) fn entry(objects: &[Vec<u8>], meta: &[u8]) -> Vec<u8> {
    let mut entry = Vec::new();
    entry.extend_from_slice(&(objects.len() as u32).to_le_bytes());
    for object in objects {
        entry.extend_from_slice(&(object.len() as u64).to_le_bytes());
        entry.extend_from_slice(object);
    }
    entry.extend_from_slice(meta);
    entry
}

/// Everything code compiled from the specialized module `m` (whose NNIR text the store gives)
/// with `pipeline`, `threads` and `target` depends on (see the module docs).
pub(super) fn key(
    m: &ir::Module,
    cache: &dyn ObjectCache,
    pipeline: Option<&str>,
    threads: u64,
    target: &Target,
) -> String {
    let pipeline = match pipeline {
        Some(p) => format!("given {p}"),
        None => format!(
            "scheduled {} default {DEFAULT_PIPELINE}",
            scheduled_pipeline(threads)
        ),
    };
    let build = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| format!("{} {:?}", m.len(), m.modified().ok()))
        .unwrap_or_default();
    let mut key = format!(
        "nnopt {} {build}\ntarget {} {}\nthreads {}\npartitions {}\npipeline {pipeline}\n",
        env!("CARGO_PKG_VERSION"),
        target.cpu,
        target.features.join(","),
        threads,
        super::object::codegen_partitions()
    );
    key.push_str(&cache.module_text(m));
    for f in &m.funcs {
        for (name, value) in weights(f) {
            let _ = writeln!(
                key,
                "weight @{} {name:?} {} {:016x}",
                f.name,
                value.ty(),
                content_hash(value)
            );
        }
    }
    key
}

/// The `nn.weight` ops of `f` in op order: each one's name and value.
fn weights(f: &ir::Function) -> impl Iterator<Item = (&str, &ir::Tensor)> {
    f.ops().filter_map(move |op| match f.kind(op) {
        OpKind::Weight { name, value } => Some((name.as_str(), value)),
        _ => None,
    })
}

/// A 64-bit hash of `t`'s bytes (foldhash's quality hasher with a fixed seed: stable within a
/// build, which is part of the key).
fn content_hash(t: &ir::Tensor) -> u64 {
    let mut h = foldhash::quality::FixedState::with_seed(0x6e6e_6f70_7400_0001).build_hasher();
    t.for_each_byte_chunk(|b| h.write(b));
    h.finish()
}

/// The code of entry `entry` linked into the process for the specialized module `m`, or `None`
/// when the entry does not decode, does not match `m`'s functions or does not link.
pub(super) fn load(entry: &[u8], m: &ir::Module, threads: u64) -> Option<Jit> {
    let mut r = Reader(entry);
    let objects = (0..r.u32()?)
        .map(|_| {
            let n = r.u64()? as usize;
            r.bytes(n).map(<[u8]>::to_vec)
        })
        .collect::<Option<Vec<_>>>()?;
    let count = r.u32()? as usize;
    if count != m.funcs.len() {
        return None;
    }
    let mut signatures = Vec::with_capacity(count);
    for f in &m.funcs {
        signatures.push(r.signature(f)?);
    }
    if !r.0.is_empty() {
        return None;
    }
    Jit::load(&objects, signatures, threads).ok()
}

/// What an entry stores of `signatures` (see the module docs).
pub(super) fn encode_signatures(signatures: &[Signature]) -> Vec<u8> {
    let mut w = Vec::new();
    let u32 = |w: &mut Vec<u8>, n: usize| w.extend_from_slice(&(n as u32).to_le_bytes());
    let u64 = |w: &mut Vec<u8>, n: u64| w.extend_from_slice(&n.to_le_bytes());
    let text = |w: &mut Vec<u8>, s: &str| {
        u32(w, s.len());
        w.extend_from_slice(s.as_bytes());
    };
    let dim = |w: &mut Vec<u8>, d: DimVal| match d {
        DimVal::Static(n) => {
            w.push(0);
            u64(w, n);
        }
        DimVal::Arg { arg, axis, factor } => {
            w.push(1);
            u64(w, arg as u64);
            u64(w, axis as u64);
            u64(w, factor);
        }
    };
    u32(&mut w, signatures.len());
    for s in signatures {
        text(&mut w, &s.name);
        u32(&mut w, s.weights.len());
        for a in &s.weights {
            text(&mut w, &a.name);
            // Tag 0: as it is; 1: dense panels; 2: phases of a strided conv.
            let (tag, p, q) = match a.packed {
                None => (0, 0, 0),
                Some(Packing::Dense(tn)) => (1, tn, 0),
                Some(Packing::Phases([sh, sw])) => (2, sh, sw),
            };
            [tag, p, q].into_iter().for_each(|v| u64(&mut w, v));
        }
        u32(&mut w, s.outputs.len());
        for dims in &s.outputs {
            u32(&mut w, dims.len());
            dims.iter().for_each(|&d| dim(&mut w, d));
        }
        u32(&mut w, s.constraints.len());
        for &(a, b) in &s.constraints {
            dim(&mut w, a);
            dim(&mut w, b);
        }
    }
    w
}

/// Reads an entry front to back; every read is `None` past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn text(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.bytes(n)?).ok()
    }

    fn dim(&mut self) -> Option<DimVal> {
        match self.bytes(1)?[0] {
            0 => Some(DimVal::Static(self.u64()?)),
            1 => Some(DimVal::Arg {
                arg: self.u64()? as usize,
                axis: self.u64()? as usize,
                factor: self.u64()?,
            }),
            _ => None,
        }
    }

    /// The signature of function `f`, its input types and weights taken from `f`.
    fn signature(&mut self, f: &ir::Function) -> Option<Signature> {
        if self.text()? != f.name {
            return None;
        }
        let module_weights: Vec<(&str, &ir::Tensor)> = weights(f).collect();
        if self.u32()? as usize != module_weights.len() {
            return None;
        }
        let mut weights = Vec::with_capacity(module_weights.len());
        for (name, value) in module_weights {
            if self.text()? != name {
                return None;
            }
            let packed = match [self.u64()?, self.u64()?, self.u64()?] {
                [0, ..] => None,
                [1, tn, _] if tn > 0 => Some(Packing::Dense(tn)),
                [2, sh, sw] if sh > 0 && sw > 0 => Some(Packing::Phases([sh, sw])),
                _ => return None,
            };
            weights.push(WeightArg {
                name: name.to_string(),
                value: value.clone(),
                packed,
            });
        }
        let outputs = (0..self.u32()?)
            .map(|_| (0..self.u32()?).map(|_| self.dim()).collect())
            .collect::<Option<_>>()?;
        let constraints = (0..self.u32()?)
            .map(|_| Some((self.dim()?, self.dim()?)))
            .collect::<Option<_>>()?;
        Some(Signature {
            name: f.name.clone(),
            inputs: f.args().iter().map(|&a| f.ty(a).clone()).collect(),
            id_rows: super::abi::id_rows(f),
            weights,
            outputs,
            constraints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::lower_module;

    /// A store that keeps nothing: what [`key`] needs of one.
    struct Keys;

    impl ObjectCache for Keys {
        fn get(&self, _: &str) -> Option<Vec<u8>> {
            None
        }

        fn put(&self, _: &str, _: &[u8]) {}

        fn module_text(&self, m: &ir::Module) -> String {
            crate::syntax::printer::print_module(m)
        }
    }

    /// A one-function module of a packed dense layer whose two weights are in a safetensors
    /// file of `dir`, `bias` its bias values.
    fn model(dir: &std::path::Path, bias: [f32; 3]) -> ir::Module {
        let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.25).collect();
        crate::lower::tests::weight_file_model(dir, &w, &bias)
    }

    #[test]
    fn signatures_are_rebuilt_from_the_entry_and_the_module() {
        let dir = tempfile::tempdir().unwrap();
        let m = model(dir.path(), [1.0, 2.0, 3.0]);
        let cx = crate::lower::context();
        let want = lower_module(&cx, &m, &Target::host()).unwrap().signatures;
        let bytes = encode_signatures(&want);
        let mut r = Reader(&bytes);
        assert_eq!(r.u32(), Some(1));
        let got = r.signature(&m.funcs[0]).expect("decodes");
        assert!(r.0.is_empty());
        let w = &want[0];
        assert_eq!(got.name, w.name);
        assert_eq!(got.inputs, w.inputs);
        assert_eq!(got.id_rows, w.id_rows);
        assert_eq!(got.outputs, w.outputs);
        assert_eq!(got.constraints, w.constraints);
        assert_eq!(got.weights.len(), 2);
        for (a, b) in got.weights.iter().zip(&w.weights) {
            assert_eq!((&a.name, a.packed), (&b.name, b.packed));
            assert!(a.value.bit_eq(&b.value));
        }
        // Every truncation is refused, and so is a module whose weights are named otherwise.
        for cut in 0..bytes.len() {
            let mut r = Reader(&bytes[..cut]);
            assert!(r.u32().and_then(|_| r.signature(&m.funcs[0])).is_none());
        }
        let mut other = m.clone();
        other.funcs[0].name = "g".to_string();
        assert!(Reader(&bytes[4..]).signature(&other.funcs[0]).is_none());
    }

    #[test]
    fn the_key_follows_weights_target_threads_and_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let m = model(dir.path(), [1.0, 2.0, 3.0]);
        let host = Target::host();
        let key =
            |m: &ir::Module, pipeline, threads, target| key(m, &Keys, pipeline, threads, target);
        let base = key(&m, None, 1, &host);
        assert_eq!(key(&m, None, 1, &host), base, "the key is deterministic");
        // The same text, another bias value (in another directory: `m` maps its file): another
        // key.
        let other = tempfile::tempdir().unwrap();
        let changed = model(other.path(), [1.0, 2.0, 3.5]);
        assert_eq!(
            crate::syntax::printer::print_module(&changed),
            crate::syntax::printer::print_module(&m)
        );
        assert_ne!(key(&changed, None, 1, &host), base);
        assert_ne!(key(&m, None, 2, &host), base);
        assert_ne!(key(&m, Some(DEFAULT_PIPELINE), 1, &host), base);
        let forced = Target::resolve(None, Some("-avx2")).unwrap();
        assert_ne!(key(&m, None, 1, &forced), base);
    }
}
