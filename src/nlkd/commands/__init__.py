"""Sub-commands of the ``nlkd`` CLI, discovered by name; see :mod:`nlkd.cli`."""
