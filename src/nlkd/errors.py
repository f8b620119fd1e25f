"""User-facing errors: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "NLKDError"]


class NLKDError(Exception):
    """A problem the user can fix (bad input, bad option). Printed as one line, exit code 2."""


class DataError(NLKDError, ValueError):
    """A data file is missing, unreadable or malformed. The message names the file and the problem."""


class ConfigError(NLKDError, ValueError):
    """A configuration key or value is invalid. The message names the key and what was expected."""
