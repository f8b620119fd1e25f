"""Distributed training (issue 7): ``torchrun --nproc_per_node=2 -m nlkd train`` with gloo on CPU equals the
single-process run it stands for.

What DDP with P processes and a global batch B computes, and how the single-process reference matches it:

* Data: a ``DistributedSampler`` per (seed, epoch) deals each process every P-th image of one shuffled
  order; global batch k is the union of each process's batch k. The reference replays exactly that
  order (the plain single-process loader shuffles differently, so the runs would not be comparable).
* Gradients: each process averages its B/P per-image losses, DDP averages the gradients over processes:
  the gradient of the mean over the global batch, as in one process (the loss reduction is "mean").
* BatchNorm: statistics are per process, over B/P images (``SyncBatchNorm`` needs a GPU; nlkd does not
  use it), and DDP broadcasts rank 0's running statistics before every forward. The reference runs the
  model on each process's share of the batch separately ("ghost batch norm") and keeps rank 0's
  running statistics. A plain single-process run with batch B normalises over all B images and trains a
  different model: that is the documented difference between DDP and one process, not tested here.
* Augmentation is off (``data.hflip=false``): per-item augmentation seeds follow the position in each
  process's loader, which the reference's single loader cannot replay.

Tolerance: the two runs add the same numbers in a different order (all-reduce, then the mean over B/P,
versus one mean over B), so weights agree to float32 rounding amplified by a few optimiser steps: we
allow 1e-4 absolute on weights and 1e-3 on the epoch metrics (a validation pixel may flip its argmax).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

import nlkd.train
from conftest import SMALL_ENCODER, tiny_config, train_argv
from nlkd.checkpoint import load_checkpoint
from nlkd.cli import main
from nlkd.train import train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo"),
]

WORLD = 2
ENCODER = SMALL_ENCODER  # the test is about the distributed loop
WEIGHT_ATOL = 1e-4
METRIC_ATOL = 1e-3


@pytest.fixture(scope="module")
def teacher(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "teacher"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(nlkd.train, "_plot", lambda out: None)
        train(tiny_config(tiny_data, out, **{"data.labels": "train_coarse", "model.encoder": ENCODER}), log=print)
    return out / "last.pt"


def flags(data: Path, out: Path, teacher: Path) -> list[str]:
    nlkd = ("--strategy", "nlkd", "--teacher", str(teacher), "--epochs", "2", "--encoder", ENCODER)
    fixed = ("--set", "data.hflip=false", "--set", "strategy.warmup_epochs=1", "--set", "threads=1")
    return train_argv(data, out, *nlkd, *fixed)


def run_torchrun(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        "-m",
        "nlkd",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)  # a hang guard, not a speed check


def replay_ddp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a single-process ``train`` compute what WORLD DDP processes compute (see the module doc)."""
    real_loader = nlkd.train.make_loader
    real_build = nlkd.train.build_model

    def make_loader(ds: Any, batch_size: int, shuffle: bool, seed: int, **kw: Any) -> Any:
        if not shuffle:
            return real_loader(ds, batch_size, shuffle, seed, **kw)
        per = batch_size // WORLD
        shares = [
            list(DistributedSampler(ds, WORLD, r, shuffle=True, seed=seed, drop_last=kw["drop_last"]))
            for r in range(WORLD)
        ]
        order = [i for k in range(0, len(shares[0]), per) for share in shares for i in share[k : k + per]]
        return real_loader(ds, batch_size, False, seed, **{**kw, "sampler": order})

    def build_model(*args: Any, **kw: Any) -> nn.Module:
        model = real_build(*args, **kw)
        forward = model.forward

        def ghost_forward(x: torch.Tensor) -> torch.Tensor:
            if not model.training:
                return forward(x)
            # Rank 0's share updates the real running statistics (the ones DDP keeps); the other shares
            # update throwaway copies. Swapping buffer objects, not copying into them, leaves the tensors
            # autograd saved untouched.
            slots = [(m, name) for m in model.modules() for name, b in m.named_buffers(recurse=False)]
            real = [getattr(m, name) for m, name in slots]
            outs = []
            for rank, share in enumerate(x.chunk(WORLD)):
                if rank > 0:
                    for (m, name), b in zip(slots, real):
                        setattr(m, name, b.clone())
                outs.append(forward(share))
            for (m, name), b in zip(slots, real):
                setattr(m, name, b)
            return torch.cat(outs)

        model.forward = ghost_forward  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(nlkd.train, "make_loader", make_loader)
    monkeypatch.setattr(nlkd.train, "build_model", build_model)


def test_torchrun_two_processes_equal_one(
    tiny_data: Path, teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ddp"
    proc = run_torchrun(flags(tiny_data, out, teacher))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SIGABRT" not in proc.stderr and "destroy_process_group" not in proc.stderr
    # Only rank 0 reports and writes: one line per epoch, one set of files, nothing half-written.
    assert [ln.split()[0] for ln in proc.stdout.splitlines() if ln.startswith("epoch=")] == ["epoch=1", "epoch=2"]
    assert proc.stdout.count("teacher scores: computed for 16 images") == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "config.yaml",
        "curves.png",
        "last.pt",
        "metrics.jsonl",
        "teacher_scores.csv",
        "train.log",
    ]

    ref = tmp_path / "single"
    replay_ddp(monkeypatch)
    monkeypatch.setattr(nlkd.train, "_plot", lambda out: None)
    assert main(flags(tiny_data, ref, teacher)) == 0

    got = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(ln) for ln in (ref / "metrics.jsonl").read_text().splitlines()]
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for key in set(w) - {"seconds", "train_seconds", "epoch"}:
            assert g[key] == pytest.approx(w[key], abs=METRIC_ATOL), key
    ka, kb = load_checkpoint(out / "last.pt"), load_checkpoint(ref / "last.pt")
    worst = 0.0
    for name, a in ka["models"][0].items():
        b = kb["models"][0][name]
        if a.is_floating_point():
            worst = max(worst, float((a - b).abs().max()))
        else:
            assert torch.equal(a, b), name  # num_batches_tracked
    print(f"largest weight difference: {worst:.2e}")
    assert worst < WEIGHT_ATOL


def test_torchrun_two_network_strategy_equals_one(
    tiny_data: Path, teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Co-teaching (two networks, each weighted by its peer's small-loss choice) runs under DDP: both
    networks are wrapped, stepped and saved, only rank 0 reports. Each process ranks the losses of its own
    share of the batch, so no single-process replay is compared here."""
    args = flags(tiny_data, tmp_path / "ddp", teacher)
    args[args.index("nlkd")] = "coteaching"
    proc = run_torchrun(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [ln.split()[0] for ln in proc.stdout.splitlines() if ln.startswith("epoch=")] == ["epoch=1", "epoch=2"]
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert len(ckpt["models"]) == 2 and len(ckpt["optimizers"]) == 2
    # Two separately initialised networks, both saved.
    a, b = ckpt["models"]
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    rec = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= rec["val_miou"] <= 1.0 and rec["train_loss"] == rec["train_loss"]
