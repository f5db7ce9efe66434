"""Budgeted compression: pick each tensor's encoding to meet a size target.

:func:`plan` measures (or takes) the :func:`~swiftprune.sensitivity` of every
tensor to every candidate encoding, then solves the multiple-choice
knapsack (:mod:`swiftprune.knapsack`: Lagrangian relaxation, a dynamic
program on the budget, a greedy refinement) for the least total damage
within a byte budget — or the smallest size within a damage budget. The
result is a :class:`Plan` whose ``recipe`` names every tensor explicitly, so
``compress(weights, plan.recipe)`` runs it unchanged and writes what the
plan promised.

Sizes: the budget is the size of the compressed ``.safetensors`` file: the
stored bytes of every tensor (codec ``nbytes``, the one number the report
and the file share) plus the file's header. The header (layout, report, part
names) is first estimated, then measured: the plan's recipe is compressed and
written to a temporary file, and while that file is over the budget the
excess is charged to the header and the knapsack solved again.
(:func:`compressed_file_overhead` is the writer's header reserve, an upper
bound of that header.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from .candidates import exact_pattern
from .knapsack import pareto_front, solve
from ._callable_module import make_callable
from .sensitivity import Option, Sensitivity, _as_container, _named
from .sensitivity import sensitivity as measure_sensitivity

__all__ = ["plan", "Plan", "compressed_file_overhead"]


def compressed_file_overhead(ndims: Mapping[str, int]) -> int:
    """Bytes a compressed ``.safetensors`` file spends besides the stored
    tensors: the 8-byte length and the header room the writer
    (``CompressionResult.save`` / ``compress_file``) reserves for these tensors."""
    from .compressed_file import file_overhead

    return file_overhead(ndims)


@dataclass
class Plan:
    """A chosen encoding per tensor, with the front it was chosen from.

    Attributes
    ----------
    choice : dict of str to Option
        Per planned tensor, the chosen candidate (its stages, bytes, damage).
    recipe : list of dict
        Explicit stages, one ``include`` per tensor: ``compress(weights,
        plan.recipe)`` runs the plan.
    bytes : int
        The planned file size (tensors + header).
    damage : float
        The planned total damage (sum over tensors).
    front : list of (bytes, damage)
        The Pareto front of file size against total damage.
    sensitivity : Sensitivity
        What the choice was made from.
    budget : float or None
        The byte budget asked for (``None`` under a damage budget).
    score : float or None
        The measured ``evaluate`` score of the plan, when ``evaluate`` was
        given to :func:`plan`.
    uniform : dict of str to (int, float)
        Per uniform recipe (one candidate everywhere): its (bytes, damage).
    refinement : Refinement or None
        What ``refine=`` did (evaluations, the (bytes, score) history).
    calibration : Calibration or None
        The calibration source calibrated candidates (``gptq4``) need:
        ``compress(weights, plan.recipe, calibration=plan.calibration)``.
    """

    choice: dict[str, Option]
    recipe: list[dict[str, Any]]
    bytes: int
    damage: float
    front: list[tuple[int, float]]
    sensitivity: Sensitivity
    budget: Optional[float] = None
    overhead: int = 0
    score: Optional[float] = None
    uniform: dict[str, tuple[int, float]] = field(default_factory=dict)
    refinement: Any = None
    calibration: Any = field(default=None, repr=False, compare=False)

    @property
    def methods(self) -> dict[str, str]:
        """The chosen candidate per tensor (e.g. ``{"conv1.weight": "int8"}``)."""
        return {name: option.candidate for name, option in self.choice.items()}

    @property
    def ratio(self) -> float:
        """Original size over planned size."""
        return self.sensitivity.original_bytes / self.bytes if self.bytes else math.inf

    def summary(self) -> str:
        """The plan as a text table: per tensor the chosen candidate, its bytes
        and damage; then the totals against the budget."""
        width = max([len("unplanned tensors")] + [len(n) for n in self.choice])
        lines = [f"{'tensor':{width}s}  {'candidate':16s}  {'bytes':>12s}  {'damage':>10s}",
                 "-" * (width + 46)]
        for name, option in self.choice.items():
            lines.append(f"{name:{width}s}  {option.candidate:16s}  {option.bytes:12,d}  {option.damage:10.3g}")
        fixed = sum(self.sensitivity.fixed_bytes.values())
        lines.append("-" * (width + 46))
        lines.append(f"{'unplanned tensors':{width}s}  {'as is':16s}  {fixed:12,d}")
        lines.append(f"{'file header':{width}s}  {'':16s}  {self.overhead:12,d}")
        budget = "" if self.budget is None else f" (budget {int(self.budget):,d} B)"
        if self.refinement is not None:
            steps = " -> ".join(f"{s:.4g}" for _, s in self.refinement.history)
            lines.append(f"joint refinement: score {steps} ({self.refinement.evaluations} plans evaluated)")
        lines.append(f"planned file {self.bytes:,d} B{budget}, {self.ratio:.2f}x smaller than "
                     f"{self.sensitivity.original_bytes:,d} B; total damage {self.damage:.4g} "
                     f"({self.sensitivity.measure})" + ("" if self.score is None else f"; score {self.score:.4g}"))
        return "\n".join(lines)

    def plot(self, ax: Any = None, *, uniform: bool = True) -> Any:
        """The Pareto front (bytes against damage) with the chosen point and,
        when ``uniform``, every uniform recipe's point; returns the axes
        (needs matplotlib)."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("Plan.plot needs matplotlib: pip install \"swiftprune[plot]\"") from None
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        xs = [b for b, _ in self.front]
        ys = [d for _, d in self.front]
        ax.step(xs, ys, where="post", marker=".", label="planner front")
        if uniform and self.uniform:
            for name, (size, damage) in self.uniform.items():
                ax.scatter([size], [damage], marker="x", color="gray")
                ax.annotate(name, (size, damage), fontsize=7, color="gray")
        ax.scatter([self.bytes], [self.damage], color="tab:red", zorder=3, label="chosen")
        if self.budget is not None:
            ax.axvline(self.budget, color="tab:red", linestyle=":", label="budget")
        ax.set_xlabel("file bytes")
        ax.set_ylabel(f"total damage ({self.sensitivity.measure})")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.legend()
        return ax


