"""README.md's Python examples run as written: every ```python block, each in a fresh namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_readme_has_python_examples() -> None:
    assert BLOCKS, f"no ```python block found in {README}"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index: int) -> None:
    code = compile(BLOCKS[index], f"{README.name}, python block {index + 1}", "exec")
    exec(code, {"__name__": f"readme_block_{index + 1}"})  # a NameError or failing call fails the test


def test_readme_dataset_yaml_example_is_read_as_written(tmp_path: Path) -> None:
    """The README's ``dataset.yaml`` example (its ```yaml block) is a valid file for every command."""
    from nlkd.data.info import load_dataset_info

    (block,) = re.findall(r"^```yaml\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    (tmp_path / "dataset.yaml").write_text(block)
    info = load_dataset_info(tmp_path)
    assert (info.num_classes, info.ignore_index) == (3, 255)
    assert len(info.class_names) == len(info.palette) == 3
