"""The searcher seam: an optimiser that speaks in finished trial outcomes.

The study asks :meth:`suggest` for each new trial and, when it ends, passes
:meth:`complete` the :class:`Outcome` its ledger booked; this base class turns those
into a small ``ask``/``tell`` contract so that a new optimiser only has to implement
two methods::

    class FirstValue(GreentuneSearcher):
        def ask(self):
            return {name: spec.values[0] for name, spec in self.space.items()}
        def tell(self, params, outcome):
            pass

``ask`` returns a parameter dict, ``None`` to wait, or ``Searcher.FINISHED``.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ray.tune.search import Searcher

from tuner.config import Choice, FloatRange, IntRange

logger = logging.getLogger(__name__)

SearchParam = FloatRange | IntRange | Choice
Affordable = Callable[[list[dict[str, Any]]], list[bool]]
"""Which of these configurations the energy budget can fit (see :meth:`GreentuneSearcher.ask_within`)."""


@dataclass(frozen=True)
class Outcome:
    """What a finished trial tells the optimiser."""

    status: Literal["completed", "failed", "stopped"]
    metric: float | None = None
    energy_kwh: float | None = None
    error: str | None = None


class GreentuneSearcher(Searcher, abc.ABC):
    """Base class for greentune's optimisers, plugged into Ray Tune as a ``Searcher``."""

    def __init__(
        self,
        space: dict[str, SearchParam],
        fixed: dict[str, Any] | None = None,
        metric: str = "accuracy",
        mode: str = "max",
        seed: int | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.space = dict(space)
        self.fixed = dict(fixed or {})
        self.seed = seed
        self.cpu_seconds = 0.0  # this searcher's own CPU time: the cost of choosing
        self.step_seconds: list[float] = []  # wall time of each suggestion
        self.step_cpu_seconds: list[float] = []  # CPU time of each suggestion
        self._live: dict[str, dict[str, Any]] = {}

    def expected_step_cpu_seconds(self) -> float:
        """CPU the next suggestion will likely cost: the latest step's (BO steps grow with data)."""
        return self.step_cpu_seconds[-1] if self.step_cpu_seconds else 0.0

    @abc.abstractmethod
    def ask(self) -> dict[str, Any] | str | None:
        """The next parameters to try, ``None`` to wait, or ``Searcher.FINISHED``."""

    @abc.abstractmethod
    def tell(self, params: dict[str, Any], outcome: Outcome) -> None:
        """Learn from a finished trial that ``ask`` proposed."""

    def ask_within(self, previous: dict[str, Any], affordable: Affordable) -> dict[str, Any] | None:
        """A configuration to run instead of ``previous``, which the energy budget cannot fit.

        ``affordable`` tells, for a list of configurations, which ones the budget can fit
        (their predicted upper band is below what is left). Return one of those, or
        ``None`` if this searcher cannot offer one, in which case the study waits for a
        running trial to finish, or ends. The default cannot; the built-in searchers can.
        """
        return None

    def resume(self, history: Sequence[tuple[dict[str, Any], Outcome]], state: Path | None = None) -> None:
        """Continue a study that earlier drivers began, without rerunning what they finished.

        ``history`` holds every trial they started, in order, with its outcome (``stopped``
        for trials interrupted by the driver's death); ``state`` is what
        :meth:`save_state` last wrote, if anything. The default learns from each outcome.
        """
        for params, outcome in history:
            self.tell(params, outcome)

    def save_state(self, path: Path) -> bool:
        """Write the optimiser's state to ``path`` atomically; ``False`` if the history suffices."""
        return False

    # ------------------------------------------------------------------- Ray interface

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the space and objectives were fixed at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        params = self.ask()
        step_cpu = time.process_time() - start_cpu
        self.cpu_seconds += step_cpu
        if isinstance(params, dict):
            self.step_seconds.append(time.perf_counter() - start_wall)
            self.step_cpu_seconds.append(step_cpu)
            self._live[trial_id] = params
            return {**self.fixed, **params}
        return params

    def suggest_within(self, trial_id: str, affordable: Affordable) -> dict[str, Any] | None:
        """Replace this trial's proposal by an affordable one (:meth:`ask_within`), if any."""
        previous = self._live.get(trial_id)
        if previous is None:
            return None
        start = time.process_time()
        params = self.ask_within(previous, affordable)
        self.cpu_seconds += time.process_time() - start
        if params is None:
            return None
        self._live[trial_id] = params
        return {**self.fixed, **params}

    def rekey(self, old_id: str, new_id: str) -> None:
        """A proposal held back for lack of energy is offered again under a new Ray trial id."""
        if old_id in self._live:
            self._live[new_id] = self._live.pop(old_id)

    def withdraw(self, trial_id: str) -> None:
        """A proposal that will never run (the study ended before it fitted): told as ``stopped``."""
        self.complete(trial_id, Outcome("stopped"))

    def save(self, checkpoint_path: str) -> None:
        """Pickle the searcher's state so Ray's experiment checkpoint holds it."""
        import pickle

        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))

    def complete(self, trial_id: str, outcome: Outcome) -> None:
        """A trial this searcher proposed has ended; ``outcome`` is what the study booked."""
        params = self._live.pop(trial_id, None)
        if params is None:
            return
        start = time.process_time()
        self.tell(params, outcome)
        self.cpu_seconds += time.process_time() - start
