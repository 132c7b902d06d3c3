"""The core between the leaves: a config becomes a :class:`Study`, whose ledger owns
every trial's record. Imported lazily: trial processes need :mod:`tuner.study.record`
only, not Ray Tune's driver side."""

from __future__ import annotations

from typing import Any

__all__ = ["Study", "tune"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tuner.study import study

        return getattr(study, name)
    raise AttributeError(f"module 'tuner.study' has no attribute '{name}'")
