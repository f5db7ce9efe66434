"""Calibration from a PyTorch ``nn.Module`` through forward hooks.

Every ``nn.Linear`` and ``nn.Conv2d`` (``groups = 1``) is a layer, named by
its ``state_dict`` weight key (``"encoder.fc1.weight"``), ``(out, in, ...)``
weights ("torch" layout); conv inputs go through their im2col view
(``torch.nn.functional.unfold``: features ordered ``(in, kh, kw)`` as the
weight flattens). The model runs under ``torch.no_grad()`` in eval mode; the
order in which the layers are first called is the forward order used for
sequential mode, which works on a deep copy (the caller's module is never
changed). Sequential mode applies every committed tensor of the
``state_dict`` (a compressed weight, a corrected bias, a folded scale) to that
copy, and recaptures the layers it may reach; a name the module does not
hold is an error. Layers called on the same input tensor (q/k/v, gate/up)
are captured together, in one forward pass per group instead of one per
layer, and a capture's forward pass stops (a private exception raised by the
hook of the last layer it waits for, caught around the model call) once every
captured module was called as often as in the recorded pass — the rest of the
model computes nothing the capture uses (``TorchCalibration.stop_early =
False`` runs every pass to the end). The hooks are removed whatever ends a
pass, and the modules' training flags are put back after a stopped one; other
state a model changes during its forward and resets at its end is not
restored (such a model wants ``stop_early = False``). The order, the groups, the call counts and what
reaches each layer are recorded on the first calibration batch: a model whose
module calls depend on the data must call the same modules, on the same
tensors, as often, for every batch.

Needs PyTorch (an optional dependency: ``pip install torch``).
"""
from __future__ import annotations

import copy
import weakref
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .._progress import progress as _progress
from .hessian import HessianAccumulator
from .model_source import CapturedLayer, ModelCalibration

__all__ = ["TorchCalibration", "from_torch"]


def _import() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch calibration needs torch: pip install torch (CPU wheels are enough)") from None
    return torch


