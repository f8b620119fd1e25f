"""Progress over a long loop: a bar on a terminal, one summary line anywhere else.

Off a terminal (CI, ``> log 2>&1``, a scheduler) a progress bar writes carriage-return redraws that fill
log files; there :func:`progress` draws nothing and, when the loop ends, writes one line instead::

    auditing: 625 batches in 41.2 s

Every loop of nlkd that shows progress goes through here (``nlkd train`` prints one line per epoch of
its own and asks for no summary).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Generic, TextIO, TypeVar

from tqdm import tqdm

__all__ = ["is_terminal", "progress"]

T = TypeVar("T")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: ``sys.stderr``, where bars go) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class progress(Generic[T]):
    """Iterate over ``items``; on a terminal under a progress bar, elsewhere silently and then one line
    ``"{desc}: {n} {unit}s in {seconds} s"`` on ``file`` (default ``sys.stderr``) when the loop ends.

    Args:
        items: what to loop over.
        desc: what the loop does ("auditing", "teacher maps").
        unit: what one item is ("batch", "mask"); pluralised in English.
        total: the number of items when ``items`` has no ``len``.
        show: ``False`` shows nothing at all (e.g. on every process but the first).
        summary: ``False`` leaves out the closing line off a terminal.
        file: where bar and line go.

    ``set_postfix(**values)`` shows values beside the bar (nothing off a terminal).
    """

    def __init__(
        self,
        items: Iterable[T],
        desc: str,
        *,
        unit: str = "it",
        total: int | None = None,
        show: bool = True,
        summary: bool = True,
        file: TextIO | None = None,
    ) -> None:
        self.items, self.desc, self.unit, self.summary = items, desc, unit, summary
        self.file = sys.stderr if file is None else file
        self.bar = None
        if show and is_terminal(self.file):
            self.bar = tqdm(items, desc=desc, unit=unit, total=total, leave=False, file=self.file)
        self.quiet = not show

    def __iter__(self) -> Iterator[T]:
        if self.bar is not None:
            yield from self.bar
            return
        start, n = time.perf_counter(), 0
        for item in self.items:
            n += 1
            yield item
        if self.summary and not self.quiet and n:
            seconds = time.perf_counter() - start
            print(f"{self.desc}: {n} {_plural(self.unit, n)} in {seconds:.1f} s", file=self.file)

    def set_postfix(self, **values: object) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values)


def _plural(unit: str, n: int) -> str:
    return unit if n == 1 else unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")
