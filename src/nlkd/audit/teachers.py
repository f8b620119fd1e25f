"""The network(s) that judge the annotations: one checkpoint, or out-of-fold teachers."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from nlkd.data.folder import FolderDataset
from nlkd.teacher import cache_key

__all__ = ["Teachers"]


class Teachers:
    """The network(s) judging the annotations: one checkpoint, or one per fold, each image then being
    predicted by the teacher of its fold (``fold_of[id]``), i.e. the one that never trained on it."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        sources: Sequence[Path],
        fold_of: Mapping[str, int] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(models) != len(sources) or not models or (fold_of is None and len(models) != 1):
            raise ValueError(
                f"need one source per model and one model without folds, got "
                f"{len(models)} models, {len(sources)} sources, fold_of={fold_of is not None}"
            )
        self.models, self.sources = [m.to(device).eval() for m in models], [Path(s) for s in sources]
        self.fold_of, self.device = fold_of, torch.device(device)

    @torch.no_grad()
    def __call__(self, images: Tensor, ids: Sequence[str]) -> Tensor:
        """(B, 3, H, W) normalised images and their ids -> (B, C, H, W) logits on ``self.device``."""
        images = images.to(self.device)
        if self.fold_of is None:
            return self.models[0](images)
        folds = torch.tensor([self.fold_of[i] for i in ids])
        out: Tensor | None = None
        for f in folds.unique().tolist():
            sel = (folds == f).nonzero().squeeze(1).to(self.device)
            logits = self.models[f](images.index_select(0, sel))
            if out is None:
                out = logits.new_empty((len(ids), *logits.shape[1:]))
            out[sel] = logits
        return out  # type: ignore[return-value]

    def key(self, dataset: FolderDataset, tolerance: float) -> str:
        """What the scores depend on: teacher files, label files, size and tolerance."""
        parts = [cache_key(s, dataset, "audit", tolerance) for s in self.sources]
        return hashlib.sha256(";".join(parts).encode()).hexdigest()[:20]
