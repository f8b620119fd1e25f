"""Where a run runs: the device, the process group under ``torchrun``, and the data set's classes.

Shared by every command that loads data or a model (train, eval, score, audit, folds, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nlkd.config import TrainConfig
from nlkd.data.folder import format_info
from nlkd.data.info import DatasetInfo, check_data_root, load_dataset_info
from nlkd.errors import NLKDError

__all__ = [
    "Distributed",
    "dataset_info",
    "has_native_bf16",
    "precision_warnings",
    "resolve_device",
    "setup_distributed",
]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> Distributed:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1): NCCL on GPUs, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo"
        dist.init_process_group(backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0, *, cpu_flag: str = "--device cpu") -> torch.device:
    """``auto`` -> the local GPU if there is one, else the CPU. Asked for CUDA without it, the error
    suggests ``cpu_flag`` (the command's way to choose the CPU)."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NLKDError(f"device {name!r} requested but CUDA is not available; use {cpu_flag}")
    try:
        return torch.device(name)
    except RuntimeError:
        raise NLKDError(f"device {name!r} not understood; use auto, cpu, cuda or cuda:N") from None


def dataset_info(cfg: TrainConfig) -> DatasetInfo:
    """Classes, ignore index, names and palette of the configured data set (``dataset.yaml``, flags, or
    the ones its format fixes, :func:`nlkd.data.folder.format_info`)."""
    if not cfg.data.root:
        raise NLKDError("no data set given: pass --data ROOT")
    check_data_root(cfg.data.root)
    fixed = format_info(cfg.data.format)
    if fixed is not None:
        return fixed
    return load_dataset_info(cfg.data.root, cfg.data.num_classes, cfg.data.ignore_index)


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX-512 BF16 or AMX. Elsewhere (e.g. an AVX2-only CPU) bf16 autocast is emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def precision_warnings(bf16: bool, device: torch.device) -> list[str]:
    """The warnings a run's precision options deserve on ``device`` (one line each, none if fine)."""
    if bf16 and not has_native_bf16(device):
        return [
            f"bf16=true on a {device.type.upper()} without native bfloat16 (no AVX-512 BF16 or AMX): autocast is "
            "emulated and far slower than fp32 (0.05x per step on an AVX2 CPU, BENCHMARKS.md); set bf16=false"
        ]
    return []
