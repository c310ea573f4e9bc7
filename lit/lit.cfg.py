# lit configuration for nnopt: the MLIR way (RUN/CHECK lines, one feature per file).
import os
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
# Honour CARGO_TARGET_DIR so a worktree with its own target directory tests its own binary.
target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
nnopt_bin = os.path.join(target_dir, "debug")
config.environment["PATH"] = os.pathsep.join([nnopt_bin, llvm_bin, config.environment.get("PATH", os.environ["PATH"])])
