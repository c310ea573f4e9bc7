//! The CPU the compiled code is for: its name, LLVM feature string, vector width, vector
//! register count and cache sizes. The schedules derive their register tiles from it
//! (`schedule::Tiles`), and [`Target::mark_functions`] puts its CPU and features on every
//! `llvm.func`, so the JIT's code generator (which honours them per function) emits code for it
//! and not for the machine the compiler runs on.
//!
//! Two sources, as `llc -mcpu/-mattr` takes them:
//! - the host ([`Target::host`]): LLVM's host CPU name and feature list, the cache sizes from
//!   Linux's sysfs (documented defaults where it is not readable);
//! - a forced target ([`Target::resolve`] with `--target-cpu` and/or `--target-features`): the
//!   CPU must be one of [`CPUS`] (or the host's own name) and every feature one LLVM reports for
//!   the host or one of [`FEATURES`]; anything else is an error the CLI reports as a usage
//!   error. A forced target's caches are [`DEFAULT_L1D`] and [`DEFAULT_L2`].
//!
//! Only what the schedules need is modelled: the widest f32 vector ([`Isa`]) and how many such
//! registers there are. SVE is treated as NEON's 128 bits (the schedules use fixed-width
//! vectors).

use melior::ir::attribute::StringAttribute;
use melior::ir::operation::OperationRefMut;
use melior::ir::operation::{OperationLike, OperationMutLike, WalkOrder, WalkResult};
use melior::ir::{Attribute, Module as MlirModule};
use melior::Context;
use std::fmt;

/// The widest f32 vector instructions a target has, in increasing order on each architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// x86-64's baseline: 128-bit xmm, 16 registers.
    Sse,
    /// 256-bit ymm, 16 registers, without FMA.
    Avx,
    /// 256-bit ymm, 16 registers, with FMA.
    Avx2,
    /// 512-bit zmm, 32 registers.
    Avx512,
    /// AArch64's 128-bit v registers, 32 of them (SVE counted as NEON).
    Neon,
}

