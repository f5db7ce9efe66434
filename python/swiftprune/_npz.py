"""A defensive ``.npz`` reader: NumPy's format, none of its surprises.

``np.load`` on an untrusted archive inflates whatever a member declares (a
small file can expand to gigabytes), trusts the ``.npy`` header's shape
(allocating before reading), and lets ``RuntimeError`` (encrypted members),
``NotImplementedError`` (unknown compression) or raw ``bytes`` (members that
are not ``.npy`` arrays) through. Here every member is checked from the
zip directory and its ``.npy`` header before any data is inflated:

- only stored or deflated, unencrypted members named ``*.npy``;
- the total declared (inflated) size at most ``max_bytes``;
- a ``.npy`` header NumPy accepts, a dtype without Python objects, and a
  shape whose byte count is exactly what the member holds.

Any problem raises ``ValueError`` naming the file and the member; nothing is
ever unpickled.
"""
from __future__ import annotations

import os
import struct
import zipfile
import zlib
from typing import Any, Optional

import numpy as np

#: The default ``max_bytes``: this many times the file size, but at least
#: ``_MINIMUM_LIMIT``. Deflate's best ratio is ~1032:1, so only archives of
#: very repetitive data (e.g. mostly-zero weights) come near the factor; the
#: floor keeps small archives of such data loadable.
_SIZE_FACTOR = 64
_MINIMUM_LIMIT = 1 << 30


def default_max_bytes(file_size: int) -> int:
    """The inflated-size limit used when ``max_bytes`` is not given."""
    return max(_SIZE_FACTOR * int(file_size), _MINIMUM_LIMIT)


def _member_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """Reads one checked member as an array."""
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
            elif version in ((2, 0), (3, 0)):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - NumPy's header parser (tokenize, ast) raises many kinds
            raise ValueError(f"{where}: invalid .npy header: {type(error).__name__}: {error}") from None
        header_end = member.tell()
    if dtype.hasobject:
        raise ValueError(f"{where}: dtype {dtype} holds Python objects, which are never unpickled")
    count = 1
    for d in shape:
        if not isinstance(d, int) or d < 0:
            raise ValueError(f"{where}: invalid shape {shape!r}")
        count *= d
    needed = count * dtype.itemsize
    held = info.file_size - header_end
    if needed != held:
        raise ValueError(f"{where}: shape {shape} of {dtype} needs {needed} bytes, the member holds {held}")
    with archive.open(info) as member:
        array = np.lib.format.read_array(member, allow_pickle=False)
    return array


def load_npz(path: str, max_bytes: Optional[int] = None, opener: Any = open) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, checked (see the module doc).

    ``opener(path)`` returns the binary file object (io.py passes one that
    refuses FIFOs and devices). ``max_bytes`` limits the total inflated size
    (default :func:`default_max_bytes` of the file size).
    """
    with opener(path) as f:
        file_size = os.fstat(f.fileno()).st_size
        limit = default_max_bytes(file_size) if max_bytes is None else int(max_bytes)
        if limit < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        try:
            if f.read(6) == b"\x93NUMPY":
                raise ValueError("it holds a single array (.npy), not an .npz archive")
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                infos = archive.infolist()
                total = 0
                for info in infos:
                    where = f"member {info.filename!r}"
                    if info.is_dir():
                        raise ValueError(f"{where} is a directory, not an array")
                    if not info.filename.endswith(".npy"):
                        raise ValueError(f"{where} is not a .npy array (an .npz holds only arrays)")
                    if info.flag_bits & 0x1:
                        raise ValueError(f"{where} is encrypted")
                    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                        raise ValueError(f"{where} uses compression method {info.compress_type}; "
                                         "only stored and deflated members are read")
                    total += info.file_size
                    if total > limit:
                        raise ValueError(
                            f"{where}: the members inflate to more than max_bytes={limit} bytes "
                            f"(the file has {file_size}); pass a larger max_bytes to load_weights if it is trusted")
                out: dict[str, np.ndarray] = {}
                for info in infos:
                    out[info.filename[:-4]] = _member_array(archive, info, f"member {info.filename!r}")
                return out
        except ValueError as error:
            raise ValueError(f"{path}: not a valid .npz weight file: {error}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, KeyError, struct.error,
                RuntimeError, NotImplementedError, UnicodeDecodeError, OverflowError, SyntaxError,
                TypeError, IndexError, OSError) as error:
            # OSError: a seek before the start of the file (offsets the archive lies about).
            raise ValueError(f"{path}: not a valid .npz weight file: {type(error).__name__}: {error}") from None