class TorchCalibration(ModelCalibration):
    """A PyTorch module and calibration inputs (see :func:`from_torch`)."""

    def __init__(self, model: Any, inputs: Any, mode: str = "sequential", *, show: bool = False) -> None:
        torch = _import()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if mode == "sequential":
            model = copy.deepcopy(model)
        self.model = model.eval()
        self.show = show
        if inputs is None:
            self._batches = None
        else:
            self._batches = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            if not self._batches:
                raise ValueError("PyTorch calibration: no calibration batches given")
        self._modules = {}
        self._calls: dict[str, int] = {}  # (filled by _record_order)
        layers = []
        for name, module in self.model.named_modules():
            key = f"{name}.weight" if name else "weight"
            if isinstance(module, torch.nn.Linear):
                layers.append(CapturedLayer(key, key, name, "torch", module.in_features))
            elif isinstance(module, torch.nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros":
                kh, kw = module.kernel_size
                layers.append(CapturedLayer(key, key, name, "torch", module.in_channels * kh * kw, kind="conv2d"))
            else:
                continue
            self._modules[key] = module
        # Every float parameter and buffer by its state_dict name (tied weights: one tensor under several
        # names): what a commit may change, whatever module it belongs to.
        self._tensors = {k: v for k, v in self.model.state_dict(keep_vars=True).items() if v.is_floating_point()}
        self._original = {k: v.detach().cpu().numpy().copy() for k, v in self._tensors.items()}
        super().__init__(layers, mode)
        if self._batches is not None:
            self._record_order()

    def _feed(self, batch: Any) -> Any:
        """Runs the model on one batch, every captured layer's input checked first (a clear error naming
        the layer instead of torch's shape mismatch). NumPy float arrays run in the model's float dtype
        (float64 arrays into a float32 model, as the Keras and ONNX sources cast them)."""
        torch = _import()
        dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), None)

        def convert(a: Any) -> Any:
            if isinstance(a, torch.Tensor):
                return a
            array = np.asarray(a)
            tensor = torch.as_tensor(array)
            return tensor.to(dtype) if dtype is not None and array.dtype.kind == "f" else tensor

        handles = [module.register_forward_pre_hook(lambda m, args, key=key: _check_input(m, args, key))
                   for key, module in self._modules.items()]
        try:
            if isinstance(batch, Mapping):
                return self.model(**{k: convert(v) for k, v in batch.items()})
            if isinstance(batch, tuple):
                return self.model(*[convert(v) for v in batch])
            return self.model(convert(batch))
        finally:
            for handle in handles:
                handle.remove()

    def _record_order(self) -> None:
        """One forward pass: the order the layers run in, which layers read the same input, and each
        one's upstream set.

        torch has no graph to walk, so a layer's upstream is every float tensor (parameter or buffer) of
        the modules entered before its input tensor was first seen (passed to any module) — a parent
        module's own parameters count as entered before its children, conservatively — plus every tensor
        of a module the pass never entered (it may be read functionally anywhere), and their tied aliases.
        A committed bias, norm scale or any other tensor then invalidates exactly the layers it may reach.
        Layers called on the very same tensors (q/k/v of one attention block, gate/up of an MLP; the same
        object at the same in-place version, call for call) share an ``input`` key: a sequential capture
        takes them in one forward pass, and a commit of one of them does not reach the others (its
        module is entered after their input exists)."""
        torch = _import()
        calls: list[tuple[int, Optional[tuple[int, int]]]] = []  # (id(module), its input's identity) per call
        identities = _TensorIdentities()

        def seen(module: Any, args: Any) -> None:
            x = args[0] if args else None
            calls.append((id(module), identities.of(x) if isinstance(x, torch.Tensor) else None))

        handles = []
        try:
            for module in self.model.modules():
                try:
                    handles.append(module.register_forward_pre_hook(seen))
                except (RuntimeError, TypeError, AttributeError):
                    pass  # (a scripted submodule takes no hooks: its tensors count as reaching every layer)
            with torch.no_grad():
                self._feed(self._batches[0])
        finally:
            for handle in handles:
                handle.remove()
        first: dict[int, int] = {}
        inputs: dict[int, list[tuple[int, Optional[tuple[int, int]]]]] = {}  # id(module) -> (position, input)
        first_seen: dict[tuple[int, int], int] = {}  # input identity -> position of the first call given it
        for position, (key, identity) in enumerate(calls):
            first.setdefault(key, position)
            inputs.setdefault(key, []).append((position, identity))
            if identity is not None:
                first_seen.setdefault(identity, position)
        owners = dict(self.model.named_modules(remove_duplicate=False))
        aliases: dict[int, set[str]] = {}
        for name, tensor in self._tensors.items():
            aliases.setdefault(id(tensor), set()).add(name)
        entered_at = {name: first.get(id(owners.get(name.rpartition(".")[0])), -1) for name in self._tensors}
        called = [key for key in self._modules if id(self._modules[key]) in first]
        called.sort(key=lambda key: first[id(self._modules[key])])
        layers = [self.layers[k] for k in called] + [l for k, l in self.layers.items() if k not in set(called)]
        feeding: dict[tuple, str] = {}  # the inputs of every call -> the first layer called on them
        self._calls = {}  # layer -> how often the recorded pass called its module (what a capture waits for)
        for layer in layers:
            calls_of = inputs.get(id(self._modules[layer.name]))
            if calls_of is not None:
                self._calls[layer.name] = len(calls_of)
            end = None if calls_of is None else max(
                position if identity is None else first_seen[identity] for position, identity in calls_of)
            if calls_of is not None and all(identity is not None for _, identity in calls_of):
                layer.input = feeding.setdefault(tuple(identity for _, identity in calls_of), layer.input)
            reaching = {name for name, start in entered_at.items()
                        if end is None or start < 0 or start < end}
            layer.upstream = frozenset(alias for name in reaching for alias in aliases[id(self._tensors[name])])
        self.layers = {layer.name: layer for layer in layers}

    def weights(self) -> dict[str, np.ndarray]:
        """The module's original float ``state_dict`` as NumPy arrays."""
        return dict(self._original)

    #: (the shared check reads weights(): every float parameter and buffer)
    _commit_words = ("PyTorch calibration", "module", "floating-point parameter or buffer of that name (its "
                    "state_dict keys, as calibration.weights() gives them, are the names compress() must use)")

    def _apply_weight(self, name: str, weights: np.ndarray) -> None:
        """Writes a committed tensor (a layer weight, a corrected bias, a folded norm scale, ...) into the
        working copy of the module (``commit`` refused names the module does not hold)."""
        tensor = self._tensors[name]
        array = np.asarray(weights)
        torch = _import()
        with torch.no_grad():
            tensor.copy_(torch.tensor(array, dtype=tensor.dtype).reshape(tensor.shape))

    #: Whether a capture stops each forward pass once every captured layer has seen its inputs (the rest
    #: of the model computes nothing a capture uses); False runs every pass to the model's end.
    stop_early: bool = True

    def _capture(self, layers: Sequence[CapturedLayer]) -> dict[str, HessianAccumulator]:
        """One forward pass per batch, with a forward hook on every layer of ``layers`` accumulating its
        inputs; with :attr:`stop_early`, a pass ends (see :class:`_PassStop`) once each of those modules was
        called as often as in the recorded pass, else it runs to the end (a layer the recorded pass never
        called: nothing to wait for)."""
        torch = _import()
        if self._batches is None:
            raise ValueError("PyTorch calibration: no calibration inputs were given")
        out = {layer.name: HessianAccumulator(layer.features, name=layer.name, layout="torch") for layer in layers}
        expected = {layer.name: self._calls.get(layer.name) for layer in layers}
        stop = self.stop_early and all(count is not None for count in expected.values())
        waiting = _Waiting(expected)

        def hook(module: Any, args: Any, _output: Any, key: str) -> None:
            if waiting.stopped:
                return  # (the pass was told to stop and went on: a model catching every exception)
            x = args[0].detach()
            if isinstance(module, torch.nn.Conv2d):
                if isinstance(module.padding, str):
                    x = torch.nn.functional.pad(x, _same_padding(module, x.shape)) if module.padding == "same" else x
                    padding = 0
                else:
                    padding = module.padding
                x = torch.nn.functional.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding,
                                               stride=module.stride).transpose(1, 2)
            out[key].update(x.reshape(-1, x.shape[-1]).float().cpu().numpy())
            if waiting.seen(key) and stop:
                waiting.stopped = True
                raise _PassStop

        handles = [self._modules[layer.name].register_forward_hook(
            lambda m, a, o, key=layer.name: hook(m, a, o, key)) for layer in layers]
        modes = [(module, module.training) for module in self.model.modules()]
        try:
            with torch.no_grad():
                for batch in _progress(self._batches, total=len(self._batches), description="capture",
                                       enabled=self.show):
                    waiting.start()
                    try:
                        self._feed(batch)
                    except Exception:
                        if not waiting.stopped:
                            raise
                        # Every input was captured: whatever ended the pass after that (_PassStop, or an
                        # error a model made of it) concerns nothing the capture uses. A forward cut short
                        # may leave a mode its model sets and resets around a call: put the modes back.
                        for module, training in modes:
                            module.training = training  # (not train(): it would set the children too)
        finally:
            for handle in handles:
                handle.remove()
        return out