impl Isa {
    /// f32 lanes of one vector register.
    pub fn lanes(self) -> u64 {
        match self {
            Isa::Sse | Isa::Neon => 4,
            Isa::Avx | Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }

    /// Architectural vector registers.
    pub fn registers(self) -> u64 {
        match self {
            Isa::Sse | Isa::Avx | Isa::Avx2 => 16,
            Isa::Avx512 | Isa::Neon => 32,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Isa::Sse => "SSE",
            Isa::Avx => "AVX",
            Isa::Avx2 => "AVX2",
            Isa::Avx512 => "AVX-512",
            Isa::Neon => "NEON",
        }
    }
}

/// The CPUs `--target-cpu` accepts besides the host's own name (LLVM's names), with the widest
/// vector ISA each has. x86 names on an x86 host, AArch64 names on an AArch64 host: the JIT
/// compiles for the architecture it runs on.
#[cfg(target_arch = "x86_64")]
pub const CPUS: &[(&str, Isa)] = &[
    ("x86-64", Isa::Sse),
    ("x86-64-v2", Isa::Sse),
    ("nehalem", Isa::Sse),
    ("westmere", Isa::Sse),
    ("sandybridge", Isa::Avx),
    ("ivybridge", Isa::Avx),
    ("x86-64-v3", Isa::Avx2),
    ("haswell", Isa::Avx2),
    ("broadwell", Isa::Avx2),
    ("skylake", Isa::Avx2),
    ("alderlake", Isa::Avx2),
    ("raptorlake", Isa::Avx2),
    ("meteorlake", Isa::Avx2),
    ("znver1", Isa::Avx2),
    ("znver2", Isa::Avx2),
    ("znver3", Isa::Avx2),
    ("x86-64-v4", Isa::Avx512),
    ("skylake-avx512", Isa::Avx512),
    ("cascadelake", Isa::Avx512),
    ("cooperlake", Isa::Avx512),
    ("icelake-client", Isa::Avx512),
    ("icelake-server", Isa::Avx512),
    ("tigerlake", Isa::Avx512),
    ("sapphirerapids", Isa::Avx512),
    ("emeraldrapids", Isa::Avx512),
    ("graniterapids", Isa::Avx512),
    ("znver4", Isa::Avx512),
    ("znver5", Isa::Avx512),
];
#[cfg(not(target_arch = "x86_64"))]
pub const CPUS: &[(&str, Isa)] = &[
    ("generic", Isa::Neon),
    ("cortex-a53", Isa::Neon),
    ("cortex-a55", Isa::Neon),
    ("cortex-a72", Isa::Neon),
    ("cortex-a76", Isa::Neon),
    ("cortex-x1", Isa::Neon),
    ("neoverse-n1", Isa::Neon),
    ("neoverse-n2", Isa::Neon),
    ("neoverse-v1", Isa::Neon),
    ("neoverse-v2", Isa::Neon),
    ("apple-m1", Isa::Neon),
    ("apple-m2", Isa::Neon),
    ("apple-m3", Isa::Neon),
    ("apple-m4", Isa::Neon),
];

/// Features `--target-features` accepts besides those LLVM lists for the host (on x86 that
/// list names every feature LLVM detects, present or not; on AArch64 only the present ones).
pub const FEATURES: &[&str] = &[
    "sse",
    "sse2",
    "sse3",
    "ssse3",
    "sse4.1",
    "sse4.2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512cd",
    "avx512vnni",
    "avx512bf16",
    "avx512fp16",
    "neon",
    "fp-armv8",
    "sve",
    "sve2",
    "dotprod",
    "fullfp16",
];

/// A forced target's L1 data cache (bytes): the common size of current x86 and Arm cores.
pub const DEFAULT_L1D: u64 = 32 << 10;
/// A forced target's L2 cache per core (bytes).
pub const DEFAULT_L2: u64 = 1 << 20;

/// The CPU compiled code is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// LLVM's CPU name (`znver4`, `haswell`, `neoverse-n1`).
    pub cpu: String,
    /// The LLVM feature list (`+avx2`, `-avx512f`) the code is compiled with: the host's whole
    /// list, or the forced ones.
    pub features: Vec<String>,
    pub isa: Isa,
    /// L1 data cache and L2 cache per core, in bytes.
    pub l1d: u64,
    pub l2: u64,
    /// Whether this is the host, detected (else forced by flags).
    pub host: bool,
}

impl Target {
    /// The machine nnopt runs on.
    pub fn host() -> Target {
        let (cpu, features) = host_cpu();
        let isa = features
            .iter()
            .fold(base_isa(), |isa, f| apply_feature(isa, f));
        let (l1d, l2) = host_caches();
        Target {
            cpu,
            features,
            isa,
            l1d,
            l2,
            host: true,
        }
    }

