"""nlkd.reproduce / ``nlkd reproduce``: the cells of every table, data preparation, a tiny
Table 2 grid end to end (interrupted, resumed, re-run without training), reports and dry runs."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from nlkd import cli
from nlkd import reproduce as experiments
from nlkd.commands.reproduce import train_command
from nlkd.config import apply_overrides, config_to_dict, load_config, parse_set
from nlkd.data.folder import list_pairs
from nlkd.errors import ConfigError, DataError
from nlkd.noise import corrupt_dataset, load_manifest
from nlkd.reproduce import (
    PAPER,
    TABLES,
    build_table,
    cell_config,
    make_setup,
    plan_table,
    prepare_data,
    render_markdown,
    run_table,
    select_cells,
)
from nlkd.reproduce.stats import paired_gain

SMALL = {"data.size": [32, 48], "batch_size": 4, "device": "cpu"}
FAST = {**SMALL, "model.encoder": "mobilenet_v2"}  # half the time and checkpoint size of resnet18
ARGS = ["--epochs", "1", "--set", "data.size=[32, 48]", "--set", "batch_size=4", "--set", "device=cpu"]


def _quiet(*_: object, **__: object) -> None:
    pass


@pytest.fixture(scope="module")
def data(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the tiny data set: the grid writes label folders into its data root."""
    root = tmp_path_factory.mktemp("reproduce") / "data"
    shutil.copytree(tiny_data, root)
    return root


def _cells(name: str, root: Path, scale: str = "cpu", **kw: object) -> list[tuple]:
    """(slug, strategy, labels, teacher) of each cell of table ``name``."""
    sc = experiments.SCALES[scale]
    plan = build_table(name, root=root, ratios=sc.ratios, teacher_model=sc.teacher_model, **kw)
    return [(c.slug, c.strategy, c.labels, c.teacher) for c in plan.cells]


def test_cell_lists_cpu_scale(tmp_path: Path) -> None:
    assert _cells("table1", tmp_path) == [
        ("clean-only", "baseline", "train_extra11_clean", None),
        ("baseline", "baseline", "train_extra11", None),
        ("fixed", "fixed", "train_extra11", None),
        ("nlkd", "nlkd", "train_extra11", "baseline"),
    ]
    t2 = _cells("table2", tmp_path)
    assert len(t2) == 4 * 6
    labels = {"r0": "train", "r10": "train_de10", "r30": "train_de30", "r50": "train_de50"}
    for r, lab in labels.items():
        assert [c for c in t2 if c[0].endswith(f"-{r}")] == [
            (f"baseline-{r}", "baseline", lab, None),
            *((f"reweight-{m}-{r}", "reweight", lab, f"baseline-{r}") for m in ("miou", "bf", "bfmiou")),
            *((f"nlkd-{m}-{r}", "nlkd", lab, f"baseline-{r}") for m in ("bf", "bfmiou")),
        ]
    assert _cells("table3", tmp_path) == [
        (f"{s}-{col}", s, lab, None if s == "baseline" else f"baseline-{col}")
        for col, lab in (("fine", "train"), ("de50", "train_de50"), ("poly50", "train_poly50"))
        for s in ("baseline", "nlkd")
    ]
    t4 = _cells("table4", tmp_path)
    assert [c[0] for c in t4] == ["unet-baseline", "teacher-ocrnet", "unet-nlkd-ocrnet", "teacher-pointrend",
                                  "unet-nlkd-pointrend", "deeplabv3plus-baseline", "deeplabv3plus-nlkd-ocrnet",
                                  "deeplabv3plus-nlkd-pointrend"]  # fmt: skip
    assert {c[2] for c in t4} == {"train_de50"}
    assert {c[0]: c[3] for c in t4 if c[1] == "nlkd"} == {
        f"{s}-nlkd-{t}": f"teacher-{t}" for s in ("unet", "deeplabv3plus") for t in ("ocrnet", "pointrend")
    }
    assert _cells("table5", tmp_path) == [
        ("baseline", "baseline", "train_de50", None),
        ("decoupling", "decoupling", "train_de50", None),
        ("coteaching", "coteaching", "train_de50", None),
        ("coteaching-plus", "coteaching_plus", "train_de50", None),
        ("teacher-deeplabv3plus", "baseline", "train_de50", None),
        ("nlkd", "nlkd", "train_de50", "teacher-deeplabv3plus"),
    ]