def _recipe(choice: Mapping[str, Option]) -> list[dict[str, Any]]:
    recipe = []
    for name, option in choice.items():
        for stage in option.stages:
            recipe.append(dict(stage, include=exact_pattern(name), min_rank=0))
    return recipe


def plan(weights: Any, *, target_bytes: Optional[float] = None, target_ratio: Optional[float] = None,
         max_damage: Optional[float] = None, candidates: Optional[Iterable[Any]] = None,
         sensitivity: Optional[Sensitivity] = None, measure: Optional[str] = None,
         calibration: Optional[Mapping[str, Any]] = None, evaluate: Optional[Callable[[Any], float]] = None,
         layout: str = "keras", min_rank: int = 2, resolution: int = 4096, refine: int = 0,
         progress: bool = True) -> Plan:
    """Chooses an encoding per tensor to meet a size (or damage) target.

    Parameters
    ----------
    weights : mapping of str to array_like, or list of array_like
        The model (never modified).
    target_bytes : float, optional
        The compressed file may take at most this many bytes.
    target_ratio : float, optional
        The file must be at least this many times smaller than the float
        weights (``target_bytes = original bytes / target_ratio``).
    max_damage : float, optional
        Instead of a size: the smallest file whose total damage stays within
        this. Give exactly one of the three.
    candidates : iterable of str or Candidate, optional
        Encodings to choose from (see :mod:`swiftprune.candidates`).
    sensitivity : Sensitivity, optional
        A measurement to reuse (then ``candidates``, ``measure``,
        ``calibration`` and ``layout`` are not used for measuring).
    measure, calibration, evaluate, layout, min_rank, progress
        As :func:`~swiftprune.sensitivity`. With ``evaluate`` the plan is
        also *checked*: the solver's choice and every uniform recipe that fits
        the budget are scored on the whole model, and the best-scoring one
        is returned (so the plan never scores below a uniform recipe of its
        size or smaller). A :class:`~swiftprune.calibration.Calibration` as
        ``calibration`` (or the one the ``sensitivity`` was measured with)
        also runs the calibrated candidates (``gptq4``): the plan's file is
        compressed with it (a sequential source: each layer through the
        already compressed ones).
    resolution : int, default 4096
        Budget units of the dynamic program.
    refine : int, default 0
        Rounds of *joint* refinement (needs ``evaluate`` and a byte target),
        for models whose per-tensor damages do not add up. Starting from the
        best-scoring of the solver's choice and the uniform recipes, the
        sensitivity of each tensor's neighbouring candidates is measured
        again with the current plan applied to every other tensor, and swaps of best measured
        gain per byte are kept while the whole-model score rises (see
        :mod:`swiftprune.refine`; about two ``evaluate`` calls per planned
        tensor per round, cached, with a progress bar).

    Returns
    -------
    Plan

    Raises
    ------
    ValueError
        Not exactly one target, a target that no choice meets (the message
        gives the smallest reachable size), or the errors of
        :func:`~swiftprune.sensitivity`.
    """
    given = [k for k, v in (("target_bytes", target_bytes), ("target_ratio", target_ratio),
                            ("max_damage", max_damage)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of target_bytes, target_ratio, max_damage; got {', '.join(given) or 'none'}")
    for key in given:
        value = {"target_bytes": target_bytes, "target_ratio": target_ratio, "max_damage": max_damage}[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or \
                not math.isfinite(value) or value < 0 or (key != "max_damage" and value <= 0):
            raise ValueError(f"{key} must be a positive finite number, got {value!r}")
    if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
        raise ValueError(f"refine must be a number of rounds >= 0, got {refine!r}")
    if refine and (evaluate is None or max_damage is not None):
        raise ValueError("refine needs evaluate= (the whole-model score) and a byte target (target_bytes or "
                         "target_ratio)")
    container, arrays = _named(weights)
    if sensitivity is None:
        sensitivity = measure_sensitivity(weights, candidates, measure=measure, calibration=calibration,
                                          evaluate=evaluate, layout=layout, min_rank=min_rank, progress=progress)
    elif not isinstance(sensitivity, Sensitivity):
        raise TypeError(f"sensitivity must be a Sensitivity (from swiftprune.sensitivity), got {type(sensitivity).__name__}")
    missing = [n for n in sensitivity.options if n not in arrays]
    if missing:
        raise ValueError(f"the sensitivity was measured on another model (no tensor {missing[0]!r} here)")
    from .sensitivity import _calibration_source

    source = sensitivity.calibration if sensitivity.calibration is not None else _calibration_source(calibration)
    names = [n for n, opts in sensitivity.options.items() if opts]
    options = [sensitivity.options[n] for n in names]
    costs = [[o.bytes for o in opts] for opts in options]
    damages = [[o.damage for o in opts] for opts in options]
    overhead = _header_estimate(arrays, names)
    fixed = sum(int(arrays[n].nbytes) for n in arrays if n not in names)
    base = fixed + overhead
    original = sensitivity.original_bytes

    uniform = _uniform_choices(options)
    if max_damage is not None:
        choice = _smallest_within(costs, damages, float(max_damage), resolution)
        budget = None
    else:
        budget = float(target_bytes) if target_bytes is not None else original / float(target_ratio)
        choice = solve(costs, damages, budget - base, resolution, extra=list(uniform.values()))
        if choice is None:
            smallest = base + sum(min(c) for c in costs)
            raise ValueError(f"no choice of the candidates meets {int(budget):,d} bytes; the smallest plan takes "
                             f"{smallest:,d} bytes ({original / smallest:.2f}x); add smaller candidates "
                             "(e.g. int3, pal4, lowrank0.25)")
    score = None
    refinement = None
    chosen = {name: opts[j] for name, opts, j in zip(names, options, choice)}
    total_bytes = base + sum(o.bytes for o in chosen.values())
    if budget is not None:
        # The header of the written file (layout, report, part names) is only estimated above: write
        # the plan and measure it; while it is over the budget, charge the excess to the header and
        # solve again, so the plan meets the budget as the file on disk measures it.
        for attempt in range(8):
            written = _written_bytes(container, arrays, _recipe(chosen), source)
            if written <= budget:
                break
            # (a margin: the new choice's header differs a little, up to ~300 bytes on PP-OCRv4; it
            # doubles per attempt, so tiny models keep a tight fit and big ones converge)
            overhead += written - int(total_bytes) + (32 << attempt)
            base = fixed + overhead
            choice = solve(costs, damages, budget - base, resolution, extra=list(uniform.values()))
            if choice is None:
                raise ValueError(f"no choice of the candidates meets {int(budget):,d} bytes once the file's "
                                 f"{overhead:,d} bytes of header are counted; add smaller candidates")
            chosen = {name: opts[j] for name, opts, j in zip(names, options, choice)}
            total_bytes = base + sum(o.bytes for o in chosen.values())
        else:
            raise ValueError(f"could not fit the plan's file into {int(budget):,d} bytes")
        if evaluate is not None:
            scores: dict[Any, Any] = {}
            # Score the solver's choice against every uniform recipe whose written file fits too.
            choice, score, written = _checked(choice, written, uniform, budget, names, options, evaluate, container,
                                              arrays, source, scores)
            if refine:  # then improve the best of them, measuring on the whole model
                choice, written, refinement = _refined(choice, written, int(refine), budget, names, options, costs,
                                                       damages, evaluate, container, arrays, source, scores,
                                                       progress)
                score = refinement.score
            chosen = {name: opts[j] for name, opts, j in zip(names, options, choice)}
        overhead += written - int(base + sum(o.bytes for o in chosen.values()))
        base = fixed + overhead
        total_bytes = written
    total_damage = float(sum(o.damage for o in chosen.values()))
    front = [(int(base + c), float(d)) for c, d, _ in pareto_front(costs, damages, resolution=min(resolution, 2048))]
    uniform_points = {label: (int(base + sum(costs[g][j] for g, j in enumerate(ch))),
                              float(sum(damages[g][j] for g, j in enumerate(ch))))
                      for label, ch in uniform.items()}
    return Plan(chosen, _recipe(chosen), int(total_bytes), total_damage, front, sensitivity, budget, overhead,
                score, uniform_points, refinement, source)


def _header_estimate(arrays: Mapping[str, np.ndarray], planned: Sequence[str]) -> int:
    """A first, low estimate of a compressed file's header (format 2, measured on PP-OCRv4: 77
    bytes per tensor plus its name 3 times, and 180 more for a float16 tensor, 455-480 for a
    quantized one); plan() measures the written file and charges what is missing (an estimate
    too high would leave bytes unspent)."""
    return 128 + sum(75 + 3 * len(name) for name in arrays) + 180 * len(planned)


def _written_bytes(container: str, arrays: Mapping[str, np.ndarray], recipe: list, calibration: Any = None) -> int:
    """The size of the compressed file the recipe writes (compressed and saved to a temporary folder)."""
    import os
    import tempfile
    import warnings

    from .model import compress

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # on_unfit notes were already part of the candidates' costs
        path = os.path.join(folder, "plan.safetensors")
        weights = list(arrays.values()) if container == "sequence" else dict(arrays)
        return int(compress(weights, recipe, progress=False, calibration=calibration).save(path)) if recipe else \
            int(sum(a.nbytes for a in arrays.values()))


def _uniform_choices(options: Sequence[Sequence[Option]]) -> dict[str, list[int]]:
    """Per candidate name, the choice that gives every tensor that candidate
    (tensors it does not apply to keep float32, their "keep" option)."""
    names: list[str] = []
    for opts in options:
        for o in opts:
            if o.candidate not in names:
                names.append(o.candidate)
    out = {}
    for label in names:
        choice = []
        for opts in options:
            index = next((j for j, o in enumerate(opts) if o.candidate == label), None)
            if index is None:
                index = next((j for j, o in enumerate(opts) if not o.stages), 0)
            choice.append(index)
        out[label] = choice
    return out


def _smallest_within(costs: Sequence[Sequence[float]], damages: Sequence[Sequence[float]], limit: float,
                     resolution: int) -> list[int]:
    """The cheapest choice whose total damage is at most ``limit`` (bisection
    on the byte budget; the least-damage choice when none is cheaper)."""
    low = float(sum(min(c) for c in costs))
    high = float(sum(max(c) for c in costs))
    best = solve(costs, damages, high, resolution)
    for _ in range(40):
        if high - low <= 1.0:
            break
        middle = 0.5 * (low + high)
        choice = solve(costs, damages, middle, resolution)
        if choice is not None and sum(damages[g][j] for g, j in enumerate(choice)) <= limit:
            best, high = choice, middle
        else:
            low = middle
    return best


def _scored(choice: Sequence[int], names: Sequence[str], options: Sequence[Sequence[Option]],
            evaluate: Callable[[Any], float], container: str, arrays: Mapping[str, np.ndarray], calibration: Any,
            scores: dict[Any, Any]) -> float:
    """``evaluate`` of the model compressed by ``choice`` (cached in ``scores``). Unless a
    sequential calibration source makes a tensor's result depend on the tensors before it,
    each (tensor, option) is compressed once and plans are assembled from those results
    (plans that differ in one tensor, as refinement's trials do, cost one evaluation each)."""
    from .model import compress
    from .sensitivity import _score

    key = tuple(int(j) for j in choice)
    if key not in scores:
        if calibration is not None and getattr(calibration, "mode", "independent") == "sequential":
            recipe = _recipe({name: opts[j] for name, opts, j in zip(names, options, key)})
            weights = _as_container(container, arrays)
            if recipe:
                weights = compress(weights, recipe, progress=False, calibration=calibration).weights
        else:
            dense = scores.setdefault("\0dense", {})
            trial = dict(arrays)
            for name, opts, j in zip(names, options, key):
                if opts[j].stages:
                    if (name, j) not in dense:
                        one = [dict(stage, include=exact_pattern(name), min_rank=0) for stage in opts[j].stages]
                        dense[name, j] = compress({name: arrays[name]}, one, progress=False,
                                                  calibration=calibration).weights[name]
                    trial[name] = dense[name, j]
            weights = _as_container(container, trial)
        scores[key] = _score(evaluate, weights, "a planned model")
    return scores[key]


def _refined(choice: list[int], written: int, rounds: int, budget: float, names: Sequence[str],
             options: Sequence[Sequence[Option]], costs: Sequence[Sequence[int]], damages: Sequence[Sequence[float]],
             evaluate: Callable[[Any], float], container: str, arrays: Mapping[str, np.ndarray], calibration: Any,
             scores: dict[Any, Any], progress: bool) -> tuple[list[int], int, Any]:
    """The solver's choice improved by :func:`swiftprune.refine.refine_jointly`."""
    from .refine import refine_jointly

    def score(c: tuple) -> float:
        return _scored(c, names, options, evaluate, container, arrays, calibration, scores)

    def size(c: tuple) -> int:
        return _written_bytes(container, arrays, _recipe({n: o[j] for n, o, j in zip(names, options, c)}),
                              calibration)

    result = refine_jointly(choice, costs, damages, score=score, written=size, budget=budget, rounds=rounds,
                            progress=progress, start_bytes=written)
    return list(result.choice), result.bytes, result


def _checked(choice: list[int], written: int, uniform: Mapping[str, list[int]], budget: float,
             names: Sequence[str], options: Sequence[Sequence[Option]], evaluate: Callable[[Any], float],
             container: str, arrays: Mapping[str, np.ndarray], calibration: Any = None,
             scores: Optional[dict[tuple, float]] = None) -> tuple[list[int], float, int]:
    """Scores the solver's choice (whose file takes `written` bytes) and every uniform choice
    whose written file fits the budget; the best wins (ties to the solver's). Returns the
    choice, its score and its file size."""
    scores = {} if scores is None else scores
    contenders = [(choice, written)]
    for candidate in uniform.values():
        if candidate != choice:
            chosen = {name: opts[j] for name, opts, j in zip(names, options, candidate)}
            size = _written_bytes(container, arrays, _recipe(chosen), calibration)
            if size <= budget:
                contenders.append((candidate, size))
    best, best_score, best_size = choice, -math.inf, written
    for candidate, size in contenders:
        score = _scored(candidate, names, options, evaluate, container, arrays, calibration, scores)
        if score > best_score:
            best, best_score, best_size = candidate, score, size
    return best, best_score, best_size


make_callable(__name__, plan)  # ``swiftprune.plan(...)`` is this function; ``swiftprune.plan.Plan`` the class
