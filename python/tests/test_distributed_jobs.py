"""Sharded jobs across processes: a Dask LocalCluster writes the same bytes as the local run, and a
job killed with SIGKILL mid-way resumes to exactly the output of an uninterrupted run."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import swiftprune as sp

from _sharded_models import tensors, write_checkpoint

pytest.importorskip("safetensors")

RECIPE = [{"prune": {"method": "global_magnitude", "sparsity": 0.5}}, {"quantize": {"bits": 4, "axis": 0}}]


def _tree(directory):
    """Relative path -> bytes of every file under directory (hidden ones included)."""
    out = {}
    for root, _, files in os.walk(directory):
        for f in files:
            path = os.path.join(root, f)
            out[os.path.relpath(path, directory)] = open(path, "rb").read()
    return out


def test_dask_local_cluster_output_equals_the_local_output_byte_for_byte(tmp_path):
    distributed = pytest.importorskip("distributed", reason="needs dask.distributed (pip install 'swiftprune[dask]')")
    write_checkpoint(str(tmp_path / "in"), tensors(), shards=4)
    sp.compress_file(tmp_path / "in", tmp_path / "local", RECIPE, progress=False, max_shard_size=12_000)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            report = sp.compress_file(tmp_path / "in", tmp_path / "dask", RECIPE, progress=False,
                                      max_shard_size=12_000, backend="dask", scheduler=client)
        # The jobs really ran on the cluster's workers: statistics passes + the output pass, 4 shards each.
        jobs = [task for task in stream.data if str(task["key"]).startswith("swiftprune-job")]
        assert len(jobs) >= 8
        assert {task["worker"] for task in jobs} <= set(client.scheduler_info()["workers"])
    local, remote = _tree(tmp_path / "local"), _tree(tmp_path / "dask")
    assert sorted(local) == sorted(remote) and len(local) > 2
    for name in local:
        assert local[name] == remote[name], name
    assert len(report) == len(tensors())


def test_dask_backend_without_a_cluster_says_what_to_do(tmp_path):
    pytest.importorskip("distributed")
    write_checkpoint(str(tmp_path / "in"), tensors(), shards=2)
    with pytest.raises(ValueError, match="scheduler"):
        sp.compress_file(tmp_path / "in", tmp_path / "out", RECIPE, progress=False, backend="dask")


# The child compresses with workers=1 and kills itself with SIGKILL while the third shard's job is
# half-written (a part's temporary spool file exists then): nothing gets to clean up.
KILLER = r"""
import os, signal, sys
import swiftprune as sp
from swiftprune.distributed import parts

original = parts.PartWriter.add_form
def add_form(self, name, *args, **kwargs):
    original(self, name, *args, **kwargs)
    if self.stem == "job-00002" and os.environ.get("KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
parts.PartWriter.add_form = add_form
sp.compress_file(sys.argv[1], sys.argv[2], %r, progress=False, max_shard_size=12_000,
                 resume=len(sys.argv) > 3)
""" % (RECIPE,)


def test_kill_9_mid_job_then_resume_equals_an_uninterrupted_run(tmp_path):
    weights = tensors()
    write_checkpoint(str(tmp_path / "in"), weights, shards=4)
    sp.compress_file(tmp_path / "in", tmp_path / "clean", RECIPE, progress=False, max_shard_size=12_000)
    third = sp.load_weights(tmp_path / "in").names_in(sorted(sp.load_weights(tmp_path / "in").shards)[2])
    kill_at = next(n for n in third if n.startswith("layers") and "norm" not in n)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sp.__file__)), KILL_AT=kill_at)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "in"), str(tmp_path / "out")], env=env,
                         capture_output=True, text=True)
    assert run.returncode == -9, run.stderr
    # Killed: no final shard and no index yet, only the staging folder with the finished jobs.
    visible = [f for f in os.listdir(tmp_path / "out") if not f.startswith(".")]
    assert visible == []
    staging = tmp_path / "out" / ".model.swiftprune-staging"
    finished = sorted(f for f in os.listdir(staging) if f.endswith(".json"))
    assert finished == ["job-00000.json", "job-00001.json"]
    # The killed writer's spool is nameless (O_TMPFILE) or, on a filesystem without it, a stale
    # .tmp file: either way, the resume below must end with no staging folder left.

    # Resume: the finished jobs are kept, the rest redone.
    env.pop("KILL_AT")
    resumed = subprocess.run([sys.executable, str(script), str(tmp_path / "in"), str(tmp_path / "out"), "resume"],
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert _tree(tmp_path / "out") == _tree(tmp_path / "clean")
    assert not staging.exists()


def test_resume_skips_finished_shards_whose_checksum_matches(tmp_path, monkeypatch):
    write_checkpoint(str(tmp_path / "in"), tensors(), shards=3)
    from swiftprune.distributed import jobs

    calls = []
    original = jobs.run_job

    def failing(spec):
        calls.append((spec.index, spec.stats_stage))
        if spec.stats_stage is None and spec.index == 2 and not getattr(failing, "healed", False):
            raise OSError("disk on fire")
        return original(spec)

    monkeypatch.setattr("swiftprune.distributed.executors.run_job", failing)
    with pytest.raises(OSError, match="disk on fire"):
        sp.compress_file(tmp_path / "in", tmp_path / "out", RECIPE, progress=False)
    staging = tmp_path / "out" / ".model.swiftprune-staging"
    assert sorted(f for f in os.listdir(staging) if f.endswith(".json")) == ["job-00000.json", "job-00001.json"]
    # Corrupt one finished part: its job must be redone, the other kept.
    part = next(f for f in sorted(os.listdir(staging)) if f.startswith("job-00001") and f.endswith(".safetensors"))
    data = bytearray((staging / part).read_bytes())
    data[-1] ^= 0xFF
    (staging / part).write_bytes(bytes(data))
    failing.healed = True
    calls.clear()
    sp.compress_file(tmp_path / "in", tmp_path / "out", RECIPE, progress=False, resume=True)
    assert sorted(i for i, stage in calls if stage is None) == [1, 2]
    sp.compress_file(tmp_path / "in", tmp_path / "clean", RECIPE, progress=False)
    assert _tree(tmp_path / "out") == _tree(tmp_path / "clean")
