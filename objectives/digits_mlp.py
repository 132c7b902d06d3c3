"""A PyTorch MLP on scikit-learn's bundled digits dataset: a real, cheap training objective.

Nothing is downloaded (the 1,797 8x8 images ship with scikit-learn), so it runs offline
and in CI. Wider, deeper and longer-trained networks cost more CPU time, and so more
energy, than small short ones: the trade-off greentune exists to find.
"""

from __future__ import annotations

import functools
from typing import Any

from objectives._mlp import train_mlp

SEARCH_SPACE: dict[str, Any] = {
    "width": {"type": "int", "low": 16, "high": 512, "log": True},
    "depth": {"type": "int", "low": 1, "high": 4},
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "choice", "values": [16, 32, 64, 128], "ordered": True},
    "epochs": {"type": "int", "low": 1, "high": 30},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
}


@functools.lru_cache(maxsize=1)
def dataset() -> tuple[Any, Any, Any, Any]:
    """Train and validation tensors, built once per process: with greentune's default
    ``reuse_trial_processes`` later trials in the same process skip it."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    return (torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train),
            torch.tensor(x_val, dtype=torch.float32), torch.tensor(y_val))


def digits_mlp(params: dict[str, Any]) -> dict[str, float]:
    """Train for ``epochs`` epochs, report validation accuracy each epoch, return the last.

    Parameters: ``width``, ``depth``, ``lr``, ``batch_size``, ``epochs``, ``dropout``, and
    optionally ``seed`` (default 0) and ``threads`` (torch threads, default 1).
    """
    return train_mlp(params, dataset(), classes=10)
