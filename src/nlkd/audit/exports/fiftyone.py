"""FiftyOne export: an ``ImageSegmentationDirectory`` (``data/<stem>.<ext>`` images, ``labels/<stem>.png``
the teacher's prediction as class-index PNGs), the given annotations as index PNGs under ``annotations/``
(``ignore_index`` kept as it is), and ``samples.json`` with the audit's numbers per sample and the classes.

Load it in FiftyOne (not a dependency of nlkd)::

    import json, os
    import fiftyone as fo

    root = "OUT/fiftyone"
    ds = fo.Dataset.from_dir(dataset_dir=root, dataset_type=fo.types.ImageSegmentationDirectory,
                             label_field="prediction")
    meta = json.load(open(os.path.join(root, "samples.json")))
    ds.default_mask_targets = {int(k): v for k, v in meta["classes"].items()}
    for sample in ds:
        row = meta["samples"][os.path.basename(sample.filepath)]
        sample["annotation"] = fo.Segmentation(mask_path=os.path.join(root, row["annotation"]))
        for key in ("id", "rank", "quality", "bf", "iou", "confidence"):
            sample["nlkd_" + key] = row[key]
        sample.save()
    view = ds.sort_by("nlkd_rank")  # worst annotation first
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from nlkd.audit.exports.queue import RelabelItem
from nlkd.data.info import DatasetInfo
from nlkd.io import atomic_write_text, write_mask

__all__ = ["FiftyOneWriter"]


def _number(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


class FiftyOneWriter:
    """Fills ``folder`` item by item; :meth:`close` writes ``samples.json``."""

    def __init__(self, folder: Path, info: DatasetInfo) -> None:
        self.folder, self.info = Path(folder), info
        self.samples: dict[str, dict] = {}
        for sub in ("data", "labels", "annotations"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    def add(self, item: RelabelItem) -> None:
        image = f"{item.stem}{item.image_path.suffix.lower()}"
        shutil.copyfile(item.image_path, self.folder / "data" / image)
        write_mask(self.folder / "labels" / f"{item.stem}.png", item.prediction)
        write_mask(self.folder / "annotations" / f"{item.stem}.png", item.annotation)
        self.samples[image] = {
            "id": item.id,
            "rank": item.rank,
            "quality": _number(item.quality),
            "bf": _number(item.bf),
            "iou": _number(item.iou),
            "confidence": round(item.confidence, 6),
            "prediction": f"labels/{item.stem}.png",
            "annotation": f"annotations/{item.stem}.png",
        }

    def close(self) -> None:
        meta = {
            "classes": {str(c): name for c, name in enumerate(self.info.class_names)},
            "ignore_index": self.info.ignore_index,
            "samples": self.samples,
        }
        atomic_write_text(self.folder / "samples.json", json.dumps(meta, indent=1) + "\n")