def test_cell_configs_models_and_strategy_options(data: Path, tmp_path: Path) -> None:
    setup = make_setup("cpu", data, tmp_path, overrides=SMALL)
    t4 = plan_table(setup, "table4")
    by = {c.slug: cell_config(setup, t4, c, 2) for c in t4.cells}
    assert by["teacher-ocrnet"].model.name == "ocrnet" and by["teacher-ocrnet"].model.encoder is None
    student = by["deeplabv3plus-nlkd-pointrend"]
    assert (student.model.name, student.strategy.name, student.seed) == ("deeplabv3plus", "nlkd", 2)
    assert student.strategy.teacher == str(tmp_path.resolve() / "table4/teacher-pointrend/seed2/last.pt")
    t5 = plan_table(setup, "table5")
    co = cell_config(setup, t5, t5.cells[2], 0)
    assert (co.strategy.name, co.strategy.peer_model, co.model.name) == ("coteaching", "deeplabv3plus", "unet")
    t1 = plan_table(setup, "table1")
    fixed = cell_config(setup, t1, t1.cells[2], 0).strategy
    assert (fixed.coarse_weight, fixed.coarse_list) == (0.5, str(data.resolve() / "splits/train_extra11.txt"))
    t3 = plan_table(setup, "table3")  # the tiny data set has no ignore label: polygon cells use 255
    assert [cell_config(setup, t3, c, 0).data.ignore_index for c in t3.cells] == [None] * 4 + [255] * 2


def test_paper_scale_teacher_is_pointrend_and_every_paper_number_has_a_cell(tmp_path: Path) -> None:
    t2 = _cells("table2", tmp_path, "paper")
    assert len(t2) == 6 * 7  # six ratios x (PointRend teacher + six rows)
    assert ("teacher-pointrend-r20", "baseline", "train_de20", None) in t2
    assert ("nlkd-bfmiou-r20", "nlkd", "train_de20", "teacher-pointrend-r20") in t2
    for name in TABLES:
        cells: set[tuple[str, str]] = set()
        for fmt in ("folder", "cityscapes") if name == "table3" else ("folder",):
            plan = build_table(name, root=tmp_path, ratios=experiments.SCALES["paper"].ratios,
                               teacher_model="pointrend", data_format=fmt)  # fmt: skip
            cells |= {(c.row, c.column) for c in plan.cells}
        assert set(PAPER[name]) <= cells, name


def test_paper_numbers_are_read_from_the_shipped_data_file() -> None:
    from nlkd.reproduce.paper import load_paper, parse_numbers

    numbers, notes, setting = load_paper()
    assert numbers == PAPER and {k: len(v) for k, v in PAPER.items()} == {
        "table1": 3, "table2": 6 * 6 - 4, "table3": 10, "table4": 6, "table5": 5,
    }  # fmt: skip
    assert PAPER["table2"][("reweight (BF)", "30 %")] == (85.99, 57.53)
    assert ("reweight (BF)", "0 %") not in PAPER["table2"]  # "-": the paper ran nothing there
    assert set(notes) == {"table1", "table2", "table3", "table5"} and "100 epochs" in setting
    with pytest.raises(ValueError, match="row 'r' has 1 values for 2 columns"):
        parse_numbers({"columns": ["a", "b"], "rows": {"r": ["1/2"]}})


def test_unregistered_strategy_is_left_out_with_a_note(tmp_path: Path) -> None:
    plan = build_table("table5", root=tmp_path, ratios=(), teacher_model=None,
                       registered=["baseline", "nlkd", "decoupling", "coteaching"])  # fmt: skip
    assert "coteaching-plus" not in [c.slug for c in plan.cells]
    assert any("coteaching_plus" in n and "not registered" in n for n in plan.notes)


