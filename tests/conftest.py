import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The suite's cost on a CPU is compiling many tiny programs, not running them. XLA:CPU's
# backend optimisation level 0 and its classic (non-MLIR) fusion emitter halve compile time
# (tests/unit/test_architectures_limits.py: 84 s -> 40 s for the three backbones) and compute
# the same arithmetic: they change how the code is generated, not what it computes, and every
# tolerance here holds under both. Set before JAX starts its backend (subprocesses inherit it).
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

pytest_plugins = ["fixtures_report", "fixtures_train"]
