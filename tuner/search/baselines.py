"""Grid and random search: the baselines greentune is measured against."""

from __future__ import annotations

import itertools
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
    the grid, instead of only the low end of the first parameter.
    """

    def __init__(self, *args: Any, resolution: int = 3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = list(self.space)
        combos = list(itertools.product(*(grid_levels(self.space[n], resolution) for n in names)))
        order = np.random.default_rng(self.seed).permutation(len(combos))
        self._points = [dict(zip(names, combos[i], strict=True)) for i in order]
        self._next = 0

    @property
    def size(self) -> int:
        return len(self._points)

    def ask(self) -> dict[str, Any] | str | None:
        if self._next >= len(self._points):
            return Searcher.FINISHED
        point = self._points[self._next]
        self._next += 1
        return _plain(point)

    def tell(self, params: dict[str, Any], outcome: Outcome) -> None:
        pass  # a grid does not learn

    def ask_within(self, previous: dict[str, Any], affordable: Affordable) -> dict[str, Any] | None:
        """The next grid point, in the grid's order, that the budget can fit.

        It swaps places with ``previous``, which stays in the grid: a resumed study, or a
        model that learns it was priced too high, may still run it.
        """
        last = self._next - 1
        if last < 0 or _plain(self._points[last]) != previous:
            return None
        rest = [_plain(p) for p in self._points[self._next:]]
        fits = affordable(rest) if rest else []
        for offset, ok in enumerate(fits):
            if ok:
                j = self._next + offset
                self._points[last], self._points[j] = self._points[j], self._points[last]
                return _plain(self._points[last])
        return None

    def resume(self, history: Sequence[tuple[dict[str, Any], Outcome]], state: Path | None = None) -> None:
        """The same order as before, without the points that finished; interrupted ones run again."""
        names = list(self.space)
        finished = {tuple(p.get(n) for n in names) for p, o in history if o.status != "stopped"}
        self._points = [p for p in self._points if tuple(p[n] for n in names) not in finished]
        self._next = 0


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
