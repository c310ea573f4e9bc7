//! Ahead-of-time compilation (`nnopt compile`): one function of a model compiled for fixed
//! input shapes into an object file, with the C source that gives it its C ABI (`docs/abi.md`)
//! and the C header a program includes.
//!
//! The artifact is self-contained. Its functions are renamed `<prefix>__impl_<name>` (so two
//! models link into one program), and the C glue compiled beside them provides, under the
//! same prefix, what nnopt's loader provides to JIT-loaded code: `memrefCopy` (in C), the
//! allocator of the temporaries ([`POOL`], which keeps freed blocks for the next call as
//! `nnopt run`'s does, and `<prefix>_trim` to give them back), the weights (packed as the
//! compiled code reads them, included from raw files with the assembler's `.incbin`, 64-byte
//! aligned in read-only data) and the entry point `<prefix>_<func>(inputs..., outputs...)` over
//! plain contiguous float buffers. The code is single-threaded: the async runtime of
//! `--threads` lives in nnopt (`async_runtime.rs`) and is not part of the artifact.

use super::abi::Signature;
use super::entry::{context, lower_module, specialized};
use super::jit::{lower_to_llvm, prepare_weights, Pipeline};
use super::object::{codegen_partitions, emit_object};
use super::target::Target;
use crate::diag::Diagnostic;
use crate::ir;
use ndarray::{ArrayD, IxDyn};
use std::fmt::Write;

/// One function compiled ahead of time.
pub struct Artifact {
    /// The relocatable objects of the compiled code, one per code generation partition
    /// (functions renamed, see the module docs).
    pub objects: Vec<Vec<u8>>,
    /// The calling convention, with the weights as the code reads them (packed).
    pub signature: Signature,
    /// The input shapes the code is compiled for.
    pub shapes: Vec<Vec<usize>>,
}

/// The name of function `name` of the compiled module inside an artifact.
fn internal_name(prefix: &str, name: &str) -> String {
    format!("{prefix}__impl_{name}")
}

/// Compiles function `func` of `m` for inputs of `shapes` and for `target` into an
/// [`Artifact`] whose symbols start with `prefix` (a C identifier).
pub fn compile_artifact(
    m: &ir::Module,
    func: &str,
    shapes: &[Vec<usize>],
    prefix: &str,
    target: &Target,
) -> Result<Artifact, Vec<Diagnostic>> {
    let inputs: Vec<ArrayD<f32>> = shapes.iter().map(|s| ArrayD::zeros(IxDyn(s))).collect();
    let cx = context();
    let mut lowered = lower_module(&cx, &specialized(m, func, &inputs)?, target)?;
    prepare_weights(&mut lowered.signatures);
    let fail = |e: String| vec![Diagnostic::error(e).at(m.span)];
    let pipeline = Pipeline::choose(&cx, &lowered, None, 1).map_err(fail)?;
    lower_to_llvm(&cx, &mut lowered, pipeline, 1).map_err(fail)?;
    // Defined functions, and the runtime functions the glue defines; the C library's stay.
    let rename = |name: &str, declared: bool| {
        (!declared || GLUE_DEFINES.contains(&name)).then(|| internal_name(prefix, name))
    };
    let objects =
        emit_object(&lowered.module, target, Some(&rename), codegen_partitions()).map_err(fail)?;
    let signature = lowered
        .signatures
        .into_iter()
        .find(|s| s.name == func)
        .ok_or_else(|| vec![Diagnostic::error(format!("no function @{func}")).at(m.span)])?;
    Ok(Artifact {
        objects,
        signature,
        shapes: shapes.to_vec(),
    })
}

/// The functions the compiled code calls that the glue defines (under the artifact's prefix)
/// instead of the C library.
const GLUE_DEFINES: [&str; 4] = ["memrefCopy", "malloc", "aligned_alloc", "free"];