    /// The target `--target-cpu` (`cpu`) and `--target-features` (`features`, `+a,-b`) name;
    /// the host when neither is given. An unknown CPU or feature, or a malformed list, is an
    /// error message (a usage error for the CLI).
    pub fn resolve(cpu: Option<&str>, features: Option<&str>) -> Result<Target, String> {
        if cpu.is_none() && features.is_none() {
            return Ok(Target::host());
        }
        let (host_cpu, host_features) = host_cpu();
        let (cpu, base) = match cpu {
            None => (host_cpu, None),
            Some(c) => match CPUS.iter().find(|(n, _)| *n == c) {
                Some(&(n, isa)) => (n.to_string(), Some(isa)),
                None if c == host_cpu => (host_cpu, None),
                None => {
                    let known: Vec<&str> = CPUS.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "unknown --target-cpu '{c}' (known: {}, or the host's '{host_cpu}')",
                        known.join(", ")
                    ));
                }
            },
        };
        // The host's own CPU (named or implied) starts from the host's features.
        let (mut isa, mut list) = match base {
            Some(isa) => (isa, vec![format!("+{}", isa_feature(isa))]),
            None => (
                host_features
                    .iter()
                    .fold(base_isa(), |isa, f| apply_feature(isa, f)),
                host_features.clone(),
            ),
        };
        for f in features.unwrap_or("").split(',').filter(|f| !f.is_empty()) {
            let name = f.strip_prefix(['+', '-']).ok_or_else(|| {
                format!("--target-features entry '{f}' must start with '+' or '-'")
            })?;
            let known = FEATURES.contains(&name) || host_features.iter().any(|h| &h[1..] == name);
            if !known {
                return Err(format!("unknown --target-features feature '{name}'"));
            }
            isa = apply_feature(isa, f);
            list.push(f.to_string());
        }
        Ok(Target {
            cpu,
            features: list,
            isa,
            l1d: DEFAULT_L1D,
            l2: DEFAULT_L2,
            host: false,
        })
    }

    /// f32 lanes of one vector register.
    pub fn lanes(&self) -> u64 {
        self.isa.lanes()
    }

    /// Vector registers.
    pub fn registers(&self) -> u64 {
        self.isa.registers()
    }

    /// Puts `target_cpu` and `target_features` on every `llvm.func` of `module` (a module in
    /// the LLVM dialect; other ops are left alone). The ExecutionEngine's target machine is the
    /// host's; LLVM's code generator takes each function's own attributes over it, so forcing
    /// AVX2 on an AVX-512 host yields code without zmm registers. All functions get them: a
    /// call between functions of different features is not inlined.
    pub fn mark_functions<'c>(&self, cx: &'c Context, module: &mut MlirModule<'c>) {
        let list: Vec<String> = self.features.iter().map(|f| format!("\"{f}\"")).collect();
        let features =
            Attribute::parse(cx, &format!("#llvm.target_features<[{}]>", list.join(", ")))
                .expect("invariant: a list of quoted feature names parses");
        let cpu: Attribute = StringAttribute::new(cx, &self.cpu).into();
        let mut funcs = Vec::new();
        module.as_operation().walk(WalkOrder::PreOrder, |op| {
            if op.name().as_string_ref().as_str() == Ok("llvm.func") {
                funcs.push(op.to_raw());
            }
            WalkResult::Advance
        });
        for raw in funcs {
            // SAFETY: an op of `module`, found above; `&mut module` excludes other references
            // to it, and setting attributes erases nothing.
            let mut op = unsafe { OperationRefMut::from_raw(raw) };
            op.set_inherent_attribute("target_cpu", cpu);
            op.set_inherent_attribute("target_features", features);
        }
    }
}

impl fmt::Display for Target {
    /// `znver4 (AVX-512: 16 f32 lanes, 32 registers; L1d 32 KiB, L2 1024 KiB, host)`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} ({}: {} f32 lanes, {} registers; L1d {} KiB, L2 {} KiB, {})",
            self.cpu,
            self.isa.name(),
            self.lanes(),
            self.registers(),
            self.l1d >> 10,
            self.l2 >> 10,
            if self.host { "host" } else { "forced" }
        )
    }
}

/// The ISA every CPU of this architecture has.
fn base_isa() -> Isa {
    if cfg!(target_arch = "x86_64") {
        Isa::Sse
    } else {
        Isa::Neon
    }
}

/// The LLVM feature that turns `isa` on (a forced CPU's feature list starts with it: the
/// list must not be empty, or the functions would take the host's features).
fn isa_feature(isa: Isa) -> &'static str {
    match isa {
        Isa::Sse => "sse2",
        Isa::Avx => "avx",
        Isa::Avx2 => "avx2",
        Isa::Avx512 => "avx512f",
        Isa::Neon => "neon",
    }
}

/// `isa` after the LLVM feature `f` (`+avx2`): enabling an x86 level implies the levels
/// below it, disabling one disables those above it (as LLVM's feature implications do).
fn apply_feature(isa: Isa, f: &str) -> Isa {
    if isa == Isa::Neon {
        return isa;
    }
    let level = match &f[1..] {
        "avx512f" => Isa::Avx512,
        "avx2" => Isa::Avx2,
        "avx" => Isa::Avx,
        _ => return isa,
    };
    if f.starts_with('+') {
        isa.max(level)
    } else {
        // One level below the one disabled.
        isa.min(match level {
            Isa::Avx512 => Isa::Avx2,
            Isa::Avx2 => Isa::Avx,
            _ => Isa::Sse,
        })
    }
}

extern "C" {
    // LLVM's C API (LLVMTarget, linked with MLIR). Both return a message to dispose.
    fn LLVMGetHostCPUName() -> *mut std::ffi::c_char;
    fn LLVMGetHostCPUFeatures() -> *mut std::ffi::c_char;
    fn LLVMDisposeMessage(message: *mut std::ffi::c_char);
}

