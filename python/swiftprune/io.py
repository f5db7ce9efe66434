"""Weight files: ``.safetensors``, ``.npz`` and Keras ``.weights.h5``.

``load_weights`` returns a ``dict`` name → array for every format; a
sequence saved by ``save_weights`` comes back with the names ``"0"``,
``"1"``, ... . Every write is atomic: the file is written under a temporary
name in the destination's directory, flushed to disk and renamed over the
destination, so a reader never sees a partial file. Nothing is ever pickled.

safetensors files are parsed, validated and written by the Swift core.
Tensors are read into memory (``pread``) by default; ``mmap=True`` gives
read-only zero-copy views of the memory-mapped file instead, with the
hazard every mapping has (see :func:`load_weights`). ``BF16`` tensors are
widened exactly to float32 (NumPy has no bfloat16); ``F8_*`` tensors need
``ml_dtypes``. Only regular files are read: a FIFO or device is refused
instead of blocking.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from . import _core
from ._atomic import atomic_file, atomic_path  # noqa: F401  (atomic_path: re-exported for writers)

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["load_weights", "save_weights", "SafetensorsFile", "weight_format"]

# safetensors dtype name -> NumPy dtype (little-endian, as the format stores them).
_SAFETENSORS_TO_NUMPY = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
_NUMPY_TO_SAFETENSORS = {(dt.kind, dt.itemsize): name for name, dt in _SAFETENSORS_TO_NUMPY.items()}
_ML_DTYPES = {"bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2"}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


def require_regular_file(path: PathLike) -> None:
    """Raises ``ValueError`` if ``path`` exists but is not a regular file
    (after symlinks): a FIFO, socket, device or directory, which reading
    would block on or misread. A missing or unreadable path is left to the
    reader, which reports it as before.
    """
    try:
        info = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):  # a directory: IsADirectoryError later
        raise ValueError(f"{os.fspath(path)} is not a regular file (a FIFO, socket or device "
                         "cannot be read as weights)")


def _open_regular(path: PathLike) -> "Any":
    """``open(path, "rb")`` that never blocks on a FIFO and refuses anything
    but a regular file (checked on the open descriptor, so no race)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, f"cannot read {os.fspath(path)}: Is a directory")
        if not stat.S_ISREG(mode):
            raise ValueError(f"{os.fspath(path)} is not a regular file (a FIFO, socket or device "
                             "cannot be read as weights)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def weight_format(path: PathLike) -> str:
    """The weight-file format of ``path``: ``"safetensors"``, ``"npz"`` or ``"h5"``.

    Decided by the file name (``.safetensors``, ``.npz``, ``.h5`` /
    ``.hdf5``, which covers Keras ``.weights.h5``); for another name of an
    existing file, by its first bytes. ``ValueError`` otherwise.
    """
    name = os.fspath(path).lower()
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    try:
        with _open_regular(path) as f:
            head = f.read(9)
    except (OSError, ValueError):
        head = b""
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head.startswith(_HDF5_MAGIC[:8]):
        return "h5"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    raise ValueError(
        f"cannot tell the weight-file format of {os.fspath(path)!r}: "
        "use a .safetensors, .npz or .h5 (Keras .weights.h5) file name")


# --------------------------------------------------------------------------- #
# safetensors
# --------------------------------------------------------------------------- #


def _widen_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) as float32: exact (the top half of a float32)."""
    return np.left_shift(bits, 16, dtype=np.uint32).view(np.float32)  # one pass, no uint32 temporary


class SafetensorsFile:
    """A safetensors file opened for reading, its header validated.

    The whole header is checked when the file is opened (see the C ABI's
    ``sp_safetensors_open_ex``); any problem raises ``ValueError`` naming the
    file and the fault. By default each tensor is read from the file into a
    new array on access (the file stays open; a file truncated meanwhile
    raises ``ValueError``). With ``mmap=True`` tensors are read-only views of
    a memory mapping, created on access, and the mapping lives as long as
    this object or any tensor taken from it: no copy, but if another process
    truncates or rewrites the file in place while a view is in use, the
    operating system kills this process with SIGBUS (as with
    ``np.load(mmap_mode="r")``). Files written by swiftprune are replaced by
    rename, which never does that.

    Parameters
    ----------
    path : str or os.PathLike
        The file (a regular file: FIFOs and devices are refused).
    mmap : bool, default False
        Map the file and return zero-copy views.

    Examples
    --------
    >>> f = SafetensorsFile("model.safetensors")        # doctest: +SKIP
    >>> for name in f.names:                            # doctest: +SKIP
    ...     w = f[name]; ...; f.release(name)
    """

    def __init__(self, path: PathLike, *, mmap: bool = False) -> None:
        self.path = os.fspath(path)
        self.mmap = bool(mmap)
        self._handle = _core.safetensors_open(self.path, self.mmap)
        self._entries = {name: (dtype, shape, raw) for name, dtype, shape, raw in _core.safetensors_tensors(self._handle)}
        self._index = {name: i for i, name in enumerate(self._entries)}
        self.metadata: dict[str, str] = _core.safetensors_metadata(self._handle)

    @property
    def names(self) -> list[str]:
        """Tensor names in header order."""
        return list(self._entries)

    def dtype_name(self, name: str) -> str:
        """The tensor's safetensors dtype, e.g. ``"F32"``."""
        return self._entries[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        """The tensor's shape."""
        return self._entries[name][1]

    def nbytes(self, name: str) -> int:
        """The tensor's size in the file, in bytes."""
        dtype_name, shape, raw = self._entries[name]
        if raw is not None:
            return int(raw.size)
        return int(np.prod(shape, dtype=np.int64)) * _safetensors_itemsize(dtype_name)

    def raw_bytes(self, name: str, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The tensor's stored bytes as read-only uint8 (dtype untouched, BF16
        stays BF16): a view of the mapping with ``mmap=True``, else read now,
        into ``out`` when given (a writeable C-contiguous uint8 array of
        :meth:`nbytes` bytes: a caller that reads on another thread allocates
        there, where freed buffers are reused — glibc gives a thread's large
        allocations fresh pages every time)."""
        raw = self._entries[name][2]
        if raw is not None:
            return raw
        if out is None:
            out = np.empty(self.nbytes(name), dtype=np.uint8)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 1
                  and out.size == self.nbytes(name) and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"out must be a writeable C-contiguous uint8 array of {self.nbytes(name)} bytes "
                             f"for tensor {name!r}")
        _core.safetensors_read(self._handle, self._index[name], out)
        out.flags.writeable = False
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __getitem__(self, name: str) -> np.ndarray:
        """The tensor as a read-only array (a view of the mapping with
        ``mmap=True``, else a copy read from the file; BF16: a float32 copy)."""
        dtype_name, shape, _ = self._entries[name]
        raw = self.raw_bytes(name)
        if dtype_name in _SAFETENSORS_TO_NUMPY:
            return raw.view(_SAFETENSORS_TO_NUMPY[dtype_name]).reshape(shape)
        if dtype_name == "BF16":
            return _widen_bfloat16(raw.view("<u2")).reshape(shape)
        try:
            import ml_dtypes
        except ImportError:
            raise ValueError(
                f"{self.path}: tensor {name!r} is {dtype_name}, which needs the ml_dtypes package "
                "(pip install ml_dtypes)") from None
        kind = {"F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2}[dtype_name]
        return raw.view(kind).reshape(shape)

    def release(self, name: str) -> None:
        """Lets the pages of tensor ``name`` leave resident memory.

        The tensor stays readable (its pages are read again when touched).
        Call it after processing each tensor of a large file to keep the
        process's memory near one tensor. Without ``mmap`` nothing of the
        file stays resident, and this does nothing.
        """
        _core.safetensors_release(self._handle, self._index[name])

    def to_dict(self) -> dict[str, np.ndarray]:
        """Every tensor, as :meth:`__getitem__` gives them."""
        return {name: self[name] for name in self._entries}


def _safetensors_itemsize(dtype_name: str) -> int:
    """Bytes per element of a safetensors dtype name."""
    if dtype_name in _SAFETENSORS_TO_NUMPY:
        return _SAFETENSORS_TO_NUMPY[dtype_name].itemsize
    return {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}[dtype_name]


def _safetensors_dtype(name: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    """The safetensors dtype name of ``array`` and its little-endian bytes as an array."""
    dtype = array.dtype
    if dtype.name in _ML_DTYPES:
        return _ML_DTYPES[dtype.name], array
    key = (dtype.kind, dtype.itemsize)
    if key not in _NUMPY_TO_SAFETENSORS:
        raise TypeError(
            f"tensor {name!r} has dtype {dtype}, which safetensors cannot store "
            "(bool, signed/unsigned integers and float16/32/64 can)")
    return _NUMPY_TO_SAFETENSORS[key], array.astype(dtype.newbyteorder("<"), copy=False)


class SafetensorsWriter:
    """Writes a safetensors file tensor by tensor, atomically.

    Tensors go to a temporary file beside ``path`` as they are added, so a
    model can be written without holding it in memory. Use as a context
    manager: the file appears at ``path`` only when the block ends without an
    exception. ``header_reserve`` is the room (bytes) kept for the header in
    front of the data; the header is padded with spaces to fill it, and one
    that outgrows it costs a copy of the data at commit.
    """

    def __init__(self, path: PathLike, header_reserve: int = 4088) -> None:
        self.path = os.fspath(path)
        self._handle = _core.safetensors_writer(self.path, int(header_reserve))

    def add(self, name: str, array: Any) -> None:
        """Appends tensor ``name`` (its bytes are copied to the spool file)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor names must be non-empty strings, got {name!r}")
        array = np.asarray(array)
        dtype_name, data = _safetensors_dtype(name, array)
        _core.safetensors_writer_add(self._handle, name, dtype_name, array.shape, data)

    def set_metadata(self, key: str, value: str) -> None:
        """Sets a ``__metadata__`` entry (strings only)."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"safetensors metadata must map str to str, got {key!r}: {value!r}")
        _core.safetensors_writer_set_metadata(self._handle, key, value)

    def commit(self) -> None:
        """Writes the file and renames it into place."""
        _core.safetensors_writer_commit(self._handle)

    def __enter__(self) -> "SafetensorsWriter":
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.commit()
        # Otherwise the writer is discarded when its handle dies.
        self._handle = None


# --------------------------------------------------------------------------- #
# Containers, npz, h5
# --------------------------------------------------------------------------- #


def _named_arrays(weights: Any) -> dict[str, np.ndarray]:
    """``weights`` (mapping or sequence) as name → array; the sequence index names a sequence."""
    if isinstance(weights, Mapping):
        items = list(weights.items())
    elif isinstance(weights, Sequence) and not isinstance(weights, (str, bytes)):
        items = [(str(i), w) for i, w in enumerate(weights)]
    else:
        raise TypeError(f"weights must be a mapping name -> array or a sequence of arrays, got {type(weights).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, value in items:
        if not isinstance(name, str) or not name:
            raise TypeError(f"weight names must be non-empty strings, got {name!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" and array.dtype.name not in _ML_DTYPES:
            raise TypeError(f"weight {name!r} has dtype {array.dtype}; only bool, integer and float arrays are weights")
        out[name] = array
    return out


def header_size_estimate(ndims: Mapping[str, int], metadata: Mapping[str, str] | None = None,
                         parts: int = 1) -> int:
    """An upper bound on the JSON header for tensors of these ranks (each
    stored as up to ``parts`` tensors) and metadata, so the writer never copies."""
    size = 64
    for name, ndim in ndims.items():
        per_part = len(json.dumps(name)) + 16 + 90 + 21 * max(int(ndim), 1)
        size += parts * per_part
    for key, value in (metadata or {}).items():
        size += len(json.dumps(key)) + len(json.dumps(value)) + 2
    return min(size, 100_000_000)


def _json_string_length(text: str) -> int:
    """UTF-8 bytes of `text` as the Swift writer quotes it (\\b and \\f as \\u00XX)."""
    quoted = json.dumps(text, ensure_ascii=False)
    return len(quoted.encode("utf-8")) + 4 * (text.count("\b") + text.count("\f"))


def exact_header_reserve(entries: Sequence[tuple[str, str, Sequence[int], int]],
                         metadata: Mapping[str, str] | None = None) -> int:
    """The exact header room (JSON padded to the 8-byte alignment) of a file
    holding ``entries`` — ``(name, safetensors dtype, shape, nbytes)`` in
    order — and ``metadata``, as the Swift writer lays it out. With it as
    ``header_reserve`` the writer puts the header in place without moving
    the data; a wrong guess costs one move of the data, never slack."""
    size = 2  # the braces
    items = 0
    if metadata:
        size += len('"__metadata__":{}') + sum(_json_string_length(k) + 1 + _json_string_length(v)
                                              for k, v in metadata.items()) + len(metadata) - 1
        items += 1
    offset = 0
    for name, dtype, shape, nbytes in entries:
        text = (f':{{"dtype":"{dtype}","shape":[{",".join(str(int(d)) for d in shape)}],'
                f'"data_offsets":[{offset},{offset + int(nbytes)}]}}')
        size += _json_string_length(name) + len(text)
        offset += int(nbytes)
        items += 1
    size += max(items - 1, 0)  # commas
    return -(-(8 + size) // 8) * 8 - 8


def _load_npz(path: str, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    from ._npz import load_npz

    return load_npz(path, max_bytes=max_bytes, opener=_open_regular)


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError("Keras .weights.h5 files need the h5py package: pip install h5py") from None
    return h5py


def _load_h5(path: str, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    from ._npz import default_max_bytes

    h5py = _import_h5py()
    require_regular_file(path)
    limit = default_max_bytes(os.path.getsize(path)) if max_bytes is None else int(max_bytes)
    out: dict[str, np.ndarray] = {}
    total = [0]
    try:
        with h5py.File(path, "r") as f:
            def visit(name: str, node: Any) -> None:
                if isinstance(node, h5py.Dataset):
                    # Checked before reading: a compressed dataset can declare far more than the file holds.
                    total[0] += int(node.size) * int(node.dtype.itemsize)
                    if total[0] > limit:
                        raise ValueError(f"{path}: dataset {name!r}: the datasets hold more than "
                                         f"max_bytes={limit} bytes; pass a larger max_bytes if the file is trusted")
                    if node.dtype.kind not in "biuf":
                        raise ValueError(f"{path}: dataset {name!r} has dtype {node.dtype}, not a numeric weight")
                    out[name] = np.asarray(node[()])

            f.visititems(visit)
    except (OSError, RuntimeError, KeyError, TypeError, IndexError, OverflowError, SystemError) as error:
        # h5py reports a corrupt file as OSError, RuntimeError or KeyError depending on where the HDF5
        # library notices; all of them mean a malformed file here.
        if isinstance(error, OSError) and not os.path.exists(path):
            raise
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, f"cannot read {path}: Is a directory") from None
        if not os.access(path, os.R_OK):
            raise PermissionError(errno.EACCES, f"cannot read {path}: Permission denied") from None
        raise ValueError(f"{path}: not a valid HDF5 weight file: {type(error).__name__}: {error}") from None
    return out


def load_weights(path: PathLike, *, mmap: bool = False, max_bytes: int | None = None,
                 decompress: bool = False) -> dict[str, np.ndarray]:
    """Loads every tensor of a weight file, as a ``dict`` name → array.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors``, ``.npz`` or Keras ``.weights.h5`` file (the
        format comes from the name, else from the file's first bytes), or a
        sharded checkpoint: a folder of ``.safetensors`` shards or its
        ``*.safetensors.index.json``, returned as a lazy
        :class:`~swiftprune.distributed.ShardedCheckpoint` mapping (each
        tensor read from its shard when accessed). A FIFO, socket or device
        raises ``ValueError`` at once instead of blocking.
    mmap : bool, default False
        safetensors only: return read-only zero-copy views of the
        memory-mapped file instead of arrays read into memory. Faster and
        lighter for large files, with the hazard of every memory mapping
        (as ``np.load(mmap_mode="r")``): if another process truncates or
        rewrites the file in place while a view is in use, the operating
        system ends this process with SIGBUS. swiftprune's own writers
        replace files by rename, which is safe.
    max_bytes : int, optional
        ``.npz`` / ``.h5`` only: the largest total size the arrays may
        declare, checked before anything is inflated (zip bombs). Default:
        64 times the file size, at least 1 GiB.
    decompress : bool, default False
        For a file written by ``CompressionResult.save`` / ``swiftprune
        compress`` (packed parts such as ``"w::values"``, ``"w::mask"``):
        return the dense float32 weights (as
        ``swiftprune.load_compressed(path).weights``, a list's entries named
        ``"0"``, ``"1"``, ...). Without it such a file is an error.

    Returns
    -------
    dict of str to numpy.ndarray
        In file order, read-only for safetensors (BF16 widened to float32);
        ``.npz`` and ``.h5`` tensors are loaded into memory. HDF5 names are
        dataset paths such as ``"layers/dense/vars/0"``.

    Raises
    ------
    ValueError
        The file is malformed: truncated, a bad header length, invalid JSON,
        offsets outside the file or overlapping, unknown dtypes, pickled
        objects, encrypted or non-array members or a size over ``max_bytes``
        in an ``.npz``, a file that is not a regular file, and so on. The
        message names the file.
        Also for a swiftprune compressed file without ``decompress=True``.
    OSError
        The file cannot be read: ``FileNotFoundError``, ``IsADirectoryError``,
        ``PermissionError``, ... ``ImportError`` for ``.h5`` without h5py.

    Examples
    --------
    >>> weights = load_weights("model.safetensors")                 # doctest: +SKIP
    >>> result = compress(weights, [{"prune": {"sparsity": 0.8}}])  # doctest: +SKIP
    """
    path = os.fspath(path)
    from .distributed.checkpoint import ShardedCheckpoint, is_sharded_path
    if is_sharded_path(path):
        return ShardedCheckpoint(path)  # type: ignore[return-value]  (a lazy Mapping)
    require_regular_file(path)
    kind = weight_format(path)
    if kind == "safetensors":
        source = SafetensorsFile(path, mmap=mmap)
        if "swiftprune" in source.metadata:
            if not decompress:
                example = repr(source.names[0]) if source.names else "'w::values'"
                raise ValueError(
                    f"{path} is a swiftprune compressed file: its tensors are packed parts (such as "
                    f"{example}), not weights; read it with "
                    "swiftprune.load_compressed(path), or load_weights(path, decompress=True) for the dense weights")
            from .model import load_compressed

            weights = load_compressed(path).weights
            return dict(weights) if isinstance(weights, dict) else {str(i): w for i, w in enumerate(weights)}
        return source.to_dict()
    if kind == "npz":
        return _load_npz(path, max_bytes)
    return _load_h5(path, max_bytes)


def save_weights(path: PathLike, weights: Any, *, metadata: Mapping[str, str] | None = None,
                 max_shard_size: int | str | None = None) -> None:
    """Writes ``weights`` to a weight file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its name picks the format: ``.safetensors``, ``.npz`` or
        ``.h5`` / ``.weights.h5`` (needs h5py); a folder (existing, ending in
        ``/`` or without a suffix) or an ``*.safetensors.index.json`` writes
        a sharded checkpoint (see :func:`swiftprune.distributed.save_sharded`).
    weights : mapping of str to array_like, or sequence of array_like
        The tensors (bool, integer or float). A sequence (e.g. Keras
        ``get_weights()``) is saved under the names ``"0"``, ``"1"``, ...
    metadata : mapping of str to str, optional
        safetensors only: the ``__metadata__`` entries.
    max_shard_size : int or str, optional
        Sharded checkpoints only: the most tensor bytes per shard
        (default ``"5GB"``; ``"2GiB"`` or an int also work).

    Raises
    ------
    TypeError
        A name is not a non-empty string, or a tensor is not a bool,
        integer or float array.
    ValueError
        Unknown format, or ``metadata`` given for a format without it.
    """
    path = os.fspath(path)
    from .distributed.checkpoint import is_sharded_path
    if is_sharded_path(path, destination=True):
        from .distributed.save import save_sharded
        save_sharded(path, weights, metadata=metadata, **({} if max_shard_size is None else {"max_shard_size": max_shard_size}))
        return
    if max_shard_size is not None:
        raise ValueError(f"max_shard_size is for sharded checkpoints (a folder or an .index.json), not {path!r}")
    arrays = _named_arrays(weights)
    name = path.lower()
    if name.endswith(".safetensors"):
        entries = []
        for tensor_name, array in arrays.items():
            dtype_name, data = _safetensors_dtype(tensor_name, array)
            entries.append((tensor_name, dtype_name, array.shape, data.nbytes))
        with SafetensorsWriter(path, header_reserve=exact_header_reserve(entries, metadata)) as writer:
            for key, value in (metadata or {}).items():
                writer.set_metadata(key, value)
            for tensor_name, array in arrays.items():
                writer.add(tensor_name, array)
        return
    if metadata:
        raise ValueError("metadata can only be saved in .safetensors files")
    if name.endswith(".npz"):
        with atomic_file(path) as f:
            np.savez(f, **arrays)
        return
    if name.endswith((".h5", ".hdf5")):
        h5py = _import_h5py()
        with atomic_file(path) as handle:
            with h5py.File(handle, "w") as f:
                for tensor_name, array in arrays.items():
                    try:
                        f.create_dataset(tensor_name, data=array)
                    except (ValueError, TypeError) as error:
                        raise ValueError(f"cannot store tensor {tensor_name!r} in HDF5: {error}") from None
        return
    raise ValueError(f"cannot tell the weight-file format of {path!r}: use a .safetensors, .npz or .h5 file name")
