"""The PyTorch reference: LeNet-5 trained with SGD + momentum, as in the paper's stack.

Benchmark-only (``pip install torch==2.13.0``). Two measurements, each printed
as one JSON line so that ``benchmarks/compare.py`` can run it in a fresh
process:

    python benchmarks/torch_reference.py step --case=fmnist-64
    python benchmarks/torch_reference.py epoch --data_dir=/usr/share/datasets/fashion-mnist
    python benchmarks/torch_reference.py step --case=cifar-64 --device=cuda

and one training run of the paper's eq. 2, independent of the project's code:

    python benchmarks/torch_reference.py drag --learning_rate=0.1 --friction=0.1 \
        --mass=10 --drag=velocity --epochs=5 --seed=0 --threads=1 \
        --data_dir=/usr/share/datasets/fashion-mnist

``step``: images/s of the training step (forward, backward, optimizer step,
loss and accuracy accumulated on the tensor side), the data held in memory as
one tensor and each batch gathered by a shuffled index, like the project's
step. ``epoch``: one Fashion-MNIST (or CIFAR-10, ``--dataset``) epoch end to
end with a standard ``DataLoader`` (shuffle, batch 64) followed by a full
test-set evaluation. ``--device=cuda`` runs on the GPU the usual way: model and
data on the device, ``cudnn.benchmark`` on, batches moved from the
``DataLoader`` to the device as they come; timings end with a synchronize.
``drag``: LeNet-5 trained on Fashion-MNIST (``--dataset``) with
:class:`EulerPHS`, eq. 2 with explicit Euler steps, for ``--epochs`` epochs
(``DataLoader``, shuffled, last partial batch dropped, as the project's
training); one JSON line per epoch (mean training loss, test accuracy, whether
the parameters and momenta are still finite) and a summary line. The run stops
after the first epoch that ends with non-finite values. Results:
``benchmarks/drag_evidence.md``.
"""

from __future__ import annotations

import argparse
import json
import math
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


class EulerPHS(torch.optim.Optimizer):
    """The paper's eq. 2 with explicit Euler steps, the momentum ``p`` zero at
    the start:

        theta_{k+1} = theta_k + (lr / m) * p_k
        p_{k+1}     = (1 - lr * c) * p_k - lr * grad L(theta_k)

    with damping rate ``c = friction / mass`` for ``drag="velocity"`` (eq. 2 as
    printed) and ``c = friction`` for ``drag="momentum"``. theta moves with the
    old momentum, so the first step leaves the parameters where they are.
    """

    def __init__(self, params, lr: float, mass: float, friction: float, drag: str):
        if drag not in ("velocity", "momentum"):
            raise ValueError(f"drag must be 'velocity' or 'momentum', got {drag!r}")
        defaults = {"lr": lr, "mass": mass, "friction": friction, "drag": drag}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mass, friction = group["lr"], group["mass"], group["friction"]
            rate = friction / mass if group["drag"] == "velocity" else friction
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(param)
                momentum = state["momentum"]  # p_k
                grad = param.grad  # grad L(theta_k)
                param.copy_(param + (lr / mass) * momentum)
                momentum.copy_((1.0 - lr * rate) * momentum - lr * grad)


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


def _finite(model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    tensors = list(model.parameters()) + [
        state["momentum"] for state in optimizer.state.values()
    ]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def train_eq2(args: argparse.Namespace, device: torch.device) -> dict:
    """LeNet-5 trained with :class:`EulerPHS`; prints one JSON line per epoch."""
    train, test = _dataset(args.dataset, args.data_dir)
    torch.manual_seed(args.seed)
    channels, size = train.tensors[0].shape[1:3]
    model = LeNet5(channels, size).to(device)
    optimizer = EulerPHS(
        model.parameters(),
        lr=args.learning_rate,
        mass=args.mass,
        friction=args.friction,
        drag=args.drag,
    )
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(args.seed)
    accuracies, finite = [], True
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        totals = torch.zeros(2, device=device)
        batches = 0
        for x, y in torch.utils.data.DataLoader(
            train,
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            generator=shuffle,
        ):
            x, y = x.to(device), y.to(device)
            _train_step(model, optimizer, loss_fn, x, y, totals)
            batches += 1
        train_loss = float(totals[0]) / (batches * args.batch_size)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in torch.utils.data.DataLoader(test, batch_size=1000):
                x, y = x.to(device), y.to(device)
                correct += int((model(x).argmax(1) == y).sum())
        accuracies.append(correct / len(test))
        finite = _finite(model, optimizer)
        row = {
            "epoch": epoch,
            "train_loss": train_loss if math.isfinite(train_loss) else None,
            "test_accuracy": accuracies[-1],
            "finite": finite,
            "seconds": time.perf_counter() - start,
        }
        print(json.dumps(row), flush=True)
        if not finite:
            break
    rate = args.friction / args.mass if args.drag == "velocity" else args.friction
    return {
        "learning_rate": args.learning_rate,
        "friction": args.friction,
        "mass": args.mass,
        "drag": args.drag,
        "damping_factor": 1.0 - args.learning_rate * rate,
        "effective_step": args.learning_rate / (args.mass * rate) if rate else None,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "epochs": len(accuracies),
        "test_accuracy": accuracies,
        "final_test_accuracy": accuracies[-1],
        "finite": finite,
    }


def _drag_flags(parser: argparse.ArgumentParser) -> None:
    """The ``drag`` command's flags (the defaults: Table 2's first PHS row)."""
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--friction", type=float, default=0.1)
    parser.add_argument("--mass", type=float, default=10.0)
    parser.add_argument("--drag", choices=["velocity", "momentum"], default="velocity")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads, any command"
    )


def main() -> None:
    args = parse_args(
        CASES,
        devices=("cpu", "cuda"),
        commands=("step", "epoch", "drag"),
        add_flags=_drag_flags,
    )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.what == "drag":
        result = train_eq2(args, device)
    elif args.what == "step":
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
