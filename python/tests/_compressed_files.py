"""Test helper for compressed files: a copy of a file with its metadata document replaced (old formats,
mutated documents)."""
from __future__ import annotations

import os

from swiftprune.io import SafetensorsFile, SafetensorsWriter


def rewrite_metadata(source: str | os.PathLike, target: str | os.PathLike, text: str) -> None:
    """Writes to `target` the tensors of the safetensors file `source` with the metadata "swiftprune" = `text`."""
    f = SafetensorsFile(source)
    with SafetensorsWriter(target) as out:
        out.set_metadata("swiftprune", text)
        for name in f.names:
            out.add(name, f[name])
