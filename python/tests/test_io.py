"""Weight files: round trips, malformed safetensors files, atomic writes, peers."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.io import SafetensorsFile, SafetensorsWriter, weight_format

RNG = np.random.default_rng(7)


def sample_weights() -> dict[str, np.ndarray]:
    return {
        "dense/kernel": RNG.standard_normal((5, 3)).astype(np.float32),
        "dense/bias": RNG.standard_normal(3).astype(np.float32),
        "conv.weight": RNG.standard_normal((2, 3, 3, 4)),  # float64
        "half": RNG.standard_normal(7).astype(np.float16),
        "steps": np.array(12345678901, dtype=np.int64),  # 0-d
        "mask": RNG.random((4, 4)) > 0.5,
        "bytes": np.arange(10, dtype=np.uint8),
        "i8": np.arange(-5, 5, dtype=np.int8),
        "u16": np.arange(6, dtype=np.uint16).reshape(2, 3),
        "i16": np.arange(6, dtype=np.int16),
        "i32": np.arange(6, dtype=np.int32),
        "u32": np.arange(6, dtype=np.uint32),
        "u64": np.arange(6, dtype=np.uint64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "unicode ✓ name": np.ones(2, dtype=np.float32),
    }


def assert_same(loaded: dict, expected: dict) -> None:
    assert list(loaded) == list(expected)
    for name, value in expected.items():
        got = loaded[name]
        assert got.shape == value.shape, name
        assert got.dtype == value.dtype, name
        np.testing.assert_array_equal(got, value, err_msg=name)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_round_trip_every_dtype(tmp_path, suffix):
    weights = sample_weights()
    path = tmp_path / f"model{suffix}"
    sp.save_weights(path, weights)
    assert_same(sp.load_weights(path), weights)


def test_round_trip_h5(tmp_path):
    pytest.importorskip("h5py")
    weights = {"layers/dense/vars/0": RNG.standard_normal((4, 3)).astype(np.float32),
               "layers/dense/vars/1": np.zeros(3, np.float32)}
    path = tmp_path / "model.weights.h5"
    sp.save_weights(path, weights)
    assert_same(sp.load_weights(path), weights)


def test_h5_missing_h5py_message(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install h5py"):
        sp.save_weights(tmp_path / "x.weights.h5", {"a": np.ones(2)})


def test_sequence_is_saved_by_index(tmp_path):
    weights = [np.ones((2, 2), np.float32), np.zeros(2, np.float32)]
    path = tmp_path / "keras.safetensors"
    sp.save_weights(path, weights)
    loaded = sp.load_weights(path)
    assert list(loaded) == ["0", "1"]
    np.testing.assert_array_equal(loaded["0"], weights[0])


def test_non_contiguous_fortran_and_big_endian_inputs(tmp_path):
    base = RNG.standard_normal((6, 8)).astype(np.float32)
    weights = {"strided": base[::2, ::3], "fortran": np.asfortranarray(base),
               "big": base.astype(">f4"), "big64": base.astype(">i8")}
    path = tmp_path / "m.safetensors"
    before = {k: v.copy() for k, v in weights.items()}
    sp.save_weights(path, weights)
    loaded = sp.load_weights(path)
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)
        np.testing.assert_array_equal(value, before[name])  # inputs not modified
    assert loaded["big"].dtype == np.dtype("<f4")


def test_loaded_safetensors_are_read_only_views(tmp_path):
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, {"a": np.arange(4, dtype=np.float32)})
    a = sp.load_weights(path)["a"]
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0] = 1
    copy = np.array(a)
    copy[0] = 5  # a copy is writable
    # The view keeps the mapping alive after every other reference is gone.
    import gc

    gc.collect()
    np.testing.assert_array_equal(a, [0, 1, 2, 3])


def test_metadata_round_trip(tmp_path):
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, {"a": np.ones(1, np.float32)}, metadata={"format": "pt", "note": 'quote " and \\ \n ✓'})
    f = SafetensorsFile(path)
    assert f.metadata == {"format": "pt", "note": 'quote " and \\ \n ✓'}
    with pytest.raises(ValueError, match="metadata"):
        sp.save_weights(tmp_path / "m.npz", {"a": np.ones(1)}, metadata={"a": "b"})


def test_safetensors_file_streaming_api(tmp_path):
    path = tmp_path / "m.safetensors"
    weights = sample_weights()
    sp.save_weights(path, weights)
    f = SafetensorsFile(path)
    assert f.names == list(weights)
    assert len(f) == len(weights) and "half" in f
    assert f.dtype_name("half") == "F16" and f.shape("conv.weight") == (2, 3, 3, 4)
    assert f.nbytes("conv.weight") == weights["conv.weight"].nbytes
    for name in f:
        np.testing.assert_array_equal(f[name], weights[name])
        f.release(name)
        np.testing.assert_array_equal(f[name], weights[name])  # still readable after release


def test_bfloat16_widens_exactly(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0, 1e-3], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")
    expected = (bits.astype(np.uint32) << 16).view(np.float32)
    path = tmp_path / "bf16.safetensors"
    write_raw(path, {"x": {"dtype": "BF16", "shape": [5], "data_offsets": [0, 10]}}, bits.tobytes())
    got = sp.load_weights(path)["x"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_bad_inputs_to_save(tmp_path):
    with pytest.raises(TypeError, match="dtype"):
        sp.save_weights(tmp_path / "a.safetensors", {"c": np.ones(2, np.complex64)})
    with pytest.raises(TypeError, match="dtype"):
        sp.save_weights(tmp_path / "a.safetensors", {"o": np.array(["x"], dtype=object)})
    with pytest.raises(TypeError, match="names"):
        sp.save_weights(tmp_path / "a.safetensors", {1: np.ones(2)})
    with pytest.raises(TypeError, match="mapping"):
        sp.save_weights(tmp_path / "a.safetensors", np.ones(3))
    with pytest.raises(ValueError, match="format"):
        sp.save_weights(tmp_path / "a.bin", {"a": np.ones(2)})
    with pytest.raises(ValueError, match="reserved"):
        sp.save_weights(tmp_path / "a.safetensors", {"__metadata__": np.ones(2)})
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary left behind


# --------------------------------------------------------------------------- #
# Malformed files: ValueError naming the problem, never a crash
# --------------------------------------------------------------------------- #


def write_raw(path, header, data: bytes = b"", header_bytes: bytes | None = None, length: int | None = None) -> None:
    text = header_bytes if header_bytes is not None else json.dumps(header).encode()
    n = len(text) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + text + data)


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize("header,data,message", [
    (GOOD, b"\0" * 4, "outside the data section"),  # truncated data
    ({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unsupported safetensors dtype"),
    ({"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 16 bytes"),  # wrong dtype
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 80]}}, b"\0" * 8, "outside the data section"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "reversed"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "non-negative integer"),
    ({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, b"\0" * 8, "non-negative integer"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, b"\0" * 8, "two non-negative integers"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551616]}}, b"\0" * 8, "two non-negative"),
    ({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, b"\0" * 8, "too large"),
    ({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "extra": 1}}, b"\0" * 8, "unknown field"),
    ({"a": [1, 2]}, b"", "is not an object"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "overlaps"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "belong to no tensor"),
    (GOOD, b"\0" * 12, "after the last tensor"),
    ({"__metadata__": {"k": 1}}, b"", "is not a string"),
    ({"__metadata__": "x"}, b"", "not an object"),
])
def test_malformed_headers(tmp_path, header, data, message):
    path = tmp_path / "bad.safetensors"
    write_raw(path, header, data)
    with pytest.raises(ValueError, match=message):
        sp.load_weights(path)


@pytest.mark.parametrize("text,message", [
    (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},}', "invalid JSON"),  # trailing comma
    (b'{"a": 1, "a": 2}', "duplicate key"),
    (b'{"a": "\xff"}', "UTF-8"),
    (b'{"a": "\x01"}', "control character"),
    (b'{"a": "\\ud800"}', "surrogate"),
    (b'{"a": 01}', "leading zero"),
    (b'{"a": 1} x', "after the JSON value"),
    (b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}", "nesting"),
    (b'{"a": tru}', "invalid"),
    (b'{"a": "abc', "unterminated"),
    (b'[1, 2]', "start with '{'"),
    (b' {"a": 1}', "start with '{'"),
    (b'{ ', "invalid JSON"),
])
def test_bad_json(tmp_path, text, message):
    path = tmp_path / "bad.safetensors"
    write_raw(path, None, b"", header_bytes=text)
    with pytest.raises(ValueError, match=message):
        sp.load_weights(path)


def test_header_length_checks(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="shorter than the 8-byte"):
        sp.load_weights(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="shorter"):
        sp.load_weights(path)
    write_raw(path, GOOD, b"\0" * 8, length=10**9)
    with pytest.raises(ValueError, match="exceeds the limit"):
        sp.load_weights(path)
    write_raw(path, GOOD, b"\0" * 8, length=2**64 - 1)
    with pytest.raises(ValueError, match="exceeds the limit"):
        sp.load_weights(path)
    write_raw(path, GOOD, b"", length=1000)
    with pytest.raises(ValueError, match="past the end"):
        sp.load_weights(path)


def test_every_truncation_of_a_good_file_is_a_value_error(tmp_path):
    good = tmp_path / "good.safetensors"
    sp.save_weights(good, {"a": np.arange(6, dtype=np.float32), "b": np.ones((2, 2), np.float64)},
                    metadata={"k": "v"})
    blob = good.read_bytes()
    bad = tmp_path / "bad.safetensors"
    for cut in range(len(blob)):
        bad.write_bytes(blob[:cut])
        with pytest.raises(ValueError):
            sp.load_weights(bad)


def test_random_byte_flips_never_crash(tmp_path):
    good = tmp_path / "good.safetensors"
    sp.save_weights(good, {"a": np.arange(6, dtype=np.float32), "b": np.ones((2, 2), np.float64)})
    blob = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.safetensors"
    for _ in range(300):
        mutated = bytearray(blob)
        for position in rng.integers(0, 8 + 120, size=rng.integers(1, 4)):
            mutated[position % len(mutated)] = rng.integers(0, 256)
        bad.write_bytes(bytes(mutated))
        try:
            sp.load_weights(bad)
        except ValueError:
            pass


def test_not_a_file_and_missing_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="Is a directory"):
        SafetensorsFile(tmp_path)
    with pytest.raises(FileNotFoundError, match="No such file"):
        SafetensorsFile(tmp_path / "missing.safetensors")
    if os.path.exists("/dev/null"):  # a character device: not a file, not an OS failure
        with pytest.raises(ValueError, match="not a regular file"):
            SafetensorsFile("/dev/null")
    with pytest.raises(FileNotFoundError):
        sp.load_weights(tmp_path / "missing.npz")


def test_malformed_npz(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a valid .npz"):
        sp.load_weights(path)
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a valid .npz"):
        sp.load_weights(tmp_path / "objects.npz")  # would need pickle: refused
    np.save(tmp_path / "single.npy", np.ones(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(ValueError, match="single array"):
        sp.load_weights(tmp_path / "single.npz")


def test_malformed_h5(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "bad.weights.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="not a valid HDF5"):
        sp.load_weights(path)


def test_format_sniffing(tmp_path):
    st = tmp_path / "weights.bin"
    sp.save_weights(tmp_path / "w.safetensors", {"a": np.ones(2, np.float32)})
    st.write_bytes((tmp_path / "w.safetensors").read_bytes())
    assert weight_format(st) == "safetensors"
    np.testing.assert_array_equal(sp.load_weights(st)["a"], [1, 1])
    z = tmp_path / "weights.data"
    np.savez(tmp_path / "w.npz", a=np.ones(2))
    z.write_bytes((tmp_path / "w.npz").read_bytes())
    assert weight_format(z) == "npz"
    with pytest.raises(ValueError, match="cannot tell"):
        weight_format(tmp_path / "nothing.xyz")


# --------------------------------------------------------------------------- #
# Atomic writes
# --------------------------------------------------------------------------- #


def test_failed_write_leaves_destination_untouched(tmp_path):
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, {"old": np.ones(2, np.float32)})
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with SafetensorsWriter(path) as writer:
            writer.add("new", np.zeros(3, np.float32))
            raise RuntimeError("interrupted")
    assert path.read_bytes() == before
    with pytest.raises(TypeError):
        sp.save_weights(path, {"a": np.ones(2), "b": np.ones(2, np.complex128)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_writer_rejects_duplicates_and_use_after_commit(tmp_path):
    writer = SafetensorsWriter(tmp_path / "m.safetensors")
    writer.add("a", np.ones(2, np.float32))
    with pytest.raises(ValueError, match="duplicate"):
        writer.add("a", np.ones(2, np.float32))
    writer.commit()
    with pytest.raises(ValueError, match="closed"):
        writer.add("b", np.ones(2, np.float32))
    with pytest.raises(ValueError, match="closed"):
        writer.commit()


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot create"):
        sp.save_weights(tmp_path / "missing" / "m.safetensors", {"a": np.ones(2)})


def test_overwrite_a_file_that_is_mapped(tmp_path):
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, {"a": np.arange(3, dtype=np.float32)})
    loaded = sp.load_weights(path)
    sp.save_weights(path, {"a": loaded["a"] * 2})
    np.testing.assert_array_equal(loaded["a"], [0, 1, 2])  # old mapping intact
    np.testing.assert_array_equal(sp.load_weights(path)["a"], [0, 2, 4])


def test_file_layout_is_aligned_and_standard(tmp_path):
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, {"a": np.arange(3, dtype=np.float32)}, metadata={"k": "v"})
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(blob[8:8 + n])
    assert header == {"__metadata__": {"k": "v"}, "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}
    assert blob[8 + n:] == np.arange(3, dtype="<f4").tobytes()


# --------------------------------------------------------------------------- #
# The reference implementation, both directions (skipped only without it)
# --------------------------------------------------------------------------- #


def test_files_from_the_safetensors_package_load_identically(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    weights = {k: v for k, v in sample_weights().items()}
    path = tmp_path / "peer.safetensors"
    st.save_file(weights, str(path), metadata={"format": "np"})
    loaded = sp.load_weights(path)
    assert sorted(loaded) == sorted(weights)
    for name, value in weights.items():
        assert loaded[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded[name], value)
    assert SafetensorsFile(path).metadata == {"format": "np"}


def test_files_from_swiftprune_load_in_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    weights = sample_weights()
    path = tmp_path / "ours.safetensors"
    sp.save_weights(path, weights, metadata={"who": "swiftprune"})
    loaded = st.load_file(str(path))
    assert sorted(loaded) == sorted(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"who": "swiftprune"}


@pytest.mark.parametrize("reserve", [0, 7, 64, 100_000])
def test_header_reserve_too_small_or_large(tmp_path, reserve):
    weights = sample_weights()
    path = tmp_path / "m.safetensors"
    with SafetensorsWriter(path, header_reserve=reserve) as writer:
        writer.set_metadata("k", "v" * 50)
        for name, value in weights.items():
            writer.add(name, value)
    assert_same(sp.load_weights(path), weights)
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert (8 + n) % 8 == 0 and n >= min(reserve, n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary left
    st = pytest.importorskip("safetensors.numpy")
    loaded = st.load_file(str(path))
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_bad_header_reserve(tmp_path):
    with pytest.raises(ValueError, match="header_reserve"):
        SafetensorsWriter(tmp_path / "m.safetensors", header_reserve=-1)
    with pytest.raises(ValueError, match="header_reserve"):
        SafetensorsWriter(tmp_path / "m.safetensors", header_reserve=10**9)


def test_float8_needs_ml_dtypes(tmp_path):
    path = tmp_path / "f8.safetensors"
    write_raw(path, {"x": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\x38\x40")
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="ml_dtypes"):
            sp.load_weights(path)
    else:
        np.testing.assert_array_equal(sp.load_weights(path)["x"].astype(np.float32), [1.0, 2.0])


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_mappings_and_descriptors_are_released(tmp_path):
    import gc

    path = tmp_path / "m.safetensors"
    sp.save_weights(path, sample_weights())

    # Only the library's own mappings and descriptors (those of files under
    # tmp_path) are counted: the rest of the process (allocator arenas,
    # thread stacks, other tests' files) may come and go meanwhile.
    root = str(tmp_path.resolve())

    def counts() -> tuple[int, int]:
        gc.collect()
        with open("/proc/self/maps") as f:
            maps = sum(1 for line in f if root in line)
        fds = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds += os.readlink(f"/proc/self/fd/{fd}").startswith(root)
            except OSError:
                pass
        return maps, fds

    for _ in range(20):
        sp.load_weights(path)
    before = counts()
    assert before == (0, 0)
    for mmap in (False, True):
        for _ in range(30):
            weights = sp.load_weights(path, mmap=mmap)
            sp.save_weights(tmp_path / "out.safetensors", weights)
            with pytest.raises(FileNotFoundError):
                sp.load_weights(tmp_path / "missing.safetensors")
        # mmap: the last mapping is alive while `weights` is; read: nothing stays open.
        assert (counts() != before) == mmap
        del weights
        assert counts() == before


def test_concurrent_reads_and_writes(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    weights = sample_weights()
    sp.save_weights(tmp_path / "m.safetensors", weights)

    def work(i: int) -> None:
        loaded = sp.load_weights(tmp_path / "m.safetensors")
        sp.save_weights(tmp_path / f"copy{i}.safetensors", loaded)
        assert_same(sp.load_weights(tmp_path / f"copy{i}.safetensors"), weights)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(16)))
