"""Grid and random search: the baselines greentune is measured against."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from tuner.config import Choice, FloatRange, IntRange
from tuner.search.base import Affordable, GreentuneSearcher, Outcome, SearchParam


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

    def ask_within(self, previous: dict[str, Any], affordable: Affordable) -> dict[str, Any] | None:
        """The next grid point, in the grid's order, that the budget can fit.

        It swaps places with ``previous``, which stays in the grid: a resumed study, or a
        model that learns it was priced too high, may still run it.
        """
        last = self._next - 1
        if last < 0 or self.point(int(self._order[last])) != previous:
            return None
        for start in range(self._next, len(self._order), _PRICE_CHUNK):
            numbers = [j for j in range(start, min(start + _PRICE_CHUNK, len(self._order)))
                       if tuple(self.point(int(self._order[j])).values()) not in self._finished]
            if not numbers:
                continue
            fits = affordable([self.point(int(self._order[j])) for j in numbers])
            for j, ok in zip(numbers, fits, strict=True):
                if ok:
                    self._order[last], self._order[j] = self._order[j], self._order[last]
                    return self.point(int(self._order[last]))
        return None

    def resume(self, history: Sequence[tuple[dict[str, Any], Outcome]], state: Path | None = None) -> None:
        """The same order as before, without the points that finished; interrupted ones run again."""
        self._finished = {tuple(p.get(n) for n in self._names) for p, o in history if o.status != "stopped"}
        self._next = 0


_PRICE_CHUNK = 4096
"""Grid points priced at a time when looking for an affordable one: a big grid is never
priced whole."""


class RandomSearcher(GreentuneSearcher):
    """Independent uniform samples (log-uniform on log-scale ranges)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rng = np.random.default_rng(self.seed)
        # affordable replacements come from a stream of their own, so that the main one
        # stays one draw per trial and a resumed study goes on with the same proposals
        self._within_rng = np.random.default_rng([self.seed if self.seed is not None else 0, 1])

    def ask(self) -> dict[str, Any]:
        return {name: sample(param, self._rng) for name, param in self.space.items()}

    def tell(self, params: dict[str, Any], outcome: Outcome) -> None:
        pass

    def ask_within(self, previous: dict[str, Any], affordable: Affordable) -> dict[str, Any] | None:
        """A uniform draw from the part of the space the budget can fit: the first of
        :data:`WITHIN_CANDIDATES` fresh draws that it can."""
        return first_affordable(
            [{name: sample(param, self._within_rng) for name, param in self.space.items()}
             for _ in range(WITHIN_CANDIDATES)], affordable)

    def resume(self, history: Sequence[tuple[dict[str, Any], Outcome]], state: Path | None = None) -> None:
        """Skip the draws earlier drivers used, so the sequence goes on as if never interrupted."""
        for _ in history:
            self.ask()


WITHIN_CANDIDATES = 256
"""Random draws a searcher prices when it looks for an affordable replacement."""


def first_affordable(candidates: list[dict[str, Any]], affordable: Affordable) -> dict[str, Any] | None:
    """The first candidate the budget can fit, or ``None``."""
    if not candidates:
        return None
    for candidate, ok in zip(candidates, affordable(candidates), strict=True):
        if ok:
            return candidate
    return None


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
