"""Pruning schedules and gradual pruning, as in TensorFlow Model Optimization.

A schedule says, for a training step, whether to update the masks
(:meth:`should_prune`) and at which sparsity (:meth:`sparsity_at`).
:class:`GradualPruner` keeps masks across steps and applies a schedule to
the weights you pass it, so pruning can follow fine-tuning in any framework.
"""
from __future__ import annotations

import numbers
import warnings
from typing import Any, Dict, List, Mapping, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .pruning import global_magnitude_masks, magnitude_mask

__all__ = ["PruningSchedule", "ConstantSparsity", "PolynomialDecay", "GradualPruner"]


def _sparsity(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def _integer(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_steps(begin_step: Any, end_step: Any, frequency: Any, allow_endless: bool) -> tuple[int, int, int]:
    begin_step = _integer("begin_step", begin_step)
    end_step = _integer("end_step", end_step)
    frequency = _integer("frequency", frequency)
    if begin_step < 0:
        raise ValueError(f"begin_step must be >= 0, got {begin_step}")
    if end_step == -1 and not allow_endless:
        raise ValueError("end_step must be given (>= begin_step); -1 (prune forever) is not allowed here")
    if end_step != -1:
        if end_step < 0:
            raise ValueError(f"end_step must be -1 or >= 0, got {end_step}")
        if end_step < begin_step:
            raise ValueError(f"end_step ({end_step}) must be >= begin_step ({begin_step})")
    if frequency <= 0:
        raise ValueError(f"frequency must be > 0, got {frequency}")
    return begin_step, end_step, frequency


class PruningSchedule:
    """Base class: when to update masks and to which sparsity.

    Subclasses set ``begin_step``, ``end_step`` (-1: never ends) and
    ``frequency`` and implement :meth:`sparsity_at`.
    """

    begin_step: int
    end_step: int
    frequency: int

    def should_prune(self, step: int) -> bool:
        """True when ``begin_step <= step <= end_step`` (or no end) and
        ``(step - begin_step) % frequency == 0``."""
        step = _integer("step", step)
        in_range = step >= self.begin_step and (self.end_step < 0 or step <= self.end_step)
        return in_range and (step - self.begin_step) % self.frequency == 0

    def sparsity_at(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PruningSchedule":
        """The schedule described by ``config`` (as returned by ``get_config``)."""
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class ConstantSparsity(PruningSchedule):
    """The same target sparsity at every pruning step (TFMOT ``ConstantSparsity``).

    Parameters
    ----------
    sparsity : float in [0, 1]
        The target sparsity.
    begin_step : int >= 0
        First step at which masks are updated.
    end_step : int
        Last step at which masks may be updated; -1 means never stop.
    frequency : int > 0
        Masks are updated every ``frequency`` steps from ``begin_step``.
    """

    def __init__(self, sparsity: float, begin_step: int = 0, end_step: int = -1, frequency: int = 100) -> None:
        self.sparsity = _sparsity("sparsity", sparsity)
        self.begin_step, self.end_step, self.frequency = _check_steps(begin_step, end_step, frequency, True)

    def sparsity_at(self, step: int) -> float:
        """The target sparsity (independent of ``step``)."""
        _integer("step", step)
        return self.sparsity

    def get_config(self) -> Dict[str, Any]:
        return {"sparsity": self.sparsity, "begin_step": self.begin_step, "end_step": self.end_step,
                "frequency": self.frequency}


class PolynomialDecay(PruningSchedule):
    """Sparsity rising from ``initial_sparsity`` to ``final_sparsity`` (TFMOT ``PolynomialDecay``).

    ``sparsity_at(step) = final + (initial - final) * (1 - p) ** power`` with
    ``p = clip((step - begin_step) / (end_step - begin_step), 0, 1)``: fast
    at first, slowing down as the network has fewer weights left to lose
    (Zhu and Gupta, 2017). With ``end_step == begin_step``, ``p`` is 1 from
    ``begin_step`` on.

    Parameters
    ----------
    initial_sparsity, final_sparsity : float in [0, 1]
    begin_step : int >= 0
    end_step : int >= begin_step
        Required (no -1): the decay needs an end.
    power : float
        Exponent of the decay (3 in the paper).
    frequency : int > 0
    """

    def __init__(self, initial_sparsity: float, final_sparsity: float, begin_step: int, end_step: int,
                 power: float = 3, frequency: int = 100) -> None:
        self.initial_sparsity = _sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _sparsity("final_sparsity", final_sparsity)
        self.begin_step, self.end_step, self.frequency = _check_steps(begin_step, end_step, frequency, False)
        if isinstance(power, (bool, np.bool_)) or not isinstance(power, numbers.Real):
            raise TypeError(f"power must be a real number, got {power!r}")
        if not np.isfinite(float(power)):
            raise ValueError(f"power must be finite, got {power!r}")
        self.power = float(power)

    def sparsity_at(self, step: int) -> float:
        """The sparsity the schedule asks for at ``step``."""
        step = _integer("step", step)
        span = self.end_step - self.begin_step
        if span == 0:
            p = 1.0 if step >= self.begin_step else 0.0
        else:
            p = min(1.0, max(0.0, (step - self.begin_step) / span))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - p) ** self.power

    def get_config(self) -> Dict[str, Any]:
        return {"initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity,
                "begin_step": self.begin_step, "end_step": self.end_step, "power": self.power,
                "frequency": self.frequency}


Weights = Union[Mapping[Any, ArrayLike], Sequence[ArrayLike]]


class GradualPruner:
    """Masks that follow a schedule across training steps and only ever grow.

    Call :meth:`step` once per training step with the current weights; when
    the schedule says so, the masks are recomputed at ``sparsity_at(step)``
    from the weights' magnitudes *among the entries still kept*: an entry
    pruned once stays pruned, and when the schedule asks for less sparsity
    than already reached, the masks are left as they are. Apply the masks
    yourself after each optimizer step (``w *= mask``).

    Parameters
    ----------
    weights : mapping of name to array, or sequence of arrays
        The tensors to prune (their shapes fix the masks'); the container
        kind is kept in :attr:`masks`.
    schedule : PruningSchedule
        :class:`ConstantSparsity`, :class:`PolynomialDecay` or your own.
    method : {"magnitude", "global_magnitude"}
        Per-tensor magnitude pruning (each tensor at the target sparsity) or
        one threshold over all tensors together.

    Attributes
    ----------
    masks : dict or list of numpy.ndarray of bool
        The current keep-masks (all True at first).
    last_update_step : int or None
        The last step at which the masks were updated.
    last_step : int or None
        The last step given to :meth:`step`.

    Notes
    -----
    Call :meth:`finish` when training ends: it warns when the schedule's
    final sparsity was not reached (training stopped before ``end_step``, or
    the schedule's ``frequency`` never lands on ``end_step``).
    """

    METHODS = ("magnitude", "global_magnitude")

    def __init__(self, weights: Weights, schedule: PruningSchedule, method: str = "magnitude") -> None:
        if not isinstance(schedule, PruningSchedule):
            raise TypeError(f"schedule must be a PruningSchedule (ConstantSparsity, PolynomialDecay), "
                            f"got {type(schedule).__name__}")
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}")
        self.schedule = schedule
        self.method = method
        self._keys, arrays = self._unpack(weights)
        self._shapes = [a.shape for a in arrays]
        self._masks = [np.ones(a.shape, dtype=bool) for a in arrays]
        self.last_update_step: Union[int, None] = None
        self.last_step: Union[int, None] = None

    @staticmethod
    def _unpack(weights: Weights) -> tuple[Union[List[Any], None], List[np.ndarray]]:
        if isinstance(weights, Mapping):
            keys = list(weights.keys())
            return keys, [np.asarray(weights[k]) for k in keys]
        if isinstance(weights, (str, bytes, np.ndarray)) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a mapping or a sequence of arrays, got {type(weights).__name__}")
        return None, [np.asarray(w) for w in weights]

    def _pack(self, masks: List[NDArray[np.bool_]]) -> Union[Dict[Any, NDArray[np.bool_]], List[NDArray[np.bool_]]]:
        if self._keys is not None:
            return dict(zip(self._keys, masks))
        return list(masks)

    @property
    def masks(self) -> Union[Dict[Any, NDArray[np.bool_]], List[NDArray[np.bool_]]]:
        return self._pack([m.copy() for m in self._masks])

    def step(self, step: int, weights: Weights) -> Union[Dict[Any, NDArray[np.bool_]], List[NDArray[np.bool_]]]:
        """Updates the masks if the schedule prunes at ``step``; returns the masks.

        Parameters
        ----------
        step : int
            The training step.
        weights : mapping or sequence of arrays
            The current weights, same names/order and shapes as at construction.

        Returns
        -------
        dict or list of numpy.ndarray of bool
            The masks after this step (copies).
        """
        keys, arrays = self._unpack(weights)
        if keys != self._keys:
            raise ValueError(f"weights must have the same names as at construction: {self._keys}, got {keys}")
        if len(arrays) != len(self._shapes):
            raise ValueError(f"expected {len(self._shapes)} weight tensors, got {len(arrays)}")
        for index, (array, shape) in enumerate(zip(arrays, self._shapes)):
            if array.shape != shape:
                name = keys[index] if keys is not None else index
                raise ValueError(f"weights[{name!r}] has shape {array.shape}, expected {shape}")
        self.last_step = int(step)
        if self.schedule.should_prune(step):
            target = self.schedule.sparsity_at(step)
            if self.method == "magnitude":
                self._masks = [self._grow(mask, array, target) for mask, array in zip(self._masks, arrays)]
            else:
                self._masks = self._grow_global(arrays, target)
            self.last_update_step = int(step)
        return self.masks

    def final_sparsity(self) -> float:
        """The sparsity the schedule asks for once it has ended.

        ``sparsity_at(end_step)``, or ``sparsity_at(begin_step)`` for a
        schedule that never ends (``end_step == -1``).
        """
        end = self.schedule.end_step
        return float(self.schedule.sparsity_at(end if end >= 0 else self.schedule.begin_step))

    def sparsity(self) -> float:
        """The fraction of all entries (over every tensor) the masks prune now."""
        total = sum(m.size for m in self._masks)
        return 0.0 if total == 0 else sum(m.size - int(m.sum()) for m in self._masks) / total

    def finish(self, step: Union[int, None] = None) -> bool:
        """Checks, at the end of training, that the final sparsity was reached.

        Warns (``UserWarning``) when it was not: the message gives the
        sparsity reached, the step training stopped at and why the schedule
        fell short. Per-tensor masks (``method="magnitude"``) must each reach
        ``round(final * size)`` pruned entries; global masks together.

        Parameters
        ----------
        step : int, optional
            The last training step; default :attr:`last_step`.

        Returns
        -------
        bool
            True when the final sparsity was reached.
        """
        message = self._shortfall(self.last_step if step is None else _integer("step", step))
        if message is None:
            return True
        warnings.warn(f"GradualPruner: {message}", UserWarning, stacklevel=2)
        return False

    def _shortfall(self, step: Union[int, None]) -> Union[str, None]:
        """Why the final sparsity was not reached by ``step``; None when it was."""
        final = self.final_sparsity()
        pruned = [m.size - int(m.sum()) for m in self._masks]
        if self.method == "magnitude":
            reached = all(p >= round(final * m.size) for p, m in zip(pruned, self._masks))
        else:
            reached = sum(pruned) >= round(final * sum(m.size for m in self._masks))
        if reached:
            return None
        schedule = self.schedule
        where = "before any step" if step is None else f"at step {step}"
        updated = ("the masks were never updated" if self.last_update_step is None
                   else f"masks last updated at step {self.last_update_step}")
        if step is not None and schedule.end_step >= 0 and step >= schedule.end_step:
            why = (f"the schedule prunes every {schedule.frequency} steps from step {schedule.begin_step}, "
                   f"which never lands on its end_step {schedule.end_step}: make end_step - begin_step "
                   "a multiple of frequency")
        else:
            end = f"end_step {schedule.end_step}" if schedule.end_step >= 0 else f"begin_step {schedule.begin_step}"
            why = f"training ended before the schedule's {end}: train longer or end the schedule earlier"
        return (f"final sparsity {final:.1%} not reached: training stopped {where} with "
                f"sparsity {self.sparsity():.1%} ({updated}); {why}")

    @staticmethod
    def _extra(pruned: int, kept: int, total: int, target: float) -> int:
        """How many more of the `kept` entries to prune to reach `target` of `total`."""
        return max(0, min(kept, round(target * total) - pruned))

    def _grow(self, mask: np.ndarray, array: np.ndarray, target: float) -> np.ndarray:
        kept = int(mask.sum())
        extra = self._extra(mask.size - kept, kept, mask.size, target)
        survivors = array[mask]
        # extra / kept * kept rounds back to exactly `extra`; sparsity 0 still rejects NaN/Inf.
        sub = magnitude_mask(survivors, extra / kept if kept else 0.0)
        if extra == 0:
            return mask
        new = mask.copy()
        new[mask] = sub
        return new

    def _grow_global(self, arrays: List[np.ndarray], target: float) -> List[np.ndarray]:
        total = sum(m.size for m in self._masks)
        kept = sum(int(m.sum()) for m in self._masks)
        extra = self._extra(total - kept, kept, total, target)
        subs = global_magnitude_masks([a[m] for a, m in zip(arrays, self._masks)], extra / kept if kept else 0.0)
        if extra == 0:
            return self._masks
        out = []
        for mask, sub in zip(self._masks, subs):
            new = mask.copy()
            new[mask] = sub
            out.append(new)
        return out