/// The allocator of the temporaries, in C, as `jit.rs`'s pool: every call asks for the same
/// sizes in the same order, so freed blocks are kept by size (at most `LIMIT` bytes) and handed
/// out again, and from the second call on no temporary reaches the C library. glibc serves
/// blocks this large with `mmap` or trims them off the heap top, so without the pool each call
/// paid the page faults of all its temporaries (`docs/performance.md`). The free blocks are
/// kept in lists hashed by size, so a call finds its block without walking every free one (a
/// model has hundreds). A spin lock (the critical sections are a walk of a short list) keeps
/// the entry callable from several threads without linking a thread library. Blocks are
/// 64-byte aligned with a 64-byte header holding the size and, while free, the next free
/// block. `PREFIX_trim` frees the kept blocks and
/// returns their bytes.
const POOL: &str = r#"
#include <stdlib.h>
#include <sched.h>

typedef struct nnopt_block { struct nnopt_block *next; size_t size; } nnopt_block;
#define NNOPT_BUCKETS 256
static nnopt_block *PREFIX__free_blocks[NNOPT_BUCKETS];
static size_t PREFIX__free_bytes;
static char PREFIX__pool_lock;

static nnopt_block **PREFIX__bucket(size_t size) {
  return &PREFIX__free_blocks[(size / 64) % NNOPT_BUCKETS];
}

static void PREFIX__lock(void) {
  while (__atomic_test_and_set(&PREFIX__pool_lock, __ATOMIC_ACQUIRE)) sched_yield();
}
static void PREFIX__unlock(void) { __atomic_clear(&PREFIX__pool_lock, __ATOMIC_RELEASE); }

__attribute__((visibility("hidden")))
void *PREFIX__impl_malloc(size_t size) {
  PREFIX__lock();
  for (nnopt_block **b = PREFIX__bucket(size); *b; b = &(*b)->next) {
    if ((*b)->size == size) {
      nnopt_block *hit = *b;
      *b = hit->next;
      PREFIX__free_bytes -= size;
      PREFIX__unlock();
      return (char *)hit + 64;
    }
  }
  PREFIX__unlock();
  if (size > (size_t)-1 - 128) return NULL;
  nnopt_block *b = aligned_alloc(64, (size + 64 + 63) / 64 * 64);
  if (!b) return NULL;
  b->size = size;
  return (char *)b + 64;
}

__attribute__((visibility("hidden")))
void *PREFIX__impl_aligned_alloc(size_t align, size_t size) {
  return align > 64 ? NULL : PREFIX__impl_malloc(size);
}

__attribute__((visibility("hidden")))
void PREFIX__impl_free(void *p) {
  if (!p) return;
  nnopt_block *b = (nnopt_block *)((char *)p - 64);
  PREFIX__lock();
  if (PREFIX__free_bytes + b->size <= LIMIT) {
    nnopt_block **bucket = PREFIX__bucket(b->size);
    PREFIX__free_bytes += b->size;
    b->next = *bucket;
    *bucket = b;
    PREFIX__unlock();
    return;
  }
  PREFIX__unlock();
  free(b);
}

size_t PREFIX_trim(void) {
  nnopt_block *lists[NNOPT_BUCKETS];
  PREFIX__lock();
  for (int i = 0; i < NNOPT_BUCKETS; i++) {
    lists[i] = PREFIX__free_blocks[i];
    PREFIX__free_blocks[i] = NULL;
  }
  size_t bytes = PREFIX__free_bytes;
  PREFIX__free_bytes = 0;
  PREFIX__unlock();
  for (int i = 0; i < NNOPT_BUCKETS; i++) {
    for (nnopt_block *b = lists[i]; b;) {
      nnopt_block *next = b->next;
      free(b);
      b = next;
    }
  }
  return bytes;
}
"#;

/// `memrefCopy` (MLIR's runtime helper for strided copies) in C, as `jit.rs` implements it.
const MEMREF_COPY: &str = r#"
typedef struct { int64_t rank; const int64_t *desc; } nnopt_unranked;