def test_prepare_data_writes_once_checks_manifests_and_makes_the_clean_subset(data: Path, tmp_path: Path) -> None:
    setup = make_setup("cpu", data, tmp_path, overrides=SMALL)
    plan = plan_table(setup, "table1")
    prepare_data(setup, plan, log=_quiet)
    bad = load_manifest(data / "labels/train_extra11")["corrupted"]
    assert len(bad) == round(16 / 9)
    assert (data / "splits/train_extra11.txt").read_text().split() == bad
    clean = [s.id for s in list_pairs(data, "train_extra11_clean")]
    assert clean == sorted({s.id for s in list_pairs(data, "train")} - set(bad))
    prepare_data(setup, plan, log=_quiet)  # a second call changes nothing
    corrupt_dataset(data / "labels/train", data / "labels/train_de30", 0.3, "dilate_erode", seed=7)
    with pytest.raises(DataError, match=r"train_de30.*seed 7"):
        prepare_data(setup, plan_table(setup, "table2"), log=_quiet)
    shutil.rmtree(data / "labels/train_de30")


def test_train_command_reproduces_the_cell_config(data: Path, tmp_path: Path) -> None:
    setup = make_setup("cpu", data, tmp_path, epochs=3, overrides=SMALL)
    plan = plan_table(setup, "table4")
    cfg = cell_config(setup, plan, plan.cells[-1], 1)
    words = shlex.split(train_command(setup.scale.config_path, cfg))
    sets = [w.removeprefix("--set=") for w in words if w.startswith("--set=")]
    assert words[words.index("--config") + 1] == str(setup.scale.config_path)
    rebuilt = load_config(setup.scale.config_path, {**parse_set(sets), "out": words[words.index("--out") + 1]})
    assert rebuilt == cfg


def test_render_markdown_mean_std_paper_and_missing(tmp_path: Path) -> None:
    plan = build_table("table3", root=tmp_path, ratios=(), teacher_model=None)
    runs = [{"val_miou": 0.5, "val_bf": 0.25, "seed": 0}, {"val_miou": 0.7, "val_bf": 0.25, "seed": 2}]
    results = {"baseline-fine": runs, "nlkd-fine": [{"val_miou": 0.8, "val_bf": 0.5}]}
    text = render_markdown(plan, results, n_seeds=2, command="nlkd reproduce table3", settings="S")
    assert (
        "| baseline | fine | 60.00 ± 14.14 | 25.00 ± 0.00 | 87.10 | 60.01 | 2/2 | s0 50.00 / 25.00, s2 70.00 / 25.00 |"
        in text
    )
    assert "| NLKD | fine | 80.00 | 50.00 | 87.76 | 61.12 | 1/2 | 80.00 / 50.00 |" in text
    assert "| baseline | polygon 50 % | not run | not run | 59.79 | 34.01 | 0/2 |  |" in text
    assert "    nlkd reproduce table3" in text and "![table3](table3.png)" in text


def test_paired_gain_subtracts_the_baseline_run_of_the_same_seed() -> None:
    base = [{"val_miou": 0.40, "seed": 0}, {"val_miou": 0.50, "seed": 1}]
    runs = [{"val_miou": 0.43, "seed": 0}, {"val_miou": 0.52, "seed": 1}, {"val_miou": 0.9, "seed": 2}]
    mean, sd = paired_gain(runs, base, "val_miou")
    assert mean == pytest.approx(2.5) and sd == pytest.approx(0.7071, abs=1e-4)  # seed 2 has no baseline
    assert paired_gain(runs[2:], base, "val_miou") is None


