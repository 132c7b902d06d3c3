"""A torchvision ResNet-18 on CIFAR-10, one GPU per trial: the GPU example's objective.

torchvision is imported only when a trial runs (``pip install "greentune[gpu]"`` on the
GPU nodes). CIFAR-10 (170 MB) is downloaded on first use into ``data_dir``, once per
node (a file lock keeps concurrent trials from downloading it twice).

``gpu_power_limit_w`` in the search space is applied by greentune before this runs;
the objective only sees it in ``params``.
"""

from __future__ import annotations

import os
from typing import Any

import tuner

DEFAULT_DATA_DIR = "~/.cache/greentune/cifar10"
_MEAN, _STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def cifar10_resnet(params: dict[str, Any]) -> dict[str, float]:
    """Train for ``epochs`` epochs with SGD + cosine schedule; report test accuracy each epoch.

    Parameters: ``lr``, ``batch_size``, ``epochs``; optional ``data_dir``, ``weight_decay``
    (5e-4), ``loader_workers`` (4) and ``seed`` (0).
    """
    import torch
    from torch import nn

    torch.manual_seed(int(params.get("seed", 0)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train, test = _loaders(params, pin=device.type == "cuda")
    model = _resnet18().to(device).to(memory_format=torch.channels_last)
    epochs = int(params["epochs"])
    optimiser = torch.optim.SGD(model.parameters(), lr=float(params["lr"]), momentum=0.9, nesterov=True,
                                weight_decay=float(params.get("weight_decay", 5e-4)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=float(params["lr"]),
                                                   total_steps=epochs * len(train))
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    accuracy = 0.0
    for _epoch in range(epochs):
        model.train()
        for images, labels in train:
            images = images.to(device, non_blocking=True).to(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                loss = loss_fn(model(images), labels)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            schedule.step()
        accuracy = _evaluate(model, test, device)
        tuner.report(accuracy=accuracy, train_loss=float(loss))
    return {"accuracy": accuracy}


def _resnet18() -> Any:
    """torchvision's ResNet-18 with the usual CIFAR stem: 3x3 first conv, no max-pool."""
    from torch import nn
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _loaders(params: dict[str, Any], pin: bool) -> tuple[Any, Any]:
    import torch
    from filelock import FileLock
    from torchvision import datasets, transforms

    root = os.path.expanduser(str(params.get("data_dir", DEFAULT_DATA_DIR)))
    os.makedirs(root, exist_ok=True)
    normalise = transforms.Normalize(_MEAN, _STD)
    augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                  transforms.ToTensor(), normalise])
    with FileLock(os.path.join(root, ".download.lock")):
        train = datasets.CIFAR10(root, train=True, download=True, transform=augment)
        test = datasets.CIFAR10(root, train=False, download=True,
                                transform=transforms.Compose([transforms.ToTensor(), normalise]))
    workers = int(params.get("loader_workers", 4))
    batch = int(params["batch_size"])
    return (
        torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                    pin_memory=pin, persistent_workers=workers > 0),
        torch.utils.data.DataLoader(test, batch_size=512, num_workers=workers, pin_memory=pin),
    )


def _evaluate(model: Any, loader: Any, device: Any) -> float:
    import torch

    model.eval()
    correct = total = 0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        for images, labels in loader:
            images = images.to(device, non_blocking=True).to(memory_format=torch.channels_last)
            predicted = model(images).argmax(dim=1).cpu()
            correct += int((predicted == labels).sum())
            total += len(labels)
    return correct / total
