"""``python -m nlkd`` (and ``torchrun -m nlkd``) runs the CLI."""

import sys

from nlkd.cli import main

sys.exit(main())
