"""Train the noise benchmark's runs as plain ``nlkd train`` processes, ``jobs`` at a time.

Each run is the printed ``nlkd train --config <scale>.yaml --set ... --out RUN --resume`` command, run
as a child process (its output appended to ``RUN/output.log``, beside the ``RUN/train.log`` it writes),
so a killed benchmark leaves every run resumable from its last finished epoch; the children are asked to
end with their parent (Linux), and ``RUN/.bench_pid`` keeps a second benchmark process from training the
same run at the same time. Finished runs are skipped, a run another table under ``DIR`` finished is
linked (same ``run_key``), and ``--adopt`` links runs trained elsewhere at the same config. Students start
once their teacher (the baseline of the same labels and seed) has finished.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlkd.config import TrainConfig, config_to_dict, load_config
from nlkd.errors import NLKDError
from nlkd.reproduce.cells import Cell, TablePlan
from nlkd.reproduce.results import finished_record
from nlkd.reproduce.reuse import find_twin, reuse_run
from nlkd.reproduce.scales import Log, Setup, cell_config

__all__ = ["Job", "adopt_key", "adopt_runs", "plan_jobs", "run_jobs", "running_elsewhere"]

PID_FILE = ".bench_pid"
_IRRELEVANT = ("out", "threads", "device", "keep_epochs", "init_from")  # cannot change a run's numbers


@dataclass
class Job:
    """One training run: a cell at one seed, its config and its ``nlkd train`` command."""

    cell: Cell
    seed: int
    cfg: TrainConfig
    command: str

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def finished(self) -> bool:
        return finished_record(self.out, self.cfg.epochs) is not None


def plan_jobs(setup: Setup, plan: TablePlan, cells: Sequence[Cell], seeds: Sequence[int]) -> list[Job]:
    """The runs of ``cells`` for every seed, seed by seed (teachers first within a seed)."""
    from nlkd.reproduce.train_command import train_command

    jobs = []
    for seed in seeds:
        for cell in cells:
            cfg = cell_config(setup, plan, cell, seed)
            jobs.append(Job(cell, seed, cfg, train_command(setup.scale.config_path, cfg)))
    return jobs


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"nlkd" in cmdline.read_bytes()


def running_elsewhere(job: Job) -> int | None:
    """The pid of a live process (of another benchmark) training ``job``'s run, or None."""
    path = job.out / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start(job: Job) -> subprocess.Popen[bytes]:
    """Start ``job``'s ``nlkd train`` in this Python, with this nlkd first on the path."""
    import nlkd

    job.out.mkdir(parents=True, exist_ok=True)
    src = str(Path(nlkd.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    if job.cfg.threads:
        env["OMP_NUM_THREADS"] = str(job.cfg.threads)
    argv = [sys.executable, "-m", "nlkd", *shlex.split(job.command)[1:]]
    with open(job.out / "output.log", "ab") as log:
        log.write(f"$ {job.command}\n".encode())
        log.flush()
        linux = sys.platform.startswith("linux")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent if linux else None)  # fmt: skip
    (job.out / PID_FILE).write_text(f"{proc.pid}\n")
    return proc


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return lines[-1] if lines else "no output"


def run_jobs(
    setup: Setup,
    jobs: Sequence[Job],
    n_parallel: int,
    log: Log = print,
    *,
    reuse: bool = True,
    on_finish: Callable[[], Any] = lambda: None,
    adopt: Callable[[Sequence[Job]], int] | None = None,
) -> list[str]:
    """Train the unfinished ``jobs``, ``n_parallel`` at a time, teachers before their students; call
    ``on_finish`` after each run ends. Just before a run would start, ``adopt([job])`` may link a run
    finished elsewhere instead (e.g. :func:`adopt_runs` over a setting search that is still going).
    Returns one line per failed or blocked run."""
    pending, running = list(jobs), {}
    by_key = {(j.cell.slug, j.seed): j for j in jobs}
    failures: list[str] = []
    failed: set[tuple[str, int]] = set()
    try:
        while pending or running:
            started = False
            for job in list(pending):
                if len(running) >= n_parallel:
                    break
                teacher = by_key.get((job.cell.teacher, job.seed)) if job.cell.teacher else None
                if job.finished():
                    pending.remove(job)
                elif job.cell.teacher is not None and (job.cell.teacher, job.seed) in failed:
                    pending.remove(job)
                    failed.add((job.cell.slug, job.seed))
                    failures.append(f"{job.cell.slug} seed {job.seed}: not run, its teacher {job.cell.teacher} failed")
                elif teacher is not None and not teacher.finished():
                    continue  # waits for its teacher
                elif (pid := running_elsewhere(job)) is not None:
                    pending.remove(job)
                    log(f"== {job.cell.slug} seed {job.seed}: being trained by process {pid}, skipped")
                elif adopt is not None and adopt([job]):
                    pending.remove(job)
                elif reuse and (twin := find_twin(setup, job.cfg)) is not None:
                    pending.remove(job)
                    reuse_run(twin, job.cfg)
                    log(f"== {job.cell.slug} seed {job.seed}: same run as {twin}, reused")
                else:
                    pending.remove(job)
                    log(f"== {job.cell.slug} seed {job.seed}: {job.cell.row}\n   {job.command}")
                    running[(job.cell.slug, job.seed)] = (_start(job), job)
                    started = True
            if not running and not started and pending:
                for job in pending:
                    failures.append(f"{job.cell.slug} seed {job.seed}: not run, teacher {job.cell.teacher} unfinished")
                break
            time.sleep(0.5 if running else 0)
            for key, (proc, job) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[key]
                (job.out / PID_FILE).unlink(missing_ok=True)
                if proc.returncode != 0 or not job.finished():
                    failed.add(key)
                    why = _last_line(job.out / "output.log")
                    failures.append(f"{job.cell.slug} seed {job.seed}: exit {proc.returncode}: {why}")
                    log(f"!! {job.cell.slug} seed {job.seed} failed ({job.out / 'output.log'}): {why}")
                else:
                    log(f"== {job.cell.slug} seed {job.seed}: finished")
                on_finish()
    finally:
        for proc, job in running.values():  # interrupted: stop the children, they resume next time
            proc.terminate()
            proc.wait()
            (job.out / PID_FILE).unlink(missing_ok=True)
    return failures


# ----------------------------------------------------------------------------- adopting runs


def _default_encoder(model: str) -> str | None:
    import inspect

    from nlkd.models import registry

    factory = registry._REGISTRY.get(model)  # the factory's default is the model's truth
    if factory is None:
        return None
    param = inspect.signature(factory).parameters.get("encoder")
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def adopt_key(cfg: TrainConfig) -> str:
    """What makes a run trained elsewhere the same run as a cell's: :func:`run_key` without the settings
    that cannot change the numbers (threads, device), the encoder resolved to the model's default, and a
    teacher named by its own run's key."""
    d = config_to_dict(cfg)
    for key in _IRRELEVANT:
        d.pop(key)
    d["data"].pop("num_workers")
    if d["model"]["encoder"] is None:
        d["model"]["encoder"] = _default_encoder(d["model"]["name"])
    teacher = d["strategy"]["teacher"]
    if teacher is not None and (Path(teacher).parent / "config.yaml").is_file():
        d["strategy"]["teacher"] = {"run": adopt_key(load_config(Path(teacher).parent / "config.yaml"))}
    return json.dumps(d, sort_keys=True)


def adopt_runs(jobs: Sequence[Job], source: Path, log: Log = print) -> int:
    """Link finished runs found under ``source`` (folders with ``config.yaml`` and ``metrics.jsonl``, up
    to three levels down) into the unfinished jobs they equal (:func:`adopt_key`). Returns the count."""
    found: dict[str, list[Path]] = {}
    for depth in ("*", "*/*", "*/*/*"):
        for path in sorted(source.glob(f"{depth}/config.yaml")):
            try:
                found.setdefault(adopt_key(load_config(path)), []).append(path.parent)
            except NLKDError:
                continue
    adopted = 0
    for job in jobs:
        if job.finished():
            continue
        for folder in found.get(adopt_key(job.cfg), []):
            if finished_record(folder, job.cfg.epochs) is not None:
                reuse_run(folder, job.cfg)
                log(f"== {job.cell.slug} seed {job.seed}: adopted {folder}")
                adopted += 1
                break
    return adopted
