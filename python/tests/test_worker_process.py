"""Worker-process settings: thread shares and the allocator."""
import subprocess
import sys

import pytest

from swiftprune.distributed.worker_process import threads_per_worker


def test_threads_are_shared_out_unless_the_user_set_them(monkeypatch):
    monkeypatch.delenv("SWIFTPRUNE_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert threads_per_worker(1) == 8
    assert threads_per_worker(3) == 2
    assert threads_per_worker(16) == 1
    monkeypatch.setenv("SWIFTPRUNE_NUM_THREADS", "3")
    assert threads_per_worker(2) is None


FAULTS = """
import resource, sys, numpy as np
np._core.multiarray._set_madvise_hugepage(False)  # count 4 KiB pages
from swiftprune._allocator import keep_freed_buffers
if sys.argv[1] == "keep":
    assert keep_freed_buffers()
a = np.ones(16 << 20, np.float32); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(16 << 20, np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode):
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_buffers_reuses_a_freed_buffer_s_pages():
    # In children (the setting is process-wide): a second 64 MiB buffer after a freed one
    # costs 16384 page faults of fresh memory by default, and none with freed buffers kept.
    assert _faults("default") > 10_000
    assert _faults("keep") < 1_000