/// LLVM's host CPU name and its features (`+avx2`, `-avx512f`, ...).
fn host_cpu() -> (String, Vec<String>) {
    let take = |p: *mut std::ffi::c_char| {
        if p.is_null() {
            return String::new();
        }
        // SAFETY: LLVM returns a NUL-terminated string it allocated, disposed of once here.
        unsafe {
            let s = std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
            LLVMDisposeMessage(p);
            s
        }
    };
    // SAFETY: both functions take nothing and return an owned message (or null).
    let (cpu, features) = unsafe { (take(LLVMGetHostCPUName()), take(LLVMGetHostCPUFeatures())) };
    let features = features
        .split(',')
        .filter(|f| f.len() > 1 && (f.starts_with('+') || f.starts_with('-')))
        .map(str::to_string)
        .collect();
    (cpu, features)
}

/// The host's L1d and L2 per core from sysfs (cpu0's `cache/index*`), the defaults where a
/// size cannot be read (not Linux, or a sandbox without sysfs).
fn host_caches() -> (u64, u64) {
    let (mut l1d, mut l2) = (DEFAULT_L1D, DEFAULT_L2);
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (l1d, l2);
    };
    for e in entries.flatten() {
        let read = |name: &str| std::fs::read_to_string(e.path().join(name)).unwrap_or_default();
        let (level, kind) = (read("level"), read("type"));
        let Some(size) = parse_size(read("size").trim()) else {
            continue;
        };
        match (level.trim(), kind.trim()) {
            ("1", "Data") => l1d = size,
            ("2", "Unified" | "Data") => l2 = size,
            _ => {}
        }
    }
    (l1d, l2)
}

/// A sysfs cache size (`48K`, `2048K`, `1M`) in bytes.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().ok()?;
    match unit {
        "" => Some(n),
        "K" => Some(n << 10),
        "M" => Some(n << 20),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_move_the_isa_as_llvm_implies_them() {
        if base_isa() == Isa::Neon {
            return;
        }
        assert_eq!(apply_feature(Isa::Avx512, "-avx512f"), Isa::Avx2);
        assert_eq!(apply_feature(Isa::Avx512, "-avx2"), Isa::Avx);
        assert_eq!(apply_feature(Isa::Avx512, "-avx"), Isa::Sse);
        assert_eq!(apply_feature(Isa::Sse, "+avx2"), Isa::Avx2);
        assert_eq!(apply_feature(Isa::Avx2, "+fma"), Isa::Avx2);
        assert_eq!(apply_feature(Isa::Avx, "-avx512f"), Isa::Avx);
    }

    #[test]
    fn forced_targets_are_checked() {
        let host = Target::resolve(None, None).unwrap();
        assert!(host.host);
        assert_eq!(
            Target::resolve(Some(&host.cpu), None).unwrap().isa,
            host.isa
        );
        let e = Target::resolve(Some("pentium-pro-max"), None).unwrap_err();
        assert!(e.contains("unknown --target-cpu 'pentium-pro-max'"), "{e}");
        let e = Target::resolve(None, Some("+avx9")).unwrap_err();
        assert!(
            e.contains("unknown --target-features feature 'avx9'"),
            "{e}"
        );
        let e = Target::resolve(None, Some("avx2")).unwrap_err();
        assert!(e.contains("must start with '+' or '-'"), "{e}");
        if base_isa() == Isa::Sse {
            let t = Target::resolve(Some("haswell"), None).unwrap();
            assert_eq!((t.isa, t.lanes(), t.registers()), (Isa::Avx2, 8, 16));
            assert_eq!(t.features, ["+avx2"]);
            let t = Target::resolve(Some("znver4"), Some("-avx512f")).unwrap();
            assert_eq!((t.isa, t.cpu.as_str()), (Isa::Avx2, "znver4"));
            assert_eq!(t.features, ["+avx512f", "-avx512f"]);
            assert_eq!(Target::resolve(Some("x86-64"), None).unwrap().lanes(), 4);
        }
    }

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_size("48K"), Some(48 << 10));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("x"), None);
    }
}
