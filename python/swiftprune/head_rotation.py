"""Per-head rotations of attention weights: exact in float, easier to quantize.

Attention mixes tokens, not channels: for each head ``h`` the values enter
the output projection as ``P_h V_h W_o[h]`` (``P_h`` the attention
probabilities, ``V_h = X W_v[h] + b_v[h]`` that head's value channels, torch
notation on row vectors). Any orthogonal ``R`` (``d × d``, ``d`` the head
dimension) therefore cancels between the pair::

    P_h (X W_v[h]ᵀ R + b_v[h] R)(Rᵀ W_o[:, h]ᵀ) = P_h (X W_v[h]ᵀ + b_v[h]) W_o[:, h]ᵀ

(the softmax rows sum to one, so the bias rotates with the weight). The
queries and keys of a head can share one rotation too: ``(q R)(k R)ᵀ =
q kᵀ``. The model's function is unchanged, but a normalized Hadamard ``R``
spreads a channel with large weights over all ``d`` channels of its head, so
group-wise quantization (GPTQ, round-to-nearest) of the output projection's
input columns and of the value rows loses less (the QuaRot / SpinQuant idea,
applied here without any runtime op). Apply the rotation before capturing
calibration statistics and compressing.

:func:`rotate_heads` rotates named weights of a ``{name: array}`` dict;
:func:`head_rotation_matrix` gives the ``d × d`` matrix it uses.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import NDArray

from ._validation import check_int, float_array

__all__ = ["rotate_heads", "head_rotation_matrix"]

LAYOUTS = ("torch", "keras")
ROTATIONS = ("hadamard", "random")


def _sylvester(n: int) -> NDArray[np.float64]:
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _paley_12() -> NDArray[np.float64]:
    """A 12 × 12 Hadamard matrix (Paley's construction from the quadratic residues mod 11)."""
    q = 11
    residues = {(i * i) % q for i in range(1, q)}
    chi = np.array([0] + [1 if a in residues else -1 for a in range(1, q)])
    core = chi[(np.arange(q)[None, :] - np.arange(q)[:, None]) % q]
    s = np.zeros((q + 1, q + 1))
    s[0, 1:], s[1:, 0], s[1:, 1:] = 1, -1, core
    return s + np.eye(q + 1)


def _power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def head_rotation_matrix(head_dim: int, rotation: str = "hadamard", seed: Optional[int] = None
                         ) -> NDArray[np.float64]:
    """The orthogonal ``head_dim × head_dim`` matrix ``R`` used by :func:`rotate_heads` (float64).

    Parameters
    ----------
    head_dim : int >= 1
    rotation : {"hadamard", "random"}
        ``"hadamard"``: the normalized Hadamard matrix (Sylvester's for a power
        of two, ``H_12 ⊗ H_{2^k}`` for ``12 · 2^k``; every entry ``±1/√d``), for
        any other size a ValueError (pass ``rotation="random"``). ``"random"``:
        a Haar-random orthogonal matrix from ``seed`` (QR of a Gaussian matrix
        with the sign of ``diag(R)`` fixed).
    seed : int or None
        For ``"random"`` only (None: 0, so the result is reproducible).

    Returns
    -------
    numpy.ndarray, shape (head_dim, head_dim), float64, ``R Rᵀ = I``
    """
    d = check_int("head_dim", head_dim, minimum=1)
    if rotation == "hadamard":
        if seed is not None:
            raise ValueError("seed applies to rotation='random' only")
        if _power_of_two(d):
            return _sylvester(d) / np.sqrt(d)
        if d % 12 == 0 and _power_of_two(d // 12):
            return np.kron(_paley_12(), _sylvester(d // 12)) / np.sqrt(d)
        raise ValueError(f"no Hadamard matrix here for head_dim {d} (a power of two or 12 times one); "
                         "pass rotation='random' for a seeded random orthogonal matrix")
    if rotation == "random":
        rng = np.random.default_rng(0 if seed is None else check_int("seed", seed, minimum=0))
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        return q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]
    raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")


def _tensor(weights: Mapping[str, np.ndarray], name: object, role: str) -> np.ndarray:
    if not isinstance(name, str):
        raise TypeError(f"{role} must be a tensor name (str), got {name!r}")
    if name not in weights:
        raise ValueError(f"{role} {name!r} is not in the weights")
    return float_array(f"{role} {name!r}", weights[name])


def _check_2d(array: np.ndarray, name: str) -> None:
    if array.ndim != 2:
        raise ValueError(f"{name!r} must be a 2-D weight, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name!r} contains NaN or Inf values")


def _head_channels(array: np.ndarray, name: str, axis: int, head_dim: int, what: str) -> int:
    """The size of `array`'s head-channel axis, checked to split into heads."""
    size = array.shape[axis]
    if size % head_dim:
        raise ValueError(f"{name!r} has {size} {what} (axis {axis} of shape {array.shape}), "
                         f"which do not split into heads of {head_dim}")
    return size


def _rotate_axis(array: np.ndarray, axis: int, r: np.ndarray) -> np.ndarray:
    """`array` with each consecutive run of ``d`` entries along `axis` multiplied by ``R`` (``v ↦ v R``);
    computed in float64, returned in the input's dtype."""
    d = r.shape[0]
    moved = np.moveaxis(np.asarray(array, np.float64), axis, -1)
    heads = moved.reshape(*moved.shape[:-1], moved.shape[-1] // d, d)
    rotated = heads @ r
    return np.moveaxis(rotated.reshape(moved.shape), -1, axis).astype(array.dtype)


def rotate_heads(weights: Mapping[str, np.ndarray], pairs: Sequence[Tuple[str, str, Optional[str]]] = (),
                 head_dim: int = 64, *, query_key: Sequence[Tuple[str, str, Optional[str], Optional[str]]] = (),
                 layout: str = "torch", rotation: str = "hadamard", seed: Optional[int] = None
                 ) -> dict[str, np.ndarray]:
    """Rotate each attention head's value/output (and query/key) channels by an orthogonal matrix.

    The model's function is unchanged (exactly in real arithmetic; float
    rounding moves outputs by ~1e-7 relative): see the module docstring.
    Every head of every pair uses the same ``R``
    (:func:`head_rotation_matrix`).

    Parameters
    ----------
    weights : mapping of str to array
        The model's tensors; not modified.
    pairs : sequence of (value, output, value_bias)
        Names of an attention block's value projection weight, its output
        projection weight and the value bias (None if there is none). The
        value's head channels (its outputs: rows in torch layout) become
        ``V_h R``; the output projection's input channels ``W_o[:, h] R``
        (torch layout), so ``(V R)(Rᵀ W_o) = V W_o`` per head.
    head_dim : int
        Channels per head; must divide the value's outputs (which must equal
        the output projection's inputs).
    query_key : sequence of (query, key, query_bias, key_bias)
        Query and key projection weights (and biases or None) whose head
        channels are all rotated by ``R``: ``q kᵀ`` is unchanged. Only for
        attention whose scores depend on ``q kᵀ`` alone (not rotary position
        embeddings, which act on channel pairs).
    layout : {"torch", "keras"}
        ``"torch"``: weights are ``(out, in)`` (``nn.Linear``); ``"keras"``:
        kernels are ``(in, out)`` (``Dense``, ONNX ``MatMul`` initializers).
    rotation : {"hadamard", "random"}
        As :func:`head_rotation_matrix`: a head dimension that is not a power
        of two (or 12 times one) needs ``"random"``; "hadamard" refuses it.
    seed : int or None
        For ``rotation="random"``.

    Returns
    -------
    dict
        A new dict: the rotated tensors replaced (same dtype), every other
        entry the same object as in `weights`.

    Raises
    ------
    ValueError
        A name not in `weights` or used twice, a weight that is not 2-D or
        holds NaN/Inf, head channels that do not split into `head_dim`, a
        value/output (query/key) pair with different channel counts, a bias
        of another length, an unknown layout or rotation.
    TypeError
        A tensor that is not a floating array, a name that is not a str.

    Examples
    --------
    >>> import numpy as np, swiftprune as sp
    >>> rng = np.random.default_rng(0)
    >>> w = {"v": rng.standard_normal((8, 6)), "o": rng.standard_normal((6, 8)), "bv": rng.standard_normal(8)}
    >>> r = sp.rotate_heads(w, [("v", "o", "bv")], head_dim=4)
    >>> bool(np.allclose(r["o"] @ r["v"], w["o"] @ w["v"]))
    True
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    d = check_int("head_dim", head_dim, minimum=1)
    # torch (out, in): a producer's head channels are rows (axis 0), a consumer's are columns (axis 1)
    produced, consumed = (0, 1) if layout == "torch" else (1, 0)
    out = dict(weights)
    seen: set[str] = set()

    def claim(name: Optional[str]) -> None:
        if name is None:
            return
        if name in seen:
            raise ValueError(f"{name!r} appears twice in the rotation pairs")
        seen.add(name)

    def bias(name: Optional[str], channels: int, owner: str, role: str) -> Optional[np.ndarray]:
        if name is None:
            return None
        b = _tensor(weights, name, role)
        if b.shape != (channels,):
            raise ValueError(f"{role} {name!r} has shape {b.shape}, expected ({channels},) as {owner!r}'s outputs")
        return b

    def matched(first: str, first_role: str, second: str, second_role: str, second_axis: int, verb: str
                ) -> tuple[np.ndarray, np.ndarray, int]:
        """Two 2-D weights whose head channels (`first`'s outputs, `second`'s along `second_axis`) agree."""
        a, b = _tensor(weights, first, first_role), _tensor(weights, second, second_role)
        _check_2d(a, first)
        _check_2d(b, second)
        channels = _head_channels(a, first, produced, d, f"{first_role} channels")
        if b.shape[second_axis] != channels:
            raise ValueError(f"{second_role} {second!r} (shape {b.shape}) {verb} {b.shape[second_axis]} channels but "
                             f"{first_role} {first!r} (shape {a.shape}) gives {channels} ({layout} layout)")
        return a, b, channels

    jobs = []  # (name, array, axis) to rotate by v ↦ v R
    for entry in pairs:
        if len(entry) != 3:
            raise ValueError(f"each of pairs must be (value, output, value_bias), got {entry!r}")
        v_name, o_name, b_name = entry
        v, o, channels = matched(v_name, "value", o_name, "output", consumed, "reads")
        b = bias(b_name, channels, v_name, "value_bias")
        for name in (v_name, o_name, b_name):
            claim(name)
        jobs += [(v_name, v, produced), (o_name, o, consumed)] + ([(b_name, b, 0)] if b is not None else [])
    for entry in query_key:
        if len(entry) != 4:
            raise ValueError(f"each of query_key must be (query, key, query_bias, key_bias), got {entry!r}")
        q_name, k_name, qb_name, kb_name = entry
        q, k, channels = matched(q_name, "query", k_name, "key", produced, "gives")
        qb = bias(qb_name, channels, q_name, "query_bias")
        kb = bias(kb_name, channels, k_name, "key_bias")
        for name in (q_name, k_name, qb_name, kb_name):
            claim(name)
        jobs += [(q_name, q, produced), (k_name, k, produced)]
        jobs += [(n, a, 0) for n, a in ((qb_name, qb), (kb_name, kb)) if a is not None]
    r = head_rotation_matrix(d, rotation, seed)
    for name, array, axis in jobs:
        # every case is "v ↦ v R" along the head axis: torch value rows Rᵀ W_v, output columns W_o R; keras
        # value columns K_v R, output rows Rᵀ K_o; biases b R
        out[name] = _rotate_axis(array, axis, r)
    return out
