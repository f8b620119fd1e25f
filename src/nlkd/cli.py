"""The ``nlkd`` command. Each sub-command lives in ``nlkd/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func=run`` (``run(args) -> int``).

User-fixable problems (:class:`nlkd.errors.NLKDError`, and ``OSError`` such as a full disk) print one
line on stderr and exit with 2; so do argparse's own errors (a missing or malformed option), without the
usage block (:class:`OneLineParser`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

import nlkd.commands
from nlkd import __version__
from nlkd.errors import NLKDError

__all__ = ["OneLineParser", "build_parser", "main"]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``nlkd <command>: error: <message> (see ... --help)``,
    exit 2. Sub-command parsers are of the same class (argparse makes them of their parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="nlkd",
        description="Train segmentation models on coarse/noisy annotations (NLKD) and find the bad ones.",
    )
    parser.add_argument("--version", action="version", version=f"nlkd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(nlkd.commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"nlkd.commands.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the sub-command's parser, so that the line names the command
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except NLKDError as e:
        print(f"nlkd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # full disk, permission denied, missing output folder: one line, not a traceback
        print(f"nlkd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nlkd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
