"""Environment variables set for one block of code only."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def scoped_env(values: Mapping[str, str], override: bool = True) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` inside the block, then put back what was there.

    With ``override=False`` a variable the user already set keeps its value: a default,
    not a decision.
    """
    before = {name: os.environ.get(name) for name in values}
    os.environ.update({name: value for name, value in values.items() if override or before[name] is None})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
