"""User-facing errors: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["ConfigError", "DataError", "NLKDError", "did_you_mean"]


class NLKDError(Exception):
    """A problem the user can fix (bad input, bad option). Printed as one line, exit code 2."""


class DataError(NLKDError, ValueError):
    """A data file is missing, unreadable or malformed. The message names the file and the problem."""


class ConfigError(NLKDError, ValueError):
    """A configuration key or value is invalid. The message names the key and what was expected."""


def did_you_mean(name: object, valid: Iterable[str], n: int = 1) -> str:
    """``" (did you mean 'nlkd'?)"`` for the up to ``n`` valid names closest to ``name`` (case-insensitive),
    or ``""`` when none is close: the hint every unknown-name error appends.

    >>> did_you_mean("nlk", ["baseline", "nlkd", "reweight"])
    " (did you mean 'nlkd'?)"
    >>> did_you_mean("xyz", ["baseline", "nlkd"])
    ''
    """
    by_lower = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=n)
    return f" (did you mean {', '.join(repr(by_lower[c]) for c in close)}?)" if close else ""
