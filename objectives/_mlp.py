"""The MLP and its training loop, shared by the objectives that train one."""

from __future__ import annotations

from typing import Any

import tuner


def train_mlp(params: dict[str, Any], data: tuple[Any, Any, Any, Any], classes: int) -> dict[str, float]:
    """Train an MLP for ``epochs`` epochs on ``data`` (train x, y, validation x, y),
    reporting validation accuracy after each epoch; the last accuracy.

    Parameters: ``width``, ``depth``, ``lr``, ``batch_size``, ``epochs``, optionally
    ``dropout`` (default 0), ``seed`` (default 0) and ``threads`` (torch threads, default 1).
    """
    import torch

    torch.set_num_threads(int(params.get("threads", 1)))
    torch.manual_seed(int(params.get("seed", 0)))
    x_train, y_train, x_val, y_val = data
    width, depth, dropout = int(params["width"]), int(params["depth"]), float(params.get("dropout", 0.0))
    layers: list[torch.nn.Module] = []
    size_in = x_train.shape[1]
    for _ in range(depth):
        layers += [torch.nn.Linear(size_in, width), torch.nn.ReLU()]
        if dropout:
            layers.append(torch.nn.Dropout(dropout))
        size_in = width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(size_in, classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params["lr"]))
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = int(params["batch_size"])

    accuracy = 0.0
    for epoch in range(int(params["epochs"])):
        model.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            optimizer.zero_grad()
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(dim=1) == y_val).float().mean().item()
        tuner.report(accuracy=accuracy, epoch=epoch + 1)
    return {"accuracy": accuracy}
