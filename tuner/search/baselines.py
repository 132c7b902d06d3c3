"""Grid and random search: the baselines greentune is measured against."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from tuner.config import Choice, FloatRange, IntRange
from tuner.search.base import GreentuneSearcher, Outcome, SearchParam


def grid_levels(param: SearchParam, resolution: int) -> list[Any]:
    """Evenly spaced values of one parameter (log-spaced on a log scale)."""
    if isinstance(param, Choice):
        return list(param.values)
    space = np.geomspace if param.log else np.linspace
    points = space(param.low, param.high, resolution)
    if isinstance(param, IntRange):
        return sorted({int(round(p)) for p in points})
    return [float(p) for p in points]


class GridSearcher(GreentuneSearcher):
    """Every combination of the grid levels, in a seeded random order.

    Random order means a budget that runs out part-way leaves an unbiased sample of
    the grid, instead of only the low end of the first parameter. The grid is never
    materialised: only its levels and a shuffled array of point numbers (4 bytes a point)
    are held, and a point is decoded from its number when asked for. A list of every
    point as a dict took 4.2 GB for 4.8 M points; the config refuses more than
    ``MAX_GRID_POINTS`` (see ``tuner.config``).
    """

    def __init__(self, *args: Any, resolution: int = 3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._names = list(self.space)
        self._levels = [grid_levels(self.space[n], resolution) for n in self._names]
        total = math.prod(len(levels) for levels in self._levels)
        # the same order as ``rng.permutation(total)``, in a quarter of the memory
        self._order = np.arange(total, dtype=np.uint32 if total < 2**32 else np.uint64)
        np.random.default_rng(self.seed).shuffle(self._order)
        self._finished: set[tuple[Any, ...]] = set()  # points an earlier driver ran (resume)
        self._next = 0

    @property
    def size(self) -> int:
        """Points left to run: the whole grid, less those an earlier driver finished."""
        return len(self._order) - len(self._finished)

    def point(self, number: int) -> dict[str, Any]:
        """Grid point ``number`` in ``itertools.product`` order (the last parameter varies fastest)."""
        values: list[Any] = []
        for levels in reversed(self._levels):
            number, index = divmod(number, len(levels))
            values.append(levels[index])
        return _plain(dict(zip(self._names, reversed(values), strict=True)))

    def ask(self) -> dict[str, Any] | str | None:
        while self._next < len(self._order):
            point = self.point(int(self._order[self._next]))
            self._next += 1
            if tuple(point.values()) not in self._finished:
                return point
        return Searcher.FINISHED

    def tell(self, params: dict[str, Any], outcome: Outcome) -> None:
        pass  # a grid does not learn

    def resume(self, history: Sequence[tuple[dict[str, Any], Outcome]], state: Path | None = None) -> None:
        """The same order as before, without the points that finished; interrupted ones run again."""
        self._finished = {tuple(p.get(n) for n in self._names) for p, o in history if o.status != "stopped"}
        self._next = 0


class RandomSearcher(GreentuneSearcher):
    """Independent uniform samples (log-uniform on log-scale ranges)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rng = np.random.default_rng(self.seed)

    def ask(self) -> dict[str, Any]:
        return {name: sample(param, self._rng) for name, param in self.space.items()}

    def tell(self, params: dict[str, Any], outcome: Outcome) -> None:
        pass

    def resume(self, history: Sequence[tuple[dict[str, Any], Outcome]], state: Path | None = None) -> None:
        """Skip the draws earlier drivers used, so the sequence goes on as if never interrupted."""
        for _ in history:
            self.ask()


def sample(param: SearchParam, rng: np.random.Generator) -> Any:
    """One uniform draw from a parameter's domain."""
    if isinstance(param, Choice):
        return param.values[int(rng.integers(len(param.values)))]
    if isinstance(param, FloatRange):
        if param.log:
            return float(math.exp(rng.uniform(math.log(param.low), math.log(param.high))))
        return float(rng.uniform(param.low, param.high))
    if param.log:
        value = math.exp(rng.uniform(math.log(param.low), math.log(param.high + 1)))
        return int(min(param.high, max(param.low, math.floor(value))))
    return int(rng.integers(param.low, param.high + 1))


def _plain(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in point.items()}
