"""The PyTorch reference: LeNet-5 trained with SGD + momentum, as in the paper's stack.

Benchmark-only (``pip install torch==2.13.0``). Two measurements, each printed
as one JSON line so that ``benchmarks/compare.py`` can run it in a fresh
process:

    python benchmarks/torch_reference.py step --case=fmnist-64
    python benchmarks/torch_reference.py epoch --data_dir=/usr/share/datasets/fashion-mnist
    python benchmarks/torch_reference.py step --case=cifar-64 --device=cuda

``step``: images/s of the training step (forward, backward, optimizer step,
loss and accuracy accumulated on the tensor side), the data held in memory as
one tensor and each batch gathered by a shuffled index, like the project's
step. ``epoch``: one Fashion-MNIST (or CIFAR-10, ``--dataset``) epoch end to
end with a standard ``DataLoader`` (shuffle, batch 64) followed by a full
test-set evaluation. ``--device=cuda`` runs on the GPU the usual way: model and
data on the device, ``cudnn.benchmark`` on, batches moved from the
``DataLoader`` to the device as they come; timings end with a synchronize.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
from _cli import parse_args
from torch import nn
from torch.utils.data import TensorDataset

from phs_optax_training import data as data_lib

CASES = {
    "fmnist-64": ((1, 28, 28), 64),
    "cifar-64": ((3, 32, 32), 64),
    "fmnist-256": ((1, 28, 28), 256),
}


class LeNet5(nn.Module):
    """The same layers as ``phs_optax_models.LeNet5`` (VALID convs, max-pool 2)."""

    def __init__(self, channels: int, size: int, num_classes: int = 10) -> None:
        super().__init__()
        side = ((size - 4) // 2 - 4) // 2  # after two VALID 5x5 convs and pools
        flat = 16 * side * side
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _train_step(model, optimizer, loss_fn, x, y, totals):
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)
    loss = loss_fn(logits, y)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        totals[0] += loss.detach() * len(y)
        totals[1] += (logits.argmax(1) == y).sum()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_throughput(
    case: str, steps: int, repeats: int, num_examples: int, device: torch.device
) -> dict:
    shape, batch_size = CASES[case]
    torch.manual_seed(0)
    images = torch.randn(num_examples, *shape, device=device)
    labels = torch.randint(0, 10, (num_examples,), device=device)
    model = LeNet5(shape[0], shape[1]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    totals = torch.zeros(2, device=device)
    order = torch.randperm(num_examples, device=device)
    position = 0

    def run(count: int) -> None:
        nonlocal position
        for _ in range(count):
            if position + batch_size > num_examples:
                position = 0
            rows = order[position : position + batch_size]
            position += batch_size
            _train_step(model, optimizer, loss_fn, images[rows], labels[rows], totals)

    run(20)  # warm-up
    _synchronize(device)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        _synchronize(device)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return {"case": case, "images_per_second": rates}


def _dataset(name: str, data_dir: str | None) -> tuple[TensorDataset, TensorDataset]:
    """The project's arrays (same files and normalisation), NCHW."""
    dataset = data_lib.load_dataset(name, data_dir)

    def split(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
        return TensorDataset(
            torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
            torch.from_numpy(labels.astype(np.int64)),
        )

    return (
        split(dataset.train_images, dataset.train_labels),
        split(dataset.test_images, dataset.test_labels),
    )


def epoch_end_to_end(
    dataset: str,
    data_dir: str | None,
    batch_size: int,
    repeats: int,
    device: torch.device,
) -> dict:
    """Seconds for one training epoch (DataLoader, shuffled) + full test evaluation."""
    train, test = _dataset(dataset, data_dir)
    torch.manual_seed(0)
    channels, size = train.tensors[0].shape[1:3]
    model = LeNet5(channels, size).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    seconds, accuracies = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train()
        totals = torch.zeros(2, device=device)
        for x, y in torch.utils.data.DataLoader(
            train, batch_size=batch_size, shuffle=True, drop_last=True
        ):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            _train_step(model, optimizer, loss_fn, x, y, totals)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in torch.utils.data.DataLoader(test, batch_size=1000):
                x, y = x.to(device), y.to(device)
                correct += int((model(x).argmax(1) == y).sum())
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
        accuracies.append(correct / len(test))
    return {"seconds": seconds, "test_accuracy": accuracies}


def main() -> None:
    args = parse_args(CASES, devices=("cpu", "cuda"))
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.what == "step":
        result = step_throughput(
            args.case, args.steps, args.repeats, args.num_examples, device
        )
    else:
        result = epoch_end_to_end(
            args.dataset, args.data_dir, args.batch_size, args.repeats, device
        )
        result["dataset"] = args.dataset
    result["device"] = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    )
    result["threads"] = torch.get_num_threads()
    result["torch"] = torch.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
