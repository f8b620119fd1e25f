"""Data sets: the synthetic default, folder data sets, validation, transforms."""
