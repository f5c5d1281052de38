"""A run spanning 2 local CPU processes (mtlx.parallel.distributed, JAX's gloo collectives) gives the
numbers of 1 process: the batch split over the 2 processes' devices (data_devices=0: all), every
loss and gradient reduced across them; only process 0 writes the run directory."""

import os
import socket
import subprocess
import sys

import numpy as np

from mtlx import results
from tiny_grid import REPO, env, experiment_source, run_dirs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_numbers_of_one(tmp_path):
    exp = tmp_path / "two.py"
    exp.write_text(experiment_source("two", steps=12, batch_size=16, dim=6, n_train=64, n_eval=32, width=8, depth=2,
                                     eval_every=6, log_every=3, checkpoint_every=6))
    base = [sys.executable, "-m", "launch.run", f"--config={exp}", "--progress=false", "--report=false",
            "--compilation_cache=", "--config.weightings=({'name': 'mgda', 'options': {}},)"]
    one = subprocess.run(base + [f"--workdir={tmp_path / 'one'}"], cwd=REPO, env=env(), capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    port = _free_port()
    two = [subprocess.Popen(base + [f"--workdir={tmp_path / 'two'}", "--config.parallel.data_devices=0",
                                    f"--coordinator=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
    outs = [p.communicate(timeout=300) for p in two]
    assert [p.returncode for p in two] == [0, 0], [o[1][-2000:] for o in outs]
    [rid] = run_dirs(str(tmp_path / "one"))
    assert run_dirs(str(tmp_path / "two")) == [rid]
    a = results.read_summary(os.path.join(tmp_path / "one", rid))
    b = results.read_summary(os.path.join(tmp_path / "two", rid))
    assert b["execution"]["mesh"] == {"runs": 1, "data": 2} and a["execution"]["mesh"] == {"runs": 1, "data": 1}
    for t in a["metrics"]:
        for m, v in a["metrics"][t].items():
            np.testing.assert_allclose(b["metrics"][t][m], v, rtol=1e-5, atol=1e-6)
    train = [r for r in results.read_metrics(os.path.join(tmp_path / "two", rid)) if r["kind"] == "train"]
    assert [r["step"] for r in train] == [3, 6, 9, 12]  # written once (by process 0), not once per process
