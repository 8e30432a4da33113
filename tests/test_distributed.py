"""Data parallelism with torchrun on the CPU (gloo): N processes reproduce one process's run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import logged_losses
from repae_lab import rundir
from repae_lab.config import resolve_config
from repae_lab.jobs.launch import train

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

pytestmark = pytest.mark.slow


def _torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(TORCHRUN + args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _close(a: list[dict], b: list[dict], rtol=2e-3, atol=2e-4) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert abs(ra[k] - rb[k]) <= atol + rtol * abs(rb[k]), (ra["step"], k, ra[k], rb[k])


def test_global_batchnorm_over_two_processes_equals_one_over_the_whole_batch(tmp_path):
    out = tmp_path / "bn.json"
    _torchrun([str(ROOT / "tests" / "dist_scripts" / "batchnorm_check.py"), str(out)], tmp_path)
    result = json.loads(out.read_text())
    assert result["world"] == 2
    assert result["running_mean"] < 1e-6 and result["running_var"] < 1e-5
    assert result["grad"] < 1e-5 * max(1.0, result["grad_scale"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, encoder_cache):
    """One 1-process and one 2-process repa-e run of the same global batch and seed."""
    from conftest import TINY
    root = tmp_path_factory.mktemp("dist")
    overrides = {**TINY, "cache_dir": encoder_cache, "steps": 4, "batch_size": 8, "checkpoint_every": 2}
    train(resolve_config("workshop", recipe="repa-e", overrides={**overrides, "steps": 6}), root / "one",
          progress=False)
    sets = [f"{k}={v}" for k, v in overrides.items()]
    _torchrun(["-m", "repae_lab", "train", "--preset", "workshop", "--recipe", "repa-e", "--out",
               str(root / "two"), "--quiet", "--set", *sets], root)
    return root


def test_two_processes_give_the_losses_of_one(runs):
    one, two = logged_losses(runs / "one"), logged_losses(runs / "two")
    assert len(two) == 4
    _close(two, one[:4])


def test_a_two_process_checkpoint_resumes_with_one_process(runs):
    run = runs / "two-resumed"
    shutil.copytree(runs / "two", run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["steps"] = 6                                   # extend the run by two steps, in one process
    (run / "config.json").write_text(json.dumps(cfg))
    train(resume=run, progress=False)
    _close(logged_losses(run), logged_losses(runs / "one"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accelerate_launch_gives_the_losses_of_one_process(runs, encoder_cache):
    """`accelerate launch` runs the same code as torchrun (it sets the same environment), and says that the
    run's config, not the launcher's flag, sets the precision."""
    pytest.importorskip("accelerate")
    from conftest import TINY
    overrides = {**TINY, "cache_dir": encoder_cache, "steps": 4, "batch_size": 8, "checkpoint_every": 2}
    run = runs / "accelerate"
    launch = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port())]
    proc = subprocess.run(launch + ["-m", "repae_lab", "train", "--preset", "workshop", "--recipe", "repa-e",
                                    "--out", str(run), "--quiet", "--set", *[f"{k}={v}" for k, v in overrides.items()]],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "accelerate launch asked for mixed precision 'bf16'" in proc.stderr
    assert "mixed_precision=bf16" in proc.stderr
    assert json.loads((run / "config.json").read_text())["mixed_precision"] == "no"
    _close(logged_losses(run), logged_losses(runs / "one")[:4])