__attribute__((visibility("hidden")))
void PREFIX__impl_memrefCopy(int64_t elem, const nnopt_unranked *src, const nnopt_unranked *dst) {
  int64_t rank = src->rank;
  const int64_t *s = src->desc, *d = dst->desc;
  const char *sp = (const char *)(intptr_t)s[1];
  char *dp = (char *)(intptr_t)d[1];
  for (int64_t i = 0; i < rank; i++)
    if (s[3 + i] <= 0) return;
  /* Whole innermost rows at once when both are contiguous along the last axis. */
  int rows = rank > 0 && s[3 + 2 * rank - 1] == 1 && d[3 + 2 * rank - 1] == 1;
  int64_t inner = rows ? s[3 + rank - 1] : 1, outer = rows ? rank - 1 : rank;
  int64_t idx[outer > 0 ? outer : 1];
  memset(idx, 0, sizeof idx);
  for (;;) {
    int64_t so = s[2], dof = d[2];
    for (int64_t i = 0; i < outer; i++) {
      so += idx[i] * s[3 + rank + i];
      dof += idx[i] * d[3 + rank + i];
    }
    memmove(dp + dof * elem, sp + so * elem, (size_t)(inner * elem));
    int64_t k = outer;
    for (;;) {
      if (k == 0) return;
      k--;
      if (++idx[k] < s[3 + k]) break;
      idx[k] = 0;
    }
  }
}
"#;

impl Artifact {
    /// The size of output `i`.
    fn output_shape(&self, i: usize) -> Vec<u64> {
        self.signature.outputs[i]
            .iter()
            .map(|d| d.eval(&self.shapes).unwrap_or(0))
            .collect()
    }

    /// The raw little-endian f32 bytes of weight `i`, as the code reads them.
    pub fn weight_bytes(&self, i: usize) -> Vec<u8> {
        let t = &self.signature.weights[i].value;
        match t.raw_bytes() {
            Some(b) if !t.is_splat() && t.elem() == ir::ElemType::F32 => b.to_vec(),
            _ => t
                .to_f32_vec()
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        }
    }

    /// The C type and the header's name of input `i`'s elements: `float`, or `int64_t` for
    /// token ids.
    fn input_c_type(&self, i: usize) -> (&'static str, &'static str) {
        match self.signature.inputs[i].elem {
            ir::ElemType::I64 => ("int64_t", "int64"),
            _ => ("float", "float32"),
        }
    }

    /// The entry point's name.
    pub fn entry(&self, prefix: &str) -> String {
        format!("{prefix}_{}", c_ident(&self.signature.name))
    }

    /// The function that frees the memory kept for later calls.
    fn trim(&self, prefix: &str) -> String {
        format!("{prefix}_trim")
    }

    /// The symbols a shared library exports: the entry point and [`Artifact::trim`].
    pub fn exports(&self, prefix: &str) -> [String; 2] {
        [self.entry(prefix), self.trim(prefix)]
    }

    /// The entry point's C declaration.
    fn prototype(&self, prefix: &str) -> String {
        let mut params: Vec<String> = (0..self.shapes.len())
            .map(|i| format!("const {} *in{i}", self.input_c_type(i).0))
            .collect();
        params.extend((0..self.signature.outputs.len()).map(|i| format!("float *out{i}")));
        format!("void {}({})", self.entry(prefix), params.join(", "))
    }

