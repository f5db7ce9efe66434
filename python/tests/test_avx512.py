"""The run-time dispatched AVX-512 kernels (CSR, N:M and int8 products).

- Both paths give the same bits: a subprocess with SWIFTPRUNE_DISABLE_AVX512=1
  (portable AVX2 kernels) against one without (AVX-512 where the CPU has it).
  Exact equality is right here: the AVX-512 kernels do the same float
  operations in the same order (fused multiply-adds per lane, the same
  partial sums), only 16 lanes per instruction instead of 8, and the int8
  kernels are exact integer arithmetic before the same final float scaling.
- The library keeps AVX-512 instructions inside the SwiftPruneAVX512 and
  SwiftPruneAVX512VNNI modules (the ODR guard): no function outside them uses
  zmm/ymm16-31/xmm16-31 or mask registers (nor VNNI instructions outside the
  VNNI module), and their object files define no shared symbol but their own.
- Under `qemu-x86_64 -cpu Haswell` (a CPU without AVX-512) every dispatched
  kernel runs (portable path) and is right, where qemu is installed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _core

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = Path(sp.__file__).resolve().parent / "libswiftprune.so"
# The modules built beyond x86-64-v3, by their Swift-mangled name prefix, and their kernels.
MODULES = {
    "SwiftPruneAVX512": ("$s16SwiftPruneAVX512", ("csrRows", "nmRows", "int8Tile4x16", "int8RowDots")),
    "SwiftPruneAVX512VNNI": ("$s20SwiftPruneAVX512VNNI", ("int8Tile4x16",)),
}
PREFIXES = tuple(prefix for prefix, _ in MODULES.values())
AVX512_FLAGS = ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")


def cpuinfo_has_avx512() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return all(flag in flags for flag in AVX512_FLAGS)


def environment(disable: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SWIFTPRUNE_DISABLE_AVX512", None)
    if disable:
        env["SWIFTPRUNE_DISABLE_AVX512"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(sp.__file__).resolve().parents[1]), str(Path(__file__).parent)]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    return env


# Runs every dispatched kernel on shapes that reach each code path (64-wide
# tiles, 16/8/scalar tails, blocked depth, int8 tiles and the small-batch
# path), writes the results to argv[1] (.npz) and checks them against NumPy.
KERNEL_SCRIPT = r"""
import sys
import numpy as np
import swiftprune as sp
from swiftprune import _core
from _reference_kernels import dense_product, nm_prune, quantized_product

rng = np.random.default_rng(7)
out = {}
worst = 0.0
def check(name, y, reference, depth):
    global worst
    out[name] = y
    scale = max(1.0, float(np.abs(reference).max(initial=0)))
    worst = max(worst, float(np.abs(y - reference).max(initial=0)) / (scale * max(1, depth) ** 0.5))

SHAPES = [(37, 520, 1), (37, 520, 7), (37, 520, 9), (70, 1100, 64), (33, 96, 100), (130, 2048, 136)]
if sys.argv[2:] == ["small"]:  # under an emulator
    SHAPES = [(9, 136, 3), (21, 200, 70)]
for rows, columns, batch in SHAPES:
    w = rng.standard_normal((rows, columns)).astype(np.float32)
    x = rng.standard_normal((columns, batch)).astype(np.float32)
    pruned = np.where(rng.random((rows, columns)) < 0.15, w, 0).astype(np.float32)
    check(f"csr {rows} {columns} {batch}", sp.CSRMatrix.from_dense(pruned).matmul(x), dense_product(pruned, x), columns)
    for n, m in [(2, 4), (3, 8)]:
        if columns % m == 0:
            nm = nm_prune(w, n, m)
            matrix = sp.NMSparseMatrix.from_dense(nm, n=n, m=m)
            check(f"nm{n}{m} {rows} {columns} {batch}", matrix.matmul(x), dense_product(nm, x), columns)
            # The row-major kernel (AVX512Kernels.nmRows), which matmul leaves for the packed layout at >= 8 columns.
            check(f"nm{n}{m} row-major {rows} {columns} {batch}",
                  _core.nm_matmul(matrix.values, matrix.indices, rows, columns, n, m, x), dense_product(nm, x), columns)
    scale = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    values = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    zero_point = (np.arange(rows) % 5 - 2).astype(np.int32)
    check(f"int8 {rows} {columns} {batch}", sp.quantized_matmul(values, scale, x),
          quantized_product(values, scale, x), columns)
    check(f"int8 zp {rows} {columns} {batch}", sp.quantized_matmul(values, scale, x, zero_point=zero_point),
          quantized_product(values, scale, x, zero_point), columns)
