"""The shape of the package, checked on its source: no function over 80 lines, no import cycle between nlkd's
modules, the run-time helpers taken from ``nlkd.runtime`` (not ``nlkd.train``), no checkpoint read that
unpickles objects, ``StepInputs`` built by keyword. Each checker is also shown to catch what it forbids."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from nlkd.strategies import StepInputs

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_FUNCTION_LINES = 80
RUNTIME_NAMES = {"Distributed", "dataset_info", "resolve_device", "setup_distributed"}


def long_functions(package: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:line name (N lines)`` of every function or method under ``package`` longer than ``limit``
    lines (decorators not counted, docstring counted)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name} ({n} lines)")
    return found


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported (or read by a type checker): the module's own statements
    and those inside its top-level ``if``/``try`` blocks (``TYPE_CHECKING``, fallbacks); not in functions."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If | ast.Try):
            todo += node.body + node.orelse + getattr(node, "finalbody", [])
            todo += [s for h in getattr(node, "handlers", []) for s in h.body]
    return found


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports at module level (``from a import b`` names the
    module ``a.b`` when there is one, else ``a``)."""
    files = {_module_name(p, src): p for p in (src / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of ``graph``: one per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_function_in_src_is_over_80_lines() -> None:
    assert long_functions(SRC / "nlkd") == []


def test_the_length_check_finds_a_long_function(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (pkg / "m.py").write_text(f"def short():\n    return 1\n\n\nclass A:\n    def long(self):\n{body}\n")
    assert long_functions(pkg) == [f"pkg/m.py:6 long ({MAX_FUNCTION_LINES + 1} lines)"]


def test_no_import_cycle_between_nlkd_modules() -> None:
    graph = import_graph(SRC, "nlkd")
    assert "nlkd.checkpoint" in graph["nlkd.train"]  # the graph is read (a sanity check of the reader)
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from ..c import C\nB = 1\n")
    (pkg / "c.py").write_text("import pkg.a\n\n\ndef f():\n    from pkg import d  # in a function: lazy\nC = 1\n")
    (pkg / "d.py").write_text("from pkg.c import C\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.c"}
    assert import_cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_runtime_helpers_are_not_taken_from_train() -> None:
    """resolve_device, dataset_info and the distributed set-up live in nlkd.runtime; train only uses them."""
    wrong = []
    for folder in ("src", "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for node in ast.walk(ast.parse(text)) if "nlkd.train" in text else ():
                if isinstance(node, ast.ImportFrom) and node.module == "nlkd.train":
                    wrong += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names if a.name in RUNTIME_NAMES]
    assert wrong == []


def test_no_checkpoint_is_read_with_weights_only_false() -> None:
    """Every ``torch.load`` in src/ and benchmarks/ reads plain values only (a pickled object is refused)."""
    calls = []
    for folder in ("src", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for node in ast.walk(ast.parse(text)) if "weights_only" in text else ():
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load":
                    kw = {k.arg: k.value for k in node.keywords}
                    if "weights_only" in kw and not (
                        isinstance(kw["weights_only"], ast.Constant) and kw["weights_only"].value is True
                    ):
                        calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls == []


def test_step_inputs_are_built_by_keyword() -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(TypeError):
        StepInputs(torch.arange(1), target, [], [], 0, 0, 1)  # type: ignore[misc]
    step = StepInputs(index=torch.arange(1), target=target, logits=[], losses=[], epoch=0, step=0, steps_per_epoch=1)
    assert step.teacher_scores is None and step.extras == {}


def test_ddp_is_unwrapped_in_one_place() -> None:
    """``.module`` (the network inside DistributedDataParallel / DataParallel) is read by ``models.unwrap`` only."""
    readers = []
    for path in sorted((SRC / "nlkd").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)) if ".module" in text else ():
            if isinstance(node, ast.Attribute) and node.attr == "module":
                readers.append(path.relative_to(SRC).as_posix())
    assert readers == ["nlkd/models/registry.py"]