def test_pooled_gains_pair_runs_by_ratio_and_seed_and_pool_them(tmp_path: Path) -> None:
    plan = build_table("table2", root=tmp_path, ratios=(0.1, 0.5), teacher_model=None)

    def runs(*pairs: tuple[int, float, float]) -> list[dict]:
        return [{"seed": k, "val_miou": m, "val_bf": b} for k, m, b in pairs]

    results = {
        "baseline-r10": runs((0, 0.40, 0.30), (1, 0.50, 0.30)),
        "baseline-r50": runs((0, 0.30, 0.20)),
        "nlkd-bfmiou-r10": runs((0, 0.42, 0.31), (1, 0.49, 0.33), (2, 0.90, 0.90)),  # seed 2: no baseline
        "nlkd-bfmiou-r50": runs((0, 0.33, 0.26)),
        "reweight-bf-r50": runs((1, 0.99, 0.99)),  # no baseline of seed 1 at 50 %: no pair at all
    }
    lines = experiments.pooled_gains(plan, results)
    # mIoU gains +2, -1, +3 -> mean +1.33, sd 2.08; BF gains +1, +3, +6 -> +3.33 ± 2.52
    assert "| NLKD (BFmIoU) | 10 %, 50 % | 3 | +1.33 ± 2.08 | +3.33 ± 2.52 | 2/3 |" in lines
    assert not any(line.startswith("| reweight") for line in lines)
    text = render_markdown(plan, results, n_seeds=3, command="c", settings="S")
    assert "| NLKD (BFmIoU) | 10 %, 50 % | 3 |" in text
    assert experiments.pooled_gains(plan, {}) == []
    table3 = build_table("table3", root=tmp_path, ratios=(), teacher_model=None)
    assert "pooled" not in render_markdown(table3, results, n_seeds=3, command="c", settings="S")


