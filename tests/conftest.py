"""Shared fixtures: a tiny synthetic data set and a tiny training config (seconds on one CPU core)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch
from torch import Tensor, nn

import nlkd.weighting
from nlkd.config import TrainConfig
from nlkd.data.synth import make_synthetic
from nlkd.models import registry

T = TypeVar("T")

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests run torch on one thread: two spinning threads on a shared 2-core machine are slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _one_thread_again(_one_thread):
    """... and every test starts on one thread again, whatever the test before it set (``train`` restores the
    caller's count, other in-process commands may not): recorded losses are pinned at one thread."""
    torch.set_num_threads(1)


def recorded_on_this_cpu(by_cpu: dict[str, T]) -> T:
    """The entry of ``by_cpu`` recorded on a CPU of this one's kernel level
    (``torch.backends.cpu.get_cpu_capability()``: float kernels round differently on AVX2 and AVX-512, by
    up to 1 % over an epoch); the test is skipped, saying why, on a level with no recording."""
    level = torch.backends.cpu.get_cpu_capability()
    if level not in by_cpu:
        pytest.skip(f"values recorded on {', '.join(sorted(by_cpu))} CPUs only; this one is {level}")
    return by_cpu[level]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic data set: 16 train (+ train_coarse, half corrupted) / 8 val / 8 test at 32×48."""
    root = tmp_path_factory.mktemp("tiny") / "data"
    make_synthetic(root, seed=0, n_train=16, n_val=8, n_test=8, size=(32, 48))
    return root


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic data set for the noise benchmark's tests: 8 train / 4 val / 2 test at 32×48 (the benchmark
    writes its coarse label folders into it on first use)."""
    root = tmp_path_factory.mktemp("bench") / "data"
    make_synthetic(root, seed=0, n_train=8, n_val=4, n_test=2, size=(32, 48))
    return root


def tiny_config(data: Path, out: Path, **changes: object) -> TrainConfig:
    """A TrainConfig that trains a small U-Net for one epoch on ``tiny_data`` in a few seconds."""
    cfg = TrainConfig(epochs=1, batch_size=4, seed=0, out=str(out), device="cpu")
    cfg.data.root = str(data)
    cfg.data.size = [32, 48]
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = getattr(node, p)
        setattr(node, leaf, value)
    return cfg


def one_step_config(data: Path, out: Path, model: str, lr: float, **changes: object) -> TrainConfig:
    """One plain SGD step (momentum's first step is a plain gradient step) over all 16 training images of
    ``tiny_data`` (coarse labels, no augmentation), for tests that check the update by hand."""
    base: dict[str, object] = {
        "model.name": model,
        "batch_size": 16,
        "data.labels": "train_coarse",
        "data.hflip": False,
        "data.scale": None,
        "optim.name": "sgd",
        "optim.lr": lr,
        "optim.weight_decay": 0.0,
        "optim.schedule": "constant",
        "optim.warmup_steps": 0,
    }
    return tiny_config(data, out, **{**base, **changes})


#: A small encoder for tests about the loop rather than the network: 25 MB checkpoints, fast steps.
SMALL_ENCODER = "tu-mobilenetv3_small_050"


def train_argv(data: Path, out: Path, *extra: str, labels: str = "train_coarse") -> list[str]:
    """``nlkd train`` arguments for ``tiny_data`` at 32×48, batch 4, seed 0 on the CPU; ``extra`` after."""
    return [
        *("train", "--data", str(data), "--labels", labels, "--out", str(out)),
        *("--size", "32x48", "--batch-size", "4", "--seed", "0", "--device", "cpu"),
        *extra,
    ]


PROBE = "probe_conv3x3"


def probe_network(num_classes: int) -> nn.Module:
    """One 3×3 convolution with weights drawn from a fixed generator: the same network every time, and no
    BatchNorm, so an image's loss and gradient depend on that image alone (hand-checkable training steps)."""
    conv = nn.Conv2d(3, num_classes, 3, padding=1)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.3)
    return conv


@pytest.fixture
def probe_model(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers :func:`probe_network` as a model for one test; returns its name (for ``model.name``)."""
    monkeypatch.setitem(registry._REGISTRY, PROBE, probe_network)
    return PROBE


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Tensor, Tensor]]:
    """(per-image losses, image weights) of every ``weighted_loss`` call the loop makes, wherever the loop's
    modules look ``weighted_loss`` up (any loaded ``nlkd`` module holding the function)."""
    calls: list[tuple[Tensor, Tensor]] = []
    original = nlkd.weighting.weighted_loss

    def recording(ce: Tensor, w: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        calls.append((ce.detach().clone(), w.detach().clone()))
        return original(ce, w, *args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "nlkd" and getattr(module, "weighted_loss", None) is original:
            monkeypatch.setattr(module, "weighted_loss", recording)
    return calls
