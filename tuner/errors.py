"""Every error and warning greentune raises on purpose, under one root each.

``except tuner.GreentuneError`` catches anything greentune refused or could not do;
``warnings.simplefilter("error", tuner.GreentuneWarning)`` turns its warnings into
errors. Each type also derives from the built-in that describes it (``ValueError``
for a bad config, ``OSError`` for a file), so code written against those still works.
This module imports nothing: every package may raise from it.
"""

from __future__ import annotations

from typing import Any


class GreentuneError(Exception):
    """The root of greentune's errors."""


class TrialTimeout(GreentuneError):
    """Raised in a timed-out trial whose objective did not stop (``trial_timeout_s``): Ray
    then ends the trial's process (an errored trial's process is never reused), which ends
    the objective too. Its final record, with the energy until the timeout, has already
    reached the driver."""


class ConfigError(GreentuneError, ValueError):
    """A study config is invalid. The message names the field and the fix."""


class OutputWriteError(GreentuneError, OSError):
    """A study output could not be written; the file on disk is still its previous version.

    ``result`` holds the study's :class:`~tuner.TuneResult` when the failure came after
    the study finished, so that its figures are not lost with the file.
    """

    result: Any = None


class TrackingUnavailable(GreentuneError, RuntimeError):
    """The tracking server could not be reached when the study started (no energy spent yet)."""


class JobServerUnavailable(GreentuneError, ConnectionError):
    """``greentune submit``/``status`` found no Ray job server at the address (nothing was submitted)."""


class PowerLimitError(GreentuneError, RuntimeError):
    """The power limit cannot be applied here (no NVML, no privileges, out of range)."""


class ProviderError(GreentuneError, RuntimeError):
    """A carbon API could not answer; the message is safe to log (no secrets)."""


class SourceUnavailable(GreentuneError):
    """An energy source cannot be used here; the message is the reason recorded for the fallback."""


class AxCompatibilityError(GreentuneError, ImportError):
    """The installed Ax is not the version greentune's Ax internals were written against.

    The message names the pinned version, the installed one and what is missing.
    """


class GreentuneWarning(UserWarning):
    """The root of greentune's warnings."""


class GridSizeWarning(GreentuneWarning):
    """A grid study has more points than will run (or than is sensible)."""


class BudgetWarning(GreentuneWarning):
    """The budget looks too small for even one trial; said before any trial starts."""


class NoCompletedTrialWarning(GreentuneWarning):
    """A study ended without one completed trial: its Pareto front is empty."""


class CarbonDataWarning(GreentuneWarning):
    """A carbon trace has a defect greentune can read past (a gap, a missing value, a
    repeated row, a file that ends before the deadline); the message names the file,
    the rows and the option, and says what is done about it."""
