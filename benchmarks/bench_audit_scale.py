"""Peak memory of ``nlkd audit`` as the data set grows: it must stay flat (the audit streams).

Run from the repository root (at nice 19 on a shared machine)::

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/bench_audit_scale.py --sizes 200 1000 5000

For each size N it writes a synthetic data set of N training images (``nlkd synth``'s generator at
``--height``×``--width``, default 32×48; half the masks dilated/eroded), and audits it with one teacher (a
one-epoch U-Net, resnet18 encoder, trained once on 16 images) in a fresh process: ``nlkd audit --data ROOT
--labels train_coarse --top 8``, everything the command writes included (scores.csv, gallery, figures,
report.html, the streamed progress.csv). That process reports

* **peak RSS during the audit**: the resident-set high-water mark (``VmHWM``; the whole process: Python,
  torch, the model, the loader), restarted after the imports through ``/proc/self/clear_refs`` so that
  the imports' own peak does not hide the audit's (elsewhere: ``ru_maxrss`` of the whole process), next
  to the RSS just before the audit;
* **Python peak**: ``tracemalloc``'s peak of memory allocated by Python during the audit (ids, paths,
  the table, the CSV text; tensors' storage is not Python's and shows in the RSS only), with the modules
  the audit imports on first use loaded before;
* seconds of the audit and the size of ``progress.csv``.

Prints a markdown table, the command and the machine. ``--quick`` audits 20 and 40 images (seconds, for
the tests; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _load() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _status_mb(field: str) -> float | None:
    """``VmRSS`` (now) or ``VmHWM`` (high-water) of this process in MB from /proc (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Restart the high-water mark at the current RSS (Linux >= 4.0: ``5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_mb() -> float:
    """This process's resident-set high-water mark in MB (Linux reports kB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


#: what ``nlkd audit`` imports lazily (models, figures, detection metrics): loaded before measuring, so
#: that the Python peak is the audit's data, not module code
_HEAVY = ("nlkd.audit", "nlkd.audit.report", "nlkd.checkpoint", "nlkd.models", "sklearn.metrics", "matplotlib.pyplot")


def child(argv: list[str]) -> int:
    """In a fresh process: import, note the RSS high-water, run ``nlkd audit argv`` under tracemalloc,
    print one JSON line with the numbers."""
    import importlib
    import tracemalloc

    from nlkd.cli import main

    for module in _HEAVY:  # imported on first use by the audit: import them here, outside the measurement
        importlib.import_module(module)
    imports_peak = _maxrss_mb()
    reset = _reset_peak()
    before = _status_mb("VmRSS") if reset else None
    tracemalloc.start()
    t0 = time.perf_counter()
    code = main(["audit", *argv])
    seconds = time.perf_counter() - t0
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    record = {
        "code": code,
        "seconds": seconds,
        "imports_peak_mb": imports_peak,
        "rss_before_mb": before if before is not None else imports_peak,
        "rss_peak_mb": (_status_mb("VmHWM") if reset else None) or _maxrss_mb(),
        "peak_reset": reset,
        "python_peak_mb": python_peak / (1 << 20),
    }
    print("RESULT " + json.dumps(record))
    return code


def make_teacher(work: Path, size: tuple[int, int]) -> Path:
    """A one-epoch U-Net (resnet18 encoder) trained on 16 synthetic images: a teacher, not a good one."""
    from nlkd.config import TrainConfig
    from nlkd.data.synth import make_synthetic
    from nlkd.train import train

    data = make_synthetic(work / "teacher_data", seed=0, n_train=16, n_val=4, n_test=4, size=size)
    cfg = TrainConfig(epochs=1, batch_size=4, seed=0, out=str(work / "teacher"), device="cpu")
    cfg.data.root, cfg.data.labels, cfg.data.size = str(data), "train_coarse", list(size)
    cfg.model.encoder = "resnet18"
    train(cfg, log=lambda *a, **k: None)
    return work / "teacher" / "last.pt"


def audit_once(work: Path, n: int, size: tuple[int, int], teacher: Path, batch_size: int) -> dict:
    """Write an N-image data set, audit it in a fresh process, return that process's numbers."""
    from nlkd.data.synth import make_synthetic

    data = make_synthetic(work / f"data_{n}", seed=1, n_train=n, n_val=0, n_test=0, size=size)
    out = work / f"audit_{n}"
    args = ["--checkpoint", str(teacher), "--data", str(data), "--labels", "train_coarse", "--out", str(out)]
    args += ["--device", "cpu", "--batch-size", str(batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env, check=False
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"bench_audit_scale: the audit of {n} images failed:\n{proc.stderr[-2000:]}")
    record = json.loads(line[len("RESULT ") :])
    record["n"] = n
    record["progress_kb"] = (out / "progress.csv").stat().st_size / 1024
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000], help="images per data set")
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="20 and 40 images (seconds; for the tests)")
    args = parser.parse_args(argv)
    sizes = [20, 40] if args.quick else args.sizes
    size = (args.height, args.width)
    load = _load()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        teacher = make_teacher(work, size)
        rows = [audit_once(work, n, size, teacher, args.batch_size) for n in sizes]
    import torch

    print(f"Command: `python {' '.join([os.path.relpath(__file__), *argv])}`\n")
    print(
        f"Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} logical CPUs; Python "
        f"{platform.python_version()}; torch {torch.__version__}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; load average at start {load}\n"
    )
    print(f"Data: synthetic {size[0]}x{size[1]}, train_coarse (half dilated/eroded); teacher: 1-epoch U-Net resnet18\n")
    header = ("images", "audit seconds", "RSS before the audit MB", "peak RSS during the audit MB", "growth MB")
    print("| " + " | ".join([*header, "Python peak MB", "progress.csv KB"]) + " |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']} | {r['seconds']:.1f} | {r['rss_before_mb']:.1f} | {r['rss_peak_mb']:.1f} | "
            f"{r['rss_peak_mb'] - r['rss_before_mb']:.1f} | {r['python_peak_mb']:.2f} | {r['progress_kb']:.0f} |"
        )
    first, last = rows[0], rows[-1]
    how = (
        "high-water mark restarted after the imports (/proc/self/clear_refs)"
        if all(r["peak_reset"] for r in rows)
        else "ru_maxrss over the whole process (imports included)"
    )
    print(f"\nPeak RSS: {how}; imports alone peaked at {max(r['imports_peak_mb'] for r in rows):.0f} MB.")
    print(
        f"\nFrom {first['n']} to {last['n']} images ({last['n'] / first['n']:.0f}x): peak RSS "
        f"{last['rss_peak_mb'] / first['rss_peak_mb']:.2f}x, Python peak "
        f"{last['python_peak_mb'] / max(first['python_peak_mb'], 1e-9):.2f}x."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