np.savez(sys.argv[1], **out)
import json
print(json.dumps({"avx512": bool(_core.cpu_has_avx512()), "worst": worst}))
"""


def run_kernels(tmp_path: Path, disable: bool, prefix: tuple[str, ...] = ()) -> tuple[dict, dict]:
    target = tmp_path / ("portable.npz" if disable else "default.npz")
    size = ["small"] if prefix else []
    done = subprocess.run([*prefix, sys.executable, "-c", KERNEL_SCRIPT, str(target), *size], env=environment(disable),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(target) as results:
        return summary, {name: results[name] for name in results.files}


# ---- detection ------------------------------------------------------------------------


def test_detection_follows_cpuinfo_and_environment() -> None:
    script = "from swiftprune import _core; print(int(_core.cpu_has_avx512()))"
    for disable, expected in [(False, cpuinfo_has_avx512()), (True, False)]:
        done = subprocess.run([sys.executable, "-c", script], env=environment(disable), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(int(expected)), f"disable={disable}"
    for value, expected in [("0", cpuinfo_has_avx512()), ("", cpuinfo_has_avx512()), ("yes", False)]:
        env = environment(False)
        env["SWIFTPRUNE_DISABLE_AVX512"] = value
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == str(int(expected)), f"SWIFTPRUNE_DISABLE_AVX512={value!r}"


# ---- both paths ---------------------------------------------------------------------------


@pytest.mark.skipif(not cpuinfo_has_avx512(), reason="the CPU has no AVX-512: only the portable path exists here")
def test_avx512_and_portable_paths_are_bit_identical(tmp_path: Path) -> None:
    fast_summary, fast = run_kernels(tmp_path, disable=False)
    slow_summary, slow = run_kernels(tmp_path, disable=True)
    assert fast_summary["avx512"] is True and slow_summary["avx512"] is False
    assert fast.keys() == slow.keys() and len(fast) > 20
    for name in fast:
        np.testing.assert_array_equal(fast[name], slow[name], err_msg=name)
    # And both are right (float32 against a float64 reference).
    assert fast_summary["worst"] < 1e-5, fast_summary


# ---- ODR guard ----------------------------------------------------------------------------


def object_dir(module: str) -> Path | None:
    """`.build/<triple>/release/<module>.build` of the release build (what setup.py builds)."""
    candidates = sorted((ROOT / ".build").glob(f"*/release/{module}.build"))
    candidates += [p for p in [ROOT / ".build" / "release" / f"{module}.build"] if p.is_dir()]
    return candidates[0] if candidates else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_avx512_module_defines_only_its_own_shared_symbols(module: str) -> None:
    """A shared (global or weak) definition emitted in an AVX-512 module, e.g. a
    specialization of a generic standard-library function, could be chosen by the
    linker for every module and crash other CPUs with SIGILL. Local symbols are
    invisible outside their object file; Swift's reflection constants are data."""
    prefix, kernels = MODULES[module]
    nm = shutil.which("nm")
    objects_dir = object_dir(module)
    if nm is None or objects_dir is None:
        pytest.skip(f"needs nm (binutils) and the release build directory .build/*/release/{module}.build "
                    f"(nm: {nm}, build dir: {objects_dir})")
    objects = sorted(objects_dir.glob("*.o"))
    assert objects, f"no object files in {objects_dir}"
    listing = subprocess.run([nm, "--defined-only", *map(str, objects)], capture_output=True, text=True,
                             check=True).stdout
    foreign = []
    for line in listing.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or line.endswith(":"):
            continue
        kind, name = parts[1], parts[2]
        if kind.islower() and kind not in "vw":
            continue  # local: invisible to the linker outside its object
        if name.startswith(prefix) or name.startswith(f"symbolic _____ {prefix[2:]}"):
            continue
        # Swift reflection data shared by every Swift object: constants, no code.
        if kind in "VR" and (name == "__swift_reflection_version" or name.startswith("symbolic ")):
            continue
        foreign.append(f"{kind} {name}")
    assert not foreign, f"{module} defines shared symbols outside its namespace:\n" + "\n".join(foreign)
    for kernel in kernels:
        assert re.search(re.escape(prefix) + r"\w*Kernels\w*O\d+" + kernel, listing), kernel


