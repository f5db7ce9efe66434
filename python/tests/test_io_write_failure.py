"""A write that fails part-way (the file-size limit, RLIMIT_FSIZE, hit by the
data section while later tensors are still being copied) fails the save with an
error, leaves the old destination byte for byte intact and no temporary file.

Runs in a child process: the limit and the ignored SIGXFSZ (without which the
kernel kills the writer instead of failing the write with EFBIG) must not leak
into the test process."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import swiftprune as sp

resource = pytest.importorskip("resource")


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="no RLIMIT_FSIZE")
def test_write_past_the_file_size_limit_fails_and_keeps_the_old_file(tmp_path) -> None:
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, {"old": np.arange(5, dtype=np.float32)})
    before = path.read_bytes()
    child = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        import swiftprune as sp
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 << 20, 20 << 20))
        tensors = {{f"t{{i}}": np.full((1 << 20) + i, i, np.float32) for i in range(12)}}  # 48 MiB
        try:
            sp.save_weights({str(path)!r}, tensors)
        except Exception as error:  # the error is what the test checks
            print(type(error).__name__, error)
            sys.exit(0)
        sys.exit("the save did not fail")
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "cannot write" in done.stdout and "too large" in done.stdout.lower(), done.stdout
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
