"""The search space as numbers: what the surrogate and energy models are fitted on.

Shared by the search (the energy model) and the reporting (sensitivity, plots), so it
belongs to neither.

Each tunable parameter gets one *design* coordinate: a range maps to [0, 1] (on a log
scale when the range is log-scaled), a choice to its index 0..k-1. Models see
*features*: ranges as they are, ordered choices as index / (k - 1), unordered choices
one-hot, so that no false order is imposed on them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tuner.config import Choice, FloatRange, IntRange

SearchParam = FloatRange | IntRange | Choice


class SpaceEncoder:
    """Maps trial parameters to design coordinates and model features.

    >>> enc = SpaceEncoder({"x": FloatRange(type="float", low=0, high=2)})
    >>> enc.design(pd.DataFrame({"x": [0.0, 1.0]})).ravel().tolist()
    [0.0, 0.5]
    """

    def __init__(self, space: dict[str, SearchParam]) -> None:
        self.space = dict(space)
        self.names = list(self.space)

    def is_choice(self, name: str) -> bool:
        return isinstance(self.space[name], Choice)

    def is_unordered(self, name: str) -> bool:
        param = self.space[name]
        return isinstance(param, Choice) and not param.ordered

    def width(self, name: str) -> int:
        """How many feature columns a parameter takes."""
        param = self.space[name]
        return len(param.values) if self.is_unordered(name) else 1

    @property
    def bounds(self) -> np.ndarray:
        """2 x d bounds of the design coordinates."""
        upper = [len(p.values) - 1 if isinstance(p, Choice) else 1.0 for p in self.space.values()]
        return np.array([[0.0] * len(upper), upper], dtype=float)

    @property
    def discrete(self) -> list[int]:
        """Indices of choice coordinates (sampled as integers)."""
        return [i for i, name in enumerate(self.names) if self.is_choice(name)]

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """Design coordinates of every row; a value outside the space raises, naming it."""
        columns = [self._column(name, frame[name]) for name in self.names]
        return np.column_stack(columns) if columns else np.empty((len(frame), 0))

    def design_of(self, name: str, values: list[Any]) -> np.ndarray:
        return self._column(name, pd.Series(values))

    def features(self, design: np.ndarray) -> np.ndarray:
        """Model features from design coordinates (one-hot for unordered choices)."""
        blocks = []
        for i, name in enumerate(self.names):
            param = self.space[name]
            column = design[:, i]
            if isinstance(param, Choice):
                k = len(param.values)
                if param.ordered:
                    blocks.append((column / max(k - 1, 1))[:, None])
                else:
                    codes = np.clip(np.rint(column).astype(int), 0, k - 1)
                    blocks.append(np.eye(k)[codes])
            else:
                blocks.append(column[:, None])
        return np.hstack(blocks) if blocks else np.empty((len(design), 0))

    def _column(self, name: str, values: pd.Series) -> np.ndarray:
        param = self.space[name]
        if isinstance(param, Choice):
            index = {str(v): i for i, v in enumerate(param.values)}
            codes = [index.get(str(v), index.get(_as_text(v))) for v in values]
            if any(c is None for c in codes):
                bad = [v for v, c in zip(values, codes, strict=True) if c is None][0]
                raise ValueError(f"trials table: parameter '{name}' has value {bad!r} outside its choices {param.values}")
            return np.array(codes, dtype=float)
        x = values.astype(float).to_numpy()
        low, high = float(param.low), float(param.high)
        if param.log:
            return (np.log(x) - math.log(low)) / (math.log(high) - math.log(low))
        return (x - low) / (high - low)


def _as_text(value: Any) -> str:
    """CSV round trips turn 1 into 1.0 and True into 'True'; match either spelling."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