AVX512_REGISTER = re.compile(r"%(zmm\d+|k[0-7]\b|[xy]mm(1[6-9]|2\d|3[01])\b)")
VNNI_INSTRUCTION = re.compile(r"\bvpdp(bu|ws)sds?\b")


def test_avx512_instructions_only_in_the_avx512_modules() -> None:
    """zmm, ymm16-31, xmm16-31 and mask registers appear only in functions of the
    AVX-512 modules, and VNNI instructions (vpdpbusd, vpdpwssd, ...) only in the VNNI one."""
    objdump = shutil.which("objdump")
    if objdump is None or not LIBRARY.exists():
        pytest.skip(f"needs objdump (binutils) and {LIBRARY} (objdump: {objdump})")
    disassembly = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(LIBRARY)], capture_output=True,
                                 text=True, check=True).stdout
    function = "?"
    users: dict[str, int] = {}
    vnni_users: set[str] = set()
    for line in disassembly.splitlines():
        if line.endswith(">:"):
            function = line[line.index("<") + 1:-2]
        elif "%" in line:
            if AVX512_REGISTER.search(line):
                users[function] = users.get(function, 0) + 1
            if VNNI_INSTRUCTION.search(line):
                vnni_users.add(function)
    outside = sorted(name for name in users if not name.startswith(PREFIXES))
    assert not outside, f"AVX-512 registers used outside the AVX-512 modules: {outside[:20]}"
    vnni_prefix = MODULES["SwiftPruneAVX512VNNI"][0]
    assert all(name.startswith(vnni_prefix) for name in vnni_users), sorted(vnni_users)
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
        # The kernels really are AVX-512 (the -march=x86-64-v4 flags took effect).
        for prefix, kernels in MODULES.values():
            for kernel in kernels:
                assert any(name.startswith(prefix) and kernel in name for name in users), \
                    f"{prefix} {kernel} has no AVX-512 instruction"
        assert vnni_users, "the VNNI kernel has no VNNI instruction"


# ---- a CPU without AVX-512 --------------------------------------------------------------


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or os.uname().machine != "x86_64",
                    reason="needs qemu-x86_64 (apt package qemu-user) on x86-64")
def test_every_kernel_runs_on_haswell_under_qemu(tmp_path: Path) -> None:
    """qemu passes the host's /proc/cpuinfo through but emulates cpuid (and has no
    AVX-512 at all): detection must say no and every kernel must run, right."""
    prefix = ("qemu-x86_64", "-cpu", "Haswell")
    summary, results = run_kernels(tmp_path, disable=False, prefix=prefix)
    assert summary["avx512"] is False
    assert summary["worst"] < 1e-5, summary
    assert len(results) == 14  # 10 kernels + the row-major N:M kernel at 2:4 and 3:8 on two shapes
