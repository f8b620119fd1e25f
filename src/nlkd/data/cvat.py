"""CVAT's "Segmentation mask 1.1" format: the class table ``labelmap.txt``.

An export (a zip or its unpacked folder) holds::

    labelmap.txt                          # label:color_rgb:parts:actions, one class per line
    SegmentationClass/<name>.png          # RGB colour mask, colours from labelmap.txt
    SegmentationObject/<name>.png         # instance colours (not used by nlkd)
    ImageSets/Segmentation/default.txt    # the image names, one per line, without extension
    JPEGImages/<name>.jpg                 # only in exports "with images"

``labelmap.txt`` lines look like ``car:255,0,0::``; ``#`` starts a comment. A class's index is its line's
position among the label lines (CVAT writes ``background:0,0,0::`` first).
"""

from __future__ import annotations

import os
from pathlib import Path

from nlkd.errors import DataError

__all__ = ["CVAT_LABELMAP", "format_cvat_labelmap", "parse_cvat_labelmap", "read_cvat_labelmap"]

RGB = tuple[int, int, int]
CVAT_LABELMAP = "labelmap.txt"  # the class table's file name inside an export


def parse_cvat_labelmap(text: str, source: str = CVAT_LABELMAP) -> list[tuple[str, RGB]]:
    """``[(name, (r, g, b)), ...]`` in file order from the text of a ``labelmap.txt``.

    Raises :class:`DataError` naming ``source`` and the line for a malformed line, a colour outside
    0..255, or a name or colour given twice.

    >>> parse_cvat_labelmap("# label:color_rgb:parts:actions\\nbackground:0,0,0::\\ncar:255,0,0::\\n")
    [('background', (0, 0, 0)), ('car', (255, 0, 0))]
    """
    table: list[tuple[str, RGB]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        parts = rest.split(":")[0].split(",")
        try:
            colour = tuple(int(v) for v in parts)
        except ValueError:
            colour = ()
        if not sep or not name or len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
            raise DataError(f"{source}: line {number}: expected 'name:R,G,B::' with R, G, B in 0..255, got {line!r}")
        for other, other_colour in table:
            if other == name or other_colour == colour:
                raise DataError(f"{source}: line {number}: {name!r} {colour} repeats the name or colour of {other!r}")
        table.append((name, colour))  # type: ignore[arg-type]
    if not table:
        raise DataError(f"{source}: no labels (expected lines 'name:R,G,B::')")
    return table


def read_cvat_labelmap(path: str | os.PathLike[str]) -> list[tuple[str, RGB]]:
    """The class table of a ``labelmap.txt`` file (see :func:`parse_cvat_labelmap`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (a CVAT 'Segmentation mask 1.1' export has one)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    return parse_cvat_labelmap(text, str(path))


def format_cvat_labelmap(table: list[tuple[str, RGB]]) -> str:
    """The text of a ``labelmap.txt`` for ``[(name, (r, g, b)), ...]`` (what :func:`parse_cvat_labelmap` reads).

    >>> format_cvat_labelmap([("background", (0, 0, 0)), ("car", (255, 0, 0))]).splitlines()[1:]
    ['background:0,0,0::', 'car:255,0,0::']
    """
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in table]
    return "\n".join(lines) + "\n"
