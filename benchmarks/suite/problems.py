"""The problems of the suite: one small interface, the Zeus traces behind it, and the constructed ones.

A problem is what a strategy is measured on: a search space in greentune's own config
types, an evaluation that returns what a trial would report (a noisy accuracy, or a
failure, and the kWh and seconds it spent), and the truth the measurement needs: each
configuration's *expected* (accuracy, log10 kWh) normalised to the unit square, the true
front's hypervolume, and the exhaustive grid's kWh that budgets are fractions of.

The Zeus problems wrap :mod:`benchmarks.zeus_traces` (its loader, hypervolume and grid);
the constructed ones live in :mod:`benchmarks.suite.constructed`.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import zeus_traces as zt
from tuner.search.base import SearchParam

hypervolume = zt.hypervolume  # one definition: (accuracy up, log kWh down) in the unit square, reference (0, 1)


@dataclass(frozen=True)
class Evaluation:
    """What one trial reports: ``accuracy`` is ``None`` when it failed; the kWh count either way."""

    accuracy: float | None
    kwh: float
    seconds: float


class Problem(abc.ABC):
    """A tuning problem with a known answer.

    ``fidelity`` names an epochs-like parameter (accuracy rises with it and the kWh grow in
    proportion), which multi-fidelity peers (MOASHA) use as their resource instead of searching it.
    """

    name: str
    space: dict[str, SearchParam]
    grid_space: dict[str, SearchParam]
    grid_resolution: int
    true_hv: float
    grid_kwh: float
    fidelity: str | None = None
    notes: dict[str, Any]

    @abc.abstractmethod
    def evaluate(self, params: dict[str, Any], rng: np.random.Generator) -> Evaluation:
        """One trial at ``params``: a noisy accuracy (or a failure) and what it spent."""

    @abc.abstractmethod
    def point(self, params: dict[str, Any]) -> tuple[float, float] | None:
        """Expected (accuracy, log10 kWh) in [0, 1]^2, or ``None`` if the configuration fails."""

    def hv_fraction(self, configs: list[dict[str, Any]]) -> float:
        """Share of the true front's hypervolume the configurations tried so far dominate.

        Expected values, not the observed noisy ones: noise cannot inflate the figure.
        """
        points = [p for p in map(self.point, configs) if p is not None]
        return hypervolume(points) / self.true_hv if points else 0.0

    def key(self, params: dict[str, Any]) -> tuple:
        """One notion of "the same configuration" (distinct counts)."""
        return tuple(params[n] for n in self.space)

    def describe(self) -> str:
        extra = ", ".join(f"{k} {v}" for k, v in self.notes.items())
        return f"{self.name}: {len(self.space)} parameters, grid {self.grid_kwh:.4g} kWh; {extra}"


class ZeusProblem(Problem):
    """One Zeus workload on one GPU, as :func:`benchmarks.zeus_traces.load_problem` builds it.

    A trial samples one of the trace's runs for its batch size, so accuracy is noisy as in
    the real traces; its seconds are epochs x ``time_per_epoch``. Nothing fails.
    """

    fidelity = "epochs"

    def __init__(self, trace: zt.TraceProblem) -> None:
        self.trace = trace
        self.name = f"zeus:{trace.name}"
        self.space = zt.greentune_space(trace, log_epochs=True)  # what every strategy but grid searches
        self.grid_space = zt.greentune_space(trace, log_epochs=False)
        self.grid_resolution = zt.GRID_EPOCH_LEVELS
        self.true_hv, self.grid_kwh = trace.true_hv, trace.grid_kwh
        self.notes = {"points": trace.extra["space_size"], "failing": "0 %"}

    def _config(self, params: dict[str, Any]) -> tuple[int, int, int]:
        return int(params["batch_size"]), int(params["power_limit"]), int(params["epochs"])

    def evaluate(self, params: dict[str, Any], rng: np.random.Generator) -> Evaluation:
        batch, power, epochs = self._config(params)
        curve = self.trace.curves[batch][rng.integers(len(self.trace.curves[batch]))]
        seconds = epochs * self.trace.extra["epoch_s"][(batch, power)]
        return Evaluation(float(curve[epochs]), self.trace.energy_kwh(batch, power, epochs), seconds)

    def point(self, params: dict[str, Any]) -> tuple[float, float]:
        return self.trace.normalised(*self._config(params))


def default_data_dir() -> Path:
    """``$GREENTUNE_DATA`` or ``../shared/data`` next to the repository, as zeus_traces.py looks."""
    import os

    return Path(os.environ.get("GREENTUNE_DATA") or zt.DEFAULT_DATA)


@dataclass
class Loaded:
    """The problems that could be built, and a reason for each that could not."""

    problems: list[Problem] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


ZEUS = tuple(f"zeus:{p}" for p in zt.ALL_PROBLEMS)


def load(names: list[str], data_dir: Path | None = None) -> Loaded:
    """Build the named problems (``zeus:<workload>/<gpu>``, ``zeus`` for all 24, or a constructed name).

    A Zeus problem without its data, or whose accuracy is flat (no run of its batch sizes
    reached a target, so hypervolume is undefined), is skipped with the reason.
    """
    from benchmarks.suite import constructed

    data = data_dir or default_data_dir()
    loaded = Loaded()
    expanded: list[str] = []
    for name in names:
        if name == "zeus":
            expanded += ZEUS
        elif name == "constructed":
            expanded += list(constructed.GENERATORS)
        else:
            expanded.append(name)
    for name in expanded:
        if name.startswith("zeus:"):
            if not (data / "zeus" / "summary_train.csv").is_file():
                loaded.skipped[name] = f"Zeus traces not found under {data / 'zeus'} (set GREENTUNE_DATA)"
                continue
            try:
                trace = zt.load_problem(data, name.removeprefix("zeus:"))
            except SystemExit as missing:  # the loader's own message: no traces for this pair
                loaded.skipped[name] = str(missing)
                continue
            if math.isnan(trace.true_hv):
                loaded.skipped[name] = "accuracy is flat (no run of its batch sizes reached a target): no hypervolume"
                continue
            loaded.problems.append(ZeusProblem(trace))
        elif name in constructed.GENERATORS:
            loaded.problems.append(constructed.make(name))
        else:
            known = ", ".join(["zeus", "constructed", *constructed.GENERATORS])
            raise SystemExit(f"unknown problem {name!r}: use zeus:<workload>/<gpu> or one of {known}")
    return loaded
