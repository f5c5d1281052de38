"""Data parallelism (mtlx.parallel.mesh) on 8 forced host devices equals one device: for equal, a
loss-based, a Jacobian, a Gram and the representation weighting, on hard sharing and cross-stitch.
The per-task losses are means over the GLOBAL batch, so every weighting sees the Jacobian/Gram of
the whole batch; only the order of float additions differs (tolerance below).

XLA_FLAGS must be set before JAX starts, hence a subprocess."""

import json
import subprocess
import sys
import textwrap

from tiny_grid import REPO, env

SCRIPT = textwrap.dedent("""
    import copy, json, sys
    import jax, numpy as np
    sys.path.insert(0, "tests")
    from tiny_grid import tiny
    from mtlx import grid
    from mtlx.train import train_and_evaluate

    assert len(jax.devices()) == 8, jax.devices()
    out = {}
    cases = [("hard", w) for w in ("equal", "dwa", "graddrop", "mgda", "mgda_ub")]
    cases += [("cross_stitch", w) for w in ("equal", "pcgrad")]
    for arch, w in cases:
        rc = copy.deepcopy(grid.expand(tiny())[0]["config"])
        rc["architecture"] = {"name": arch, "options": {"split": 1} if arch == "hard" else {}}
        rc["weighting"] = {"name": w, "options": {}}
        rc["steps"], rc["batch_size"], rc["log_every"], rc["eval_every"], rc["checkpoint_every"] = 6, 32, 3, 6, 6
        cfg = grid.train_config(rc)
        one = train_and_evaluate(cfg, execution={"data_devices": 1})
        eight = train_and_evaluate(cfg, execution={"data_devices": 8})
        losses = lambda s: [s["metrics"][t]["loss"] for t in sorted(s["metrics"])]
        out[f"{arch}/{w}"] = [losses(one), losses(eight), eight["execution"]["mesh"]]
    print("RESULT" + json.dumps(out))
""")


def test_eight_host_devices_equal_one_device():
    e = env()
    e["XLA_FLAGS"] = f"{e.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
    p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=e, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.split("RESULT", 1)[1])
    assert len(out) == 7
    for case, (one, eight, mesh) in out.items():
        assert mesh == {"runs": 1, "data": 8}, case
        for a, b in zip(one, eight):
            assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (case, one, eight)
