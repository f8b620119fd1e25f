"""What a user should hear about their data before trusting a result: warnings, not errors.

Every command that reads a data set (validate, corrupt, train, eval, score, audit) says them through
:func:`data_warnings`, so one mistake gets one message wherever it is met:

- an ignore index that is also a class index (3 with 6 classes): that class is neither learned nor scored;
- files in a split's folders that are not read (a .gif among the images, a mask saved as .jpg).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from nlkd.data.folder import scan_folder
from nlkd.data.info import DatasetInfo
from nlkd.io import IMAGE_EXTENSIONS

__all__ = ["data_warnings", "ignore_index_warning", "print_warnings", "skipped_files_warning"]

_SHOWN = 5  # skipped files named in the message; the rest are counted


def ignore_index_warning(num_classes: int, ignore_index: int | None) -> str | None:
    """A warning when ``ignore_index`` is also a class index (``0 <= ignore_index < num_classes``), else None.

    Such data validates (every value is allowed) but one class is silently never learned nor scored.

    >>> ignore_index_warning(6, 255) is None
    True
    >>> ignore_index_warning(6, 3)[:44]
    'ignore_index 3 is also a class index (0..5):'
    """
    if ignore_index is None or not 0 <= ignore_index < num_classes:
        return None
    return (
        f"ignore_index {ignore_index} is also a class index (0..{num_classes - 1}): class {ignore_index} will be "
        f"neither learned nor scored; if {ignore_index} marks unlabelled pixels, check num_classes, else choose "
        f"an ignore_index outside 0..{num_classes - 1} (e.g. 255)"
    )


def skipped_files_warning(folder: Path, skipped: list[Path]) -> str | None:
    """``"<folder>: skipping 2 files ...: a.gif, b.txt"`` for files of a split that are not read, else None."""
    if not skipped:
        return None
    shown = ", ".join(p.name for p in skipped[:_SHOWN])
    more = f", ... ({len(skipped)} in all)" if len(skipped) > _SHOWN else ""
    n = len(skipped)
    return (
        f"{folder}: skipping {n} file{'s' if n != 1 else ''} that {'are' if n != 1 else 'is'} not read (images: "
        f"{'/'.join(IMAGE_EXTENSIONS)}; masks: .png): {shown}{more}"
    )


def data_warnings(
    info: DatasetInfo,
    root: str | os.PathLike[str],
    splits: Iterable[tuple[str, str | None]] = (),
    data_format: str = "folder",
) -> list[str]:
    """The warnings about a data set: its ignore index (``info``), then the files each ``(split, labels)``
    of the folder layout at ``root`` leaves out (other layouts list their own files)."""
    lines = [ignore_index_warning(info.num_classes, info.ignore_index)]
    if data_format == "folder":
        for split, labels in splits:
            by_folder: dict[Path, list[Path]] = {}
            for path in scan_folder(root, split, labels).skipped:
                by_folder.setdefault(path.parent, []).append(path)
            lines.extend(skipped_files_warning(folder, paths) for folder, paths in by_folder.items())
    return [line for line in lines if line is not None]


def print_warnings(command: str, lines: Iterable[str]) -> None:
    """Each line as ``nlkd COMMAND: warning: LINE`` on stderr."""
    for line in lines:
        print(f"nlkd {command}: warning: {line}", file=sys.stderr)
