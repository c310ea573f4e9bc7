# lit configuration for nnopt: the MLIR way (RUN/CHECK lines, one feature per file).
import os
import platform
import subprocess

import lit.formats

config.name = "nnopt"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".nnir"]
# Inputs/ holds files that RUN lines read, not tests.
config.excludes = ["Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.test_source_root, "..", "target", "lit")

root = os.path.abspath(os.path.join(config.test_source_root, ".."))
llvm_bin = "/usr/lib/llvm-22/bin"
# Honour CARGO_TARGET_DIR so a worktree with its own target directory tests its own binary
# (a relative one, as cargo reads it, from the current directory).
target_dir = os.path.abspath(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")))
nnopt_bin = os.path.join(target_dir, "debug")
config.environment["PATH"] = os.pathsep.join([nnopt_bin, llvm_bin, config.environment.get("PATH", os.environ["PATH"])])
# Where `nnopt run` caches compiled code (scripts/test.sh points it into target/).
if "XDG_CACHE_HOME" in os.environ:
    config.environment["XDG_CACHE_HOME"] = os.environ["XDG_CACHE_HOME"]


def nnopt_has_mlir(binary):
    """Whether `binary` was built with the `mlir` cargo feature: only such a build lowers a
    function to MLIR (`--emit=mlir`); without it, --emit is an error. Asking the binary keeps
    the CLI as it is and can never disagree with how it was built."""
    probe = "func @f(%x: tensor<1xf32>) -> tensor<1xf32> {\n  return %x\n}\n"
    try:
        r = subprocess.run([binary, "-", "--emit=mlir"], input=probe, capture_output=True,
                           text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "func.func @f" in r.stdout


# `// REQUIRES: mlir` marks the tests that lower or run code (lit/lower/, `nnopt bench`): a
# --no-default-features build reports them UNSUPPORTED instead of failing them.
if nnopt_has_mlir(os.path.join(nnopt_bin, "nnopt")):
    config.available_features.add("mlir")

# Tests that force x86 targets (`--target-cpu=x86-64-v4`, ...) need an x86 host: the JIT
# compiles for the architecture it runs on.
if platform.machine() in ("x86_64", "AMD64"):
    config.available_features.add("x86")