@pytest.fixture(scope="module")
def grid(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny Table 2 (ratio 50 %, seed 0, 1 epoch): interrupted after two runs, resumed, run again."""
    setup = make_setup("cpu", data, tmp_path_factory.mktemp("out"), epochs=1, overrides=FAST, ratios=(0.5,))
    plan = plan_table(setup, "table2")
    lasts = [experiments.run_dir(setup, "table2", c.slug, 0) / "last.pt" for c in plan.cells]
    import nlkd.train

    real, calls = nlkd.train.train, []

    def interrupt_third(cfg, resume=False, log=print):
        calls.append(cfg.out)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cfg, resume=resume, log=log)

    mp = pytest.MonkeyPatch()
    mp.setattr(nlkd.train, "train", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        run_table(setup, plan, [0], "nlkd reproduce table2 (test)", log=_quiet)
    mp.undo()
    after_stop = [p.stat().st_mtime_ns if p.is_file() else None for p in lasts]
    failures = run_table(setup, plan, [0], "nlkd reproduce table2 (test)", log=_quiet)
    after_resume = [p.stat().st_mtime_ns for p in lasts]
    run_table(setup, plan, [0], "nlkd reproduce table2 (test)", log=_quiet)
    after_rerun = [p.stat().st_mtime_ns for p in lasts]
    return {"setup": setup, "plan": plan, "stop": after_stop, "resume": after_resume, "rerun": after_rerun,
            "failures": failures}  # fmt: skip


def test_grid_resumes_where_it_stopped_and_a_finished_grid_trains_nothing(grid: dict) -> None:
    assert grid["failures"] == []
    stop, resume = grid["stop"], grid["resume"]
    assert stop[:2] == resume[:2] and None not in stop[:2]  # finished before the stop: not retrained
    assert stop[2:] == [None] * 4
    assert grid["rerun"] == resume  # everything finished: the third call trains nothing


def test_grid_writes_the_table_with_one_row_per_method(grid: dict) -> None:
    out = grid["setup"].out
    text = (out / "table2.md").read_text()
    rows = [ln.split(" | ")[0].lstrip("| ") for ln in text.splitlines() if "| 1/1 | s0 " in ln]
    assert rows == ["baseline", "reweight (mIoU)", "reweight (BF)", "reweight (BFmIoU)", "NLKD (BF)", "NLKD (BFmIoU)"]
    assert "| NLKD (BFmIoU) | 50 % |" in text and "| 86.80 | 58.03 | 1/1 |" in text
    assert "nlkd reproduce table2 (test)" in text
    assert (out / "table2.png").stat().st_size > 0


def test_cli_report_only_rewrites_the_table_and_trains_nothing(grid: dict, data: Path) -> None:
    setup, plan = grid["setup"], grid["plan"]
    lasts = [experiments.run_dir(setup, "table2", c.slug, 0) / "last.pt" for c in plan.cells]
    (setup.out / "table2.md").unlink()
    argv = ["reproduce", "table2", "--data", str(data), "--out", str(setup.out), "--seeds", "0", "1", *ARGS,
            "--set", "model.encoder=mobilenet_v2", "--report-only"]  # fmt: skip
    assert cli.main(argv) == 0
    text = (setup.out / "table2.md").read_text()
    assert "| NLKD (BFmIoU) | 50 % |" in text and "| 86.80 | 58.03 | 1/2 | s0 " in text  # seed 1 never ran
    assert "| NLKD (BFmIoU) | 30 % | not run | not run |" in text
    assert "--seeds 0 1" in text and "--report-only" not in text  # the command that makes the whole table
    assert [p.stat().st_mtime_ns for p in lasts] == grid["rerun"]
    assert not (setup.out / "table2" / "baseline-r0").exists()


def test_cli_dry_run_trains_and_writes_nothing(data: Path, tmp_path: Path, capsys) -> None:
    before = sorted(p.name for p in (data / "labels").iterdir())
    assert cli.main(["reproduce", "all", "--data", str(data), "--out", str(tmp_path / "o"), "--dry-run",
                     "--seeds", "0", "1", *ARGS]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert not (tmp_path / "o").exists() and sorted(p.name for p in (data / "labels").iterdir()) == before
    assert out.count("nlkd train --config") == 2 * (4 + 24 + 6 + 8 + 6)
    assert "-- nlkd-bfmiou-r30 seed 1: NLKD (BFmIoU) [30 %], labels train_de30, teacher baseline-r30" in out


def test_select_cells_matches_slugs_adds_their_teachers_and_keeps_the_plan_order(tmp_path: Path) -> None:
    sc = experiments.SCALES["cpu"]
    plan = build_table("table2", root=tmp_path, ratios=sc.ratios, teacher_model=sc.teacher_model)
    assert select_cells(plan, None) == plan.cells
    slugs = [c.slug for c in select_cells(plan, ["nlkd-bf-*", "reweight-miou-r50"])]
    assert slugs == ["baseline-r0", "nlkd-bf-r0", "baseline-r10", "nlkd-bf-r10", "baseline-r30", "nlkd-bf-r30",
                     "baseline-r50", "reweight-miou-r50", "nlkd-bf-r50"]  # fmt: skip
    assert [c.slug for c in select_cells(plan, ["*-r30", "baseline-r30"])] == [
        c.slug for c in plan.cells if c.slug.endswith("-r30")
    ]
    with pytest.raises(ConfigError, match=r"'nlkd-r50' matches no cell of table2; its cells: baseline-r0, "):
        select_cells(plan, ["*-r50", "nlkd-r50"])


def test_cli_cells_trains_only_those_cells_and_reports_the_whole_table(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import nlkd.train

    trained: list[str] = []
    monkeypatch.setattr(nlkd.train, "train", lambda cfg, resume=False, log=print: trained.append(cfg.out))
    out = tmp_path / "o"
    argv = ["reproduce", "table2", "--data", str(data), "--out", str(out), "--seeds", "0", *ARGS]
    assert cli.main([*argv, "--cells", "nlkd-bfmiou-r50"]) == 0
    assert trained == [str(out / "table2" / s / "seed0") for s in ("baseline-r50", "nlkd-bfmiou-r50")]
    text = (out / "table2.md").read_text()
    assert "| reweight (mIoU) | 10 % | not run | not run |" in text  # the report still has every cell
    assert cli.main([*argv, "--cells", "nlkd-r50"]) == 2
    assert "matches no cell of table2" in capsys.readouterr().err
    assert cli.main(["reproduce", "all", "--data", str(data), "--out", str(out), "--cells", "*-r50"]) == 2
    assert len(trained) == 2


def test_a_cell_another_table_finished_is_linked_not_trained(grid: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Table 3's 50 % dilate/erode baseline and NLKD are Table 2's 50 % baseline and NLKD (BFmIoU) runs."""
    import nlkd.train

    setup = grid["setup"]
    t3 = plan_table(setup, "table3")
    plan = experiments.TablePlan(
        "table3", t3.title, t3.column_name, [c for c in t3.cells if c.column.startswith("dil")]
    )
    trained: list[str] = []
    monkeypatch.setattr(nlkd.train, "train", lambda cfg, resume=False, log=print: trained.append(cfg.out))
    assert run_table(setup, plan, [0], "nlkd reproduce table3 (test)", log=_quiet) == []
    assert trained == []
    for mine, theirs in (("baseline-de50", "baseline-r50"), ("nlkd-de50", "nlkd-bfmiou-r50")):
        here, there = (experiments.run_dir(setup, t, s, 0) for t, s in (("table3", mine), ("table2", theirs)))
        assert (here / "reused_from.txt").read_text().strip() == str(there.resolve())
        for name in ("last.pt", "metrics.jsonl"):
            assert (here / name).read_bytes() == (there / name).read_bytes()
        assert load_config(here / "config.yaml") == cell_config(setup, plan, plan.cells[0 if "base" in mine else 1], 0)
    text = (setup.out / "table3.md").read_text()
    ours = {
        ln.split(" | ")[0].lstrip("| "): ln.split(" | ")[2] for ln in text.splitlines() if "| dilate/erode 50 % |" in ln
    }
    t2 = (setup.out / "table2.md").read_text().split("Gain over")[0]  # the main table, not the pooled gains
    theirs = {ln.split(" | ")[0].lstrip("| "): ln.split(" | ")[2] for ln in t2.splitlines() if "| 50 % |" in ln}
    assert ours == {"baseline": theirs["baseline"], "NLKD": theirs["NLKD (BFmIoU)"]}


def test_run_key_tells_runs_apart_by_config_and_by_teacher(grid: dict, tmp_path: Path) -> None:
    setup, plan = grid["setup"], grid["plan"]
    by = {c.slug: cell_config(setup, plan, c, 0) for c in plan.cells}
    nlkd_cfg = by["nlkd-bfmiou-r50"]
    assert experiments.find_twin(setup, nlkd_cfg) != Path(nlkd_cfg.out)  # a run is not its own twin
    moved = apply_overrides(nlkd_cfg, {"out": str(tmp_path / "elsewhere")})
    assert experiments.find_twin(setup, moved) == Path(nlkd_cfg.out)
    other_seed = apply_overrides(moved, {"seed": 1})
    assert experiments.find_twin(setup, other_seed) is None
    # the same student config with a teacher trained differently is another run
    teacher = Path(nlkd_cfg.strategy.teacher).parent
    fake = tmp_path / "teacher"
    fake.mkdir()
    changed = apply_overrides(load_config(teacher / "config.yaml"), {"optim.lr": 0.5})
    (fake / "config.yaml").write_text(yaml.safe_dump(config_to_dict(changed)))
    other_teacher = apply_overrides(moved, {"strategy.teacher": str(fake / "last.pt")})
    assert experiments.run_key(other_teacher) != experiments.run_key(moved)
    assert experiments.find_twin(setup, other_teacher) is None


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Cityscapes root: 4 train images with gtFine and gtCoarse labels, 2 val images with gtFine."""
    from PIL import Image

    root, rng = tmp_path_factory.mktemp("cityscapes"), np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for k in range(n):
            name = f"aachen_{k:06d}_000019"
            image = root / f"leftImg8bit/{split}/aachen/{name}_leftImg8bit.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(image)
            ids = np.full((32, 48), 7, np.uint8)  # road below, building above, sky on the right
            ids[:16], ids[:, 36:] = 11, 23
            for labels in ("gtFine", "gtCoarse") if split == "train" else ("gtFine",):
                mask = ids.copy()
                if labels == "gtCoarse":
                    mask[14:18], mask[:, 34:38] = 0, 0  # unlabelled bands along the boundaries
                path = root / f"{labels}/{split}/aachen/{name}_{labels}_labelIds.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask, mode="L").save(path)
    return root


def test_table3_on_a_cityscapes_root_trains_on_its_fine_and_coarse_labels(cityscapes: Path, tmp_path: Path) -> None:
    setup = make_setup("cpu", cityscapes, tmp_path / "o", epochs=1, overrides=FAST)
    assert (setup.base.data.format, setup.info.num_classes, setup.info.ignore_index) == ("cityscapes", 19, 255)
    plan = plan_table(setup, "table3")
    assert [(c.slug, c.labels, c.column) for c in plan.cells] == [
        ("baseline-fine", "gtFine", "Cityscapes fine"),
        ("nlkd-fine", "gtFine", "Cityscapes fine"),
        ("baseline-coarse", "gtCoarse", "Cityscapes coarse"),
        ("nlkd-coarse", "gtCoarse", "Cityscapes coarse"),
    ]
    assert plan.noise == [] and (plan.cells[3].teacher, plan.cells[1].teacher) == ("baseline-coarse", "baseline-fine")
    assert run_table(setup, plan, [0], "nlkd reproduce table3 (cityscapes test)", log=_quiet) == []
    run = experiments.run_dir(setup, "table3", "nlkd-coarse", 0)
    cfg = load_config(run / "config.yaml")
    assert (cfg.data.format, cfg.data.labels, cfg.data.val_labels) == ("cityscapes", "gtCoarse", None)
    text = (setup.out / "table3.md").read_text()
    assert "| NLKD | Cityscapes coarse |" in text and "| 62.56 | 42.98 | 1/1 |" in text
    assert "| baseline | Cityscapes fine |" in text and "| 67.97 | 45.50 | 1/1 |" in text
    assert sorted(p.name for p in cityscapes.iterdir()) == ["gtCoarse", "gtFine", "leftImg8bit"]  # nothing written


def test_tables_that_write_label_folders_refuse_a_cityscapes_root(cityscapes: Path, tmp_path: Path, capsys) -> None:
    args = ["--data", str(cityscapes), "--out", str(tmp_path / "o"), "--dry-run", *ARGS]
    assert cli.main(["reproduce", "table2", *args]) == 2
    assert "table2 writes coarse label folders into ROOT/labels and needs the folder layout" in capsys.readouterr().err
    assert cli.main(["reproduce", "all", *args]) == 0
    out = capsys.readouterr().out
    assert "only table3 applies" in out and "== table3:" in out and "== table2" not in out
    assert "labels gtCoarse, teacher baseline-coarse" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--data": "missing"}, "missing: data folder not found"),
        ({"--scale": "gpu"}, "--scale: unknown scale 'gpu'; choose one of: cpu, paper"),
        ({"--data": "empty"}, "empty/labels/train: clean training labels not found"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    change: dict[str, str], message: str, data: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "empty").mkdir()
    flags = {"--data": str(data), "--out": str(tmp_path / "o"), "--scale": "cpu"}
    flags.update({k: str(tmp_path / v) if k == "--data" else v for k, v in change.items()})
    assert cli.main(["reproduce", "table2", *(x for kv in flags.items() for x in kv), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("nlkd reproduce: error: ") and message in err, err
    assert not (tmp_path / "o").exists()


def test_cuda_without_a_gpu_is_one_line_naming_reproduces_way_to_the_cpu(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    argv = ["reproduce", "table2", "--data", str(data), "--out", str(tmp_path / "o"), "--set", "device=cuda"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        "nlkd reproduce: error: device 'cuda' requested but CUDA is not available; use --set device=cpu"
    ]
    assert not (tmp_path / "o").exists()