    /// The C header of the artifact: the entry point, the buffer sizes and shapes.
    pub fn header(&self, prefix: &str, source: &str) -> String {
        let guard = format!("{}_H", prefix.to_ascii_uppercase());
        let upper = self.entry(prefix).to_ascii_uppercase();
        let mut h = format!(
            "/* Generated by `nnopt compile` from {source}: function @{}.\n * The C ABI is described in nnopt's docs/abi.md. Every buffer is contiguous, row-major\n * float32 (int64 for token ids, clamped into the embedding table); the weights are inside the\n * artifact. The function runs on the calling thread and may be called from several threads\n * at once. It keeps the memory of its temporaries for the next call; {trim}() frees it and\n * returns its size in bytes. */\n#ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n",
            self.signature.name,
            trim = self.trim(prefix)
        );
        let mut dims = |kind: &str, i: usize, elem: &str, shape: &[u64]| {
            let n: u64 = shape.iter().product();
            let list: Vec<String> = shape.iter().map(u64::to_string).collect();
            let _ = writeln!(
                h,
                "/* {kind}{i}: {elem}[{}] */\n#define {upper}_{}{i}_SIZE {n}",
                list.join("]["),
                kind.to_ascii_uppercase()
            );
        };
        for (i, s) in self.shapes.iter().enumerate() {
            let s: Vec<u64> = s.iter().map(|&n| n as u64).collect();
            dims("in", i, self.input_c_type(i).1, &s);
        }
        for i in 0..self.signature.outputs.len() {
            dims("out", i, "float32", &self.output_shape(i));
        }
        let _ = write!(
            h,
            "\n{};\nsize_t {}(void);\n\n#ifdef __cplusplus\n}}\n#endif\n\n#endif\n",
            self.prototype(prefix),
            self.trim(prefix)
        );
        h
    }

    /// The C glue: `memrefCopy`, the weights (weight `i` from `weight_files[i]`) and the entry.
    pub fn glue(&self, prefix: &str, weight_files: &[std::path::PathBuf]) -> String {
        let mut c = String::from("#include <stdint.h>\n#include <string.h>\n");
        c.push_str(&MEMREF_COPY.replace("PREFIX", prefix));
        c.push_str(
            &POOL
                .replace("PREFIX", prefix)
                .replace("LIMIT", &format!("{}u", super::jit::POOL_LIMIT)),
        );
        for (i, f) in weight_files.iter().enumerate() {
            let sym = internal_name(prefix, &format!("w{i}"));
            let _ = writeln!(
                c,
                "__asm__(\".section .rodata\\n.balign 64\\n.globl {sym}\\n.hidden {sym}\\n{sym}:\\n.incbin \\\"{}\\\"\\n.previous\\n\");\nextern const float {sym}[];",
                f.display()
            );
        }
        let sig = &self.signature;
        let n = self.shapes.len() + sig.weights.len() + sig.outputs.len();
        let ciface = internal_name(prefix, &format!("_mlir_ciface_{}", sig.name));
        let _ = writeln!(
            c,
            "void {ciface}({});\n\n{} {{",
            vec!["void *"; n].join(", "),
            self.prototype(prefix)
        );
        let mut descriptor = |name: &str, ptr: &str, shape: &[u64]| {
            let mut fields = vec![format!("(int64_t)(intptr_t){ptr}"); 2];
            fields.push("0".into());
            fields.extend(shape.iter().map(u64::to_string));
            let mut stride = 1u64;
            let mut strides = vec![0u64; shape.len()];
            for k in (0..shape.len()).rev() {
                strides[k] = stride;
                stride *= shape[k];
            }
            fields.extend(strides.iter().map(u64::to_string));
            let _ = writeln!(c, "  int64_t {name}[] = {{{}}};", fields.join(", "));
        };
        let mut args = Vec::new();
        for (i, s) in self.shapes.iter().enumerate() {
            let s: Vec<u64> = s.iter().map(|&n| n as u64).collect();
            descriptor(&format!("a{i}"), &format!("in{i}"), &s);
            args.push(format!("a{i}"));
        }
        for (i, w) in sig.weights.iter().enumerate() {
            let sym = internal_name(prefix, &format!("w{i}"));
            descriptor(&format!("w{i}"), &sym, &w.arg_shape());
            args.push(format!("w{i}"));
        }
        for i in 0..sig.outputs.len() {
            descriptor(&format!("r{i}"), &format!("out{i}"), &self.output_shape(i));
            args.push(format!("r{i}"));
        }
        let _ = writeln!(c, "  {ciface}({});\n}}", args.join(", "));
        c
    }
}

/// `s` as a C identifier: other characters become `_`, a leading digit gets a `_` before it.
pub fn c_ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|ch: char| ch.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}