class _PassStop(Exception):
    """Raised by the capture hook that saw the last input a capture needs, to end the forward pass there;
    caught around the model call. An ``Exception`` (torch then runs its always-called hooks); a model that
    catches it and goes on runs to its end, its further layer calls ignored (every input was seen)."""


class _Waiting:
    """The module calls one forward pass of a capture still waits for: per layer, as many calls as the
    recorded pass made (a module called twice, weight sharing, feeds its layer twice), in any order."""

    def __init__(self, expected: Mapping[str, Optional[int]]) -> None:
        self._expected = dict(expected)
        self.start()

    def start(self) -> None:
        """A new pass: every call still to come."""
        self._left = dict(self._expected)
        self._missing = len(self._left)
        self.stopped = False  # (set by the hook that raised _PassStop)

    def seen(self, key: str) -> bool:
        """Counts a call of ``key``'s module; True once every layer had all its calls (the pass may stop)."""
        left = self._left[key]
        if left is not None:
            self._left[key] = left - 1
            if left == 1:
                self._missing -= 1
        return self._missing == 0


class _TensorIdentities:
    """Numbers the tensors seen during one forward pass by identity, without keeping them alive: a freed
    tensor's ``id()`` is reused, so each number keeps a weak reference to tell a new tensor from the old
    one; the in-place version counter tells the same tensor changed in place (``x.add_``) from unchanged."""

    def __init__(self) -> None:
        self._numbers: dict[int, tuple[Any, int]] = {}  # id(tensor) -> (weak reference, number)
        self._count = 0

    def of(self, tensor: Any) -> Optional[tuple[int, int]]:
        """(the tensor's number, its in-place version); None for a tensor without a version counter
        (an inference-mode tensor), which then groups with nothing."""
        try:
            version = tensor._version
        except RuntimeError:
            return None
        entry = self._numbers.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            self._count += 1
            entry = (weakref.ref(tensor), self._count)
            self._numbers[id(tensor)] = entry
        return entry[1], version


def _check_input(module: Any, args: Any, key: str) -> None:
    """A forward pre-hook: the input of a captured Linear / Conv2d must fit its weight."""
    torch = _import()
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor):
        return
    if isinstance(module, torch.nn.Linear):
        if x.ndim < 1 or x.shape[-1] != module.in_features:
            raise ValueError(f"PyTorch calibration: layer {key!r} (Linear, {module.in_features} input features) "
                             f"got inputs of shape {tuple(x.shape)}")
    elif x.ndim not in (3, 4) or x.shape[-3] != module.in_channels:
        raise ValueError(f"PyTorch calibration: layer {key!r} (Conv2d, {module.in_channels} input channels) got "
                         f"inputs of shape {tuple(x.shape)} (expected (N, {module.in_channels}, H, W))")


def _same_padding(module: Any, shape: Sequence[int]) -> list[int]:
    """torch's padding="same" (stride 1): total (k-1)·d per side pair, the extra on the right/bottom."""
    pads = []
    for k, d in zip(reversed(module.kernel_size), reversed(module.dilation)):
        total = (k - 1) * d
        pads += [total // 2, total - total // 2]
    return pads


def from_torch(model: Any, inputs: Any, *, mode: str = "sequential", progress: bool = False) -> TorchCalibration:
    """Calibration statistics captured from a PyTorch module by forward hooks.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : tensor/array, tuple, mapping, or a list of them
        Calibration batches: each is passed as ``model(batch)``,
        ``model(*batch)`` (tuple) or ``model(**batch)`` (mapping).
    mode : {"sequential", "independent"}
        As :func:`~swiftprune.calibration.from_onnx`; sequential mode works
        on a deep copy of ``model``.

    Returns
    -------
    TorchCalibration
        ``compress(calibration.weights(), recipe, calibration=it)``; load the
        result with ``model.load_state_dict({k: torch.from_numpy(v) ...})``.
    """
    return TorchCalibration(model, inputs, mode, show=progress)
