"""An ONNX model given as a path or an ``onnx.ModelProto``: one place for the checks and their errors
(channel pruning, activation scores, calibration capture and export all take either)."""
from __future__ import annotations

import errno
import os
from typing import Any


class OnnxFileError(ValueError):
    """The file is not a readable ONNX model."""


def load_onnx_model(model: Any, onnx: Any, *, copy: bool = False) -> Any:
    """``model`` as an ``onnx.ModelProto``: the proto itself (a copy when ``copy``), or the file at a path.

    ``onnx`` is the imported onnx module (each caller imports it with its own ImportError message).

    Raises
    ------
    FileNotFoundError
        No file at the path.
    OnnxFileError (a ValueError)
        The file is not a valid ONNX model; the message names the path.
    TypeError
        ``model`` is neither a path nor a ModelProto.
    """
    if isinstance(model, onnx.ModelProto):
        if not copy:
            return model
        duplicate = onnx.ModelProto()
        duplicate.CopyFrom(model)
        return duplicate
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be an .onnx path or an onnx.ModelProto, got {type(model).__name__}")
    path = os.fspath(model)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "no such .onnx file", path)
    try:
        return onnx.load(path)
    except Exception as error:  # protobuf's DecodeError, IsADirectoryError and friends
        raise OnnxFileError(f"{path}: not a valid ONNX model ({type(error).__name__}: {error})") from None
