"""A PyTorch MLP on a synthetic tabular task whose compute the hyperparameters choose.

The data are made, not downloaded: scikit-learn's ``make_classification`` with a fixed
seed (40,000 rows, 40 features, 6 classes of 4 clusters each), hard enough that small or
briefly trained networks underfit. Training cost grows with ``width``² x ``depth`` x
``epochs``, so the space spans two orders of magnitude in energy and the front has a
knee a user recognises: more network and more epochs buy accuracy, with diminishing
returns.

The data are built once per process (``functools.lru_cache``): with greentune's default
``reuse_trial_processes`` the trials after the first in a process skip it, as they skip
importing torch.
"""

from __future__ import annotations

import functools
from typing import Any

from objectives._mlp import train_mlp

SEARCH_SPACE: dict[str, Any] = {
    "width": {"type": "int", "low": 64, "high": 512, "log": True},
    "depth": {"type": "int", "low": 1, "high": 3},
    "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    "batch_size": {"type": "choice", "values": [128, 256], "ordered": True},
    "epochs": {"type": "int", "low": 3, "high": 16, "log": True},
}

ROWS, FEATURES, CLASSES = 40_000, 40, 6


@functools.lru_cache(maxsize=1)
def dataset() -> tuple[Any, Any, Any, Any]:
    """Train and validation tensors, standardised; the same on every call and machine."""
    import numpy as np
    import torch
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=ROWS, n_features=FEATURES, n_informative=24, n_redundant=8, n_classes=CLASSES,
        n_clusters_per_class=4, class_sep=1.2, flip_y=0.02, random_state=0,
    )
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    split = int(0.8 * ROWS)
    as_x = functools.partial(torch.tensor, dtype=torch.float32)
    return as_x(x[:split]), torch.tensor(y[:split]), as_x(x[split:]), torch.tensor(y[split:].astype(np.int64))


def tabular_mlp(params: dict[str, Any]) -> dict[str, float]:
    """Train for ``epochs`` epochs, report validation accuracy each epoch, return the last.

    Parameters: ``width``, ``depth``, ``lr``, ``batch_size``, ``epochs``, and optionally
    ``seed`` (default 0) and ``threads`` (torch threads, default 1).
    """
    return train_mlp(params, dataset(), classes=CLASSES)
