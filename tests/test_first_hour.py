"""What a new user meets in the first hour (issue 17): file permissions, ``corrupt``'s ignore index,
``predict``'s file names, ``validate``'s settings, ``--help`` texts and did-you-mean hints."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import SMALL_ENCODER, probe_network, train_argv
from nlkd.audit import known_bad_ids
from nlkd.checkpoint import make_checkpoint, save_checkpoint
from nlkd.cli import build_parser, main
from nlkd.config import StrategyConfig, TrainConfig
from nlkd.data.info import DatasetInfo, load_dataset_info
from nlkd.errors import ConfigError
from nlkd.io import atomic_write_bytes, write_mask
from nlkd.models import create_model


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """``nlkd argv`` in process: exit code, stdout, and the non-empty stderr lines after tqdm's redraws."""
    capsys.readouterr()
    rc = main(list(argv))
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in cap.err.split("\n")]
    return rc, cap.out, [ln for ln in lines if ln]


def masks_with_band(n: int, h: int = 40, w: int = 48) -> list[np.ndarray]:
    """``n`` masks of classes 0, 1, 2 in vertical stripes; in the top half a 4-px unlabelled band (255) lies
    between them (in the bottom half they touch, so a corruption has boundaries to move)."""
    out = []
    for i in range(n):
        mask = np.zeros((h, w), np.uint8)
        cut1, cut2 = 12 + i, 30 - i
        mask[:, cut1:cut2] = 1
        mask[:, cut2:] = 2
        for cut in (cut1, cut2):
            mask[: h // 2, cut - 2 : cut + 2] = 255
        out.append(mask)
    return out


@pytest.fixture()
def band_data(tmp_path: Path) -> Path:
    """ROOT/labels/train with 4 banded masks and ROOT/dataset.yaml saying ignore_index 255."""
    root = tmp_path / "root"
    for i, mask in enumerate(masks_with_band(4)):
        write_mask(root / "labels" / "train" / f"m{i}.png", mask)
    (root / "dataset.yaml").write_text("num_classes: 3\nignore_index: 255\n")
    return root


# ----------------------------------------------------------------------------- file permissions


@pytest.fixture()
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(mask: int, umask: None, tmp_path: Path) -> None:
    os.umask(mask)
    atomic_write_bytes(tmp_path / "new.bin", b"x")
    write_mask(tmp_path / "mask.png", np.zeros((2, 2), np.uint8))
    for name in ("new.bin", "mask.png"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o666 & ~mask)


def test_rewriting_a_file_keeps_its_permissions(umask: None, tmp_path: Path) -> None:
    path = tmp_path / "shared.csv"
    atomic_write_bytes(path, b"old")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o640


def test_a_run_and_an_audit_can_be_shared_under_a_group_umask(
    probe_model: str, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under umask 002 (a group-shared machine) every file and folder that ``train`` (with cached teacher
    maps) and ``audit`` write is group-writable and readable by all, as ``open()`` and ``mkdir()`` make them."""
    teacher, student, audit = tmp_path / "teacher", tmp_path / "student", tmp_path / "audit"
    old = os.umask(0o002)
    try:
        assert main(train_argv(tiny_data, teacher, "--model", probe_model, "--epochs", "1")) == 0
        maps = ["--strategy", "band_kd", "--teacher", str(teacher / "best.pt")]
        assert main(train_argv(tiny_data, student, "--model", probe_model, "--epochs", "1", *maps)) == 0
        argv = ["audit", "--checkpoint", str(teacher / "best.pt"), "--data", str(tiny_data), "--out", str(audit)]
        assert main([*argv, "--labels", "train_coarse", "--device", "cpu", "--top", "2"]) == 0
    finally:
        os.umask(old)
    written = [p for folder in (teacher, student, audit) for p in (folder, *folder.rglob("*"))]
    assert student / "teacher_prob.npy" in written and audit / "report.html" in written
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in written}
    assert {k: v for k, v in modes.items() if v != (oct(0o775) if (tmp_path / k).is_dir() else oct(0o664))} == {}


# ----------------------------------------------------------------------------- corrupt


def corrupt(capsys: pytest.CaptureFixture[str], root: Path, dst: Path, *extra: str) -> tuple[int, str]:
    rc, out, _ = run(
        capsys,
        *("corrupt", "--src", str(root / "labels" / "train"), "--dst", str(dst)),
        *("--ratio", "1", "--radius", "3", "5", "--seed", "0", *extra),
    )
    return rc, out


def band_moved(root: Path, dst: Path) -> list[bool]:
    """Per mask: does the set of 255 pixels differ between the source and the corrupted copy?"""
    moved = []
    for src in sorted((root / "labels" / "train").glob("*.png")):
        before, after = np.asarray(Image.open(src)), np.asarray(Image.open(dst / src.name))
        assert (before != after).any()  # every mask was corrupted (ratio 1)
        moved.append(bool(((before == 255) != (after == 255)).any()))
    return moved


def test_corrupt_takes_the_ignore_index_from_dataset_yaml(
    band_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = corrupt(capsys, band_data, tmp_path / "de")
    assert rc == 0 and out.splitlines()[1] == (
        f"unlabelled pixels: value 255, from {band_data / 'dataset.yaml'}; never moved"
    )
    assert band_moved(band_data, tmp_path / "de") == [False] * 4
    assert json.loads((tmp_path / "de" / "manifest.json").read_text())["ignore_index"] == 255


def test_corrupt_without_an_ignore_index_moves_the_band_and_says_so(
    band_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (band_data / "dataset.yaml").unlink()
    rc, out = corrupt(capsys, band_data, tmp_path / "de")
    assert rc == 0 and out.splitlines()[1] == (
        "unlabelled pixels: none (no --ignore-index, no ROOT/dataset.yaml): every mask value is treated as a class"
    )
    assert any(band_moved(band_data, tmp_path / "de"))


def test_corrupt_ignore_index_flag_wins_and_yaml_needs_no_class_count(
    band_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (band_data / "dataset.yaml").write_text("ignore_index: 2\n")  # no num_classes: corrupt does not need it
    rc, out = corrupt(capsys, band_data, tmp_path / "a")
    assert rc == 0 and "unlabelled pixels: value 2, from" in out
    rc, out = corrupt(capsys, band_data, tmp_path / "b", "--ignore-index", "255")
    assert rc == 0 and "unlabelled pixels: value 255, from --ignore-index;" in out
    assert band_moved(band_data, tmp_path / "b") == [False] * 4


def test_corrupt_does_not_count_an_unchanged_mask_as_corrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Masks whose classes never touch (a 4-px unlabelled band between them all the way down), and one of
    a single class: a 1-px dilation/erosion changes nothing, so the summary, the manifest and the audit's
    known-bad ids do not count them as corrupted."""
    root = tmp_path / "root"
    for i, mask in enumerate(masks_with_band(3)):
        mask[:, mask[0] == 255] = 255  # the band of the top half, now in the bottom half too
        write_mask(root / "labels" / "train" / f"m{i}.png", mask)
    write_mask(root / "labels" / "train" / "m3.png", np.ones((40, 48), np.uint8))
    (root / "dataset.yaml").write_text("num_classes: 3\nignore_index: 255\n")
    capsys.readouterr()
    rc, out = corrupt(capsys, root, tmp_path / "r1", "--radius", "1", "1")
    manifest = json.loads((tmp_path / "r1" / "manifest.json").read_text())
    assert rc == 0 and out.startswith("corrupted 0 of 4 masks")
    assert manifest["corrupted"] == manifest["unchanged"] == ["m0", "m1", "m2", "m3"]  # chosen, and unchanged
    assert known_bad_ids(tmp_path / "r1", None) == (set(), str(tmp_path / "r1" / "manifest.json"))
    for src in sorted((root / "labels" / "train").glob("*.png")):
        assert (tmp_path / "r1" / src.name).read_bytes() == src.read_bytes()
    rc, out = corrupt(capsys, root, tmp_path / "r6", "--radius", "6", "6")  # reaches across the band
    manifest = json.loads((tmp_path / "r6" / "manifest.json").read_text())
    assert rc == 0 and out.startswith("corrupted 3 of 4 masks")
    assert manifest["corrupted"] == ["m0", "m1", "m2", "m3"] and manifest["unchanged"] == ["m3"]
    assert known_bad_ids(tmp_path / "r6", None) == ({"m0", "m1", "m2"}, str(tmp_path / "r6" / "manifest.json"))


def test_corrupt_warns_about_unchanged_masks_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    for i in range(7):
        write_mask(root / "labels" / "train" / f"m{i}.png", np.full((8, 8), i % 3, np.uint8))  # one class each
    argv = ["corrupt", "--src", str(root / "labels" / "train"), "--dst", str(tmp_path / "d"), "--ratio", "1"]
    rc, _, err = run(capsys, *argv)
    assert rc == 0
    assert [line for line in err if "warning" in line] == [
        "nlkd corrupt: warning: 7 of the masks chosen for corruption came out unchanged (manifest.json lists them "
        "as 'unchanged'; the audit does not count them as bad): m0, m1, m2, m3, m4, ... (7 in all) (nothing to "
        "move within the radius: one class only, or every boundary behind an unlabelled band wider than the radius; "
        "--radius LO HI sets it)"
    ]


@pytest.mark.parametrize(("corrupted", "unchanged", "which"), [(8, 8, "none"), (16, 16, "none"), (16, 0, "all")])
def test_audit_without_a_known_bad_and_a_good_image_has_no_detection_scores(
    corrupted: int,
    unchanged: int,
    which: str,
    probe_model: str,
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A manifest whose corrupted masks all came out unchanged (8 of 16, or all 16 listed) leaves no known-bad
    image, one listing every image no good one: the audit says so in one line instead of an AUROC of nan and
    sklearn's warnings."""
    root = tmp_path / "data"
    (root / "labels").mkdir(parents=True)
    for name in ("images", "dataset.yaml"):
        os.symlink(tiny_data / name, root / name)
    os.symlink(tiny_data / "labels" / "train", root / "labels" / "train")
    same = root / "labels" / "same"
    same.mkdir()
    ids = sorted(p.stem for p in (tiny_data / "labels" / "train").glob("*.png"))
    for i in ids:
        os.symlink(tiny_data / "labels" / "train" / f"{i}.png", same / f"{i}.png")
    manifest = {"corrupted": ids[:corrupted], "unchanged": ids[:unchanged]}
    (same / "manifest.json").write_text(json.dumps(manifest))
    cfg = TrainConfig(device="cpu")
    cfg.model.name, cfg.data.size = probe_model, [32, 48]
    ckpt = tmp_path / "probe.pt"
    save_checkpoint(make_checkpoint(cfg, load_dataset_info(tiny_data), [probe_network(6)], epoch=0), ckpt)
    out = tmp_path / "audit"
    argv = ["audit", "--checkpoint", str(ckpt), "--data", str(root), "--labels", "same", "--out", str(out)]
    with monkeypatch.context() as m:
        m.setattr("warnings.showwarning", lambda *a, **k: pytest.fail(f"a warning: {a[0]}"))
        rc, stdout, _ = run(capsys, *argv, "--device", "cpu", "--top", "1")
    assert rc == 0
    assert stdout.splitlines()[2:] == [
        f"known bad ({same / 'manifest.json'}): {which} of the 16 images, so no detection scores"
    ]
    assert "detection" not in json.loads((out / "audit.json").read_text())


def test_synth_says_how_many_coarse_masks_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At 24x32 the coarse copy's radius (1.5-3.5 px at 96 px, scaled) is below 1 px: nothing moves."""
    rc, out, _ = run(capsys, "synth", str(tmp_path / "s"), "--n-train", "4", "--n-val", "1", "--n-test", "1",
                     "--height", "24", "--width", "32")  # fmt: skip
    manifest = json.loads((tmp_path / "s" / "labels" / "train_coarse" / "manifest.json").read_text())
    differ = [
        p.stem
        for p in sorted((tmp_path / "s" / "labels" / "train").glob("*.png"))
        if p.read_bytes() != (tmp_path / "s" / "labels" / "train_coarse" / p.name).read_bytes()
    ]
    assert rc == 0 and len(manifest["corrupted"]) == 2
    assert differ == sorted(set(manifest["corrupted"]) - set(manifest["unchanged"]))
    unchanged = len(manifest["unchanged"])
    note = f"; {unchanged} more chosen came out unchanged at this size" if unchanged else ""
    assert out.rstrip().endswith(f"labels/train_coarse has {len(differ)} of 4 masks corrupted{note})")
    assert unchanged == 2  # what this test is about (if synth changes, pick a size where it holds)


# ----------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def untrained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of an untrained 3-class U-Net (predict only needs its shape, not its skill)."""
    cfg = TrainConfig(device="cpu")
    cfg.model.encoder = SMALL_ENCODER
    cfg.data.size = [32, 32]
    info = DatasetInfo(num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    model = create_model("unet", 3, encoder=SMALL_ENCODER)
    save_checkpoint(make_checkpoint(cfg, info, [model], epoch=0), path)
    return path


def save_rgb(path: Path, hw: tuple[int, int], seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*hw, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def predict(capsys: pytest.CaptureFixture[str], ckpt: Path, images: Path, out: Path) -> tuple[int, str, list[str]]:
    return run(
        capsys, "predict", "--checkpoint", str(ckpt), "--images", str(images), "--out", str(out), "--device", "cpu"
    )


def test_predict_refuses_two_images_with_one_output_name(
    untrained_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    save_rgb(images / "a.jpg", (20, 30))
    save_rgb(images / "a.png", (20, 30), seed=1)
    save_rgb(images / "b.png", (20, 30))
    rc, _, err = predict(capsys, untrained_ckpt, images, tmp_path / "out")
    assert rc == 2 and err == [
        f"nlkd predict: error: {images}: a.jpg and a.png would both be written to a.png; "
        "rename one, or predict them into separate --out folders"
    ]
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_predict_reads_tiff_and_names_what_it_skips(
    untrained_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    save_rgb(images / "scan.tif", (24, 36))
    save_rgb(images / "photo.TIFF", (20, 30))
    save_rgb(images / "c.png", (16, 16))
    (images / "notes.txt").write_text("not an image")
    (images / "sub").mkdir()
    out = tmp_path / "out"
    rc, stdout, err = predict(capsys, untrained_ckpt, images, out)
    assert rc == 0 and "predicted 3 images" in stdout and "2 other entries skipped" in stdout
    notes = [line for line in err if line.startswith("nlkd")]  # not the progress bar
    assert len(notes) == 1 and notes[0].startswith("nlkd predict: skipping 2 of the 5 entries in")
    assert notes[0].endswith(": notes.txt, sub/")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}{suffix}" for stem in ("scan", "photo", "c") for suffix in (".png", "_overlay.png")
    )
    with Image.open(out / "scan.png") as m:
        assert m.size == (36, 24) and np.asarray(m).max() < 3


def test_predict_refuses_to_write_into_the_image_folder(
    untrained_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_rgb(tmp_path / "a.png", (8, 8))
    before = (tmp_path / "a.png").read_bytes()
    rc, _, err = predict(capsys, untrained_ckpt, tmp_path, tmp_path / ".")
    assert rc == 2 and len(err) == 1 and "--out is the --images folder" in err[0]
    assert (tmp_path / "a.png").read_bytes() == before


@pytest.mark.parametrize("yaml_text", ["num_classes: 3\nignore_index: 255\n", "ignore_index: 2\n", None])
def test_predict_of_a_data_set_split_with_the_checkpoint_s_classes(
    yaml_text: str | None, untrained_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Nothing to refuse: the same classes (the ignore index is not checked), a dataset.yaml without a class
    count (as ``nlkd corrupt`` reads one), or none."""
    root = tmp_path / "root"
    save_rgb(root / "images" / "test" / "a.png", (20, 30))
    if yaml_text is not None:
        (root / "dataset.yaml").write_text(yaml_text)
    monkeypatch.chdir(tmp_path)
    rc, stdout, _ = predict(capsys, untrained_ckpt, Path("root/images/test"), Path("out"))
    assert rc == 0 and stdout.splitlines() == [
        "predicted 1 image -> out (1 mask + 1 overlay)",
        "mask values: 3 classes: 0 class_0, 1 class_1, 2 class_2",
    ]


def test_predict_refuses_a_checkpoint_of_other_classes_than_the_data_set_of_its_images(
    untrained_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    root = tmp_path / "root"
    save_rgb(root / "images" / "test" / "a.png", (20, 30))
    (root / "dataset.yaml").write_text("num_classes: 6\nignore_index: 255\n")
    monkeypatch.chdir(tmp_path)
    rc, _, err = predict(capsys, untrained_ckpt, Path("root/images/test"), Path("out"))
    assert rc == 2
    assert err == [f"nlkd predict: error: {untrained_ckpt}: checkpoint has 3 classes, the data set at root has 6"]
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- validate


def test_validate_says_what_it_checked_against_and_warns_on_a_class_ignore_index(
    tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(capsys, "validate", "--data", str(tiny_data), "--split", "val")
    assert rc == 0 and err == []
    assert out.splitlines() == [
        f"checking split val with num_classes 6 ({tiny_data / 'dataset.yaml'}), "
        f"no ignore_index ({tiny_data / 'dataset.yaml'})",
        "ok: 8 pairs",
    ]
    rc, out, err = run(capsys, "validate", "--data", str(tiny_data), "--split", "val", "--ignore-index", "3")
    assert rc == 0 and "ignore_index 3 (--ignore-index)" in out.splitlines()[0]
    assert len(err) == 1 and err[0].startswith(
        "nlkd validate: warning: ignore_index 3 is also a class index (0..5): class 3 will be neither learned"
    )
    rc, _, err = run(capsys, "validate", "--data", str(tiny_data), "--split", "val", "--ignore-index", "6")
    assert rc == 0 and err == []  # just outside the classes: the usual "last value is void" layout


# ----------------------------------------------------------------------------- --help and names


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_flag_has_a_help_sentence(command: str) -> None:
    undocumented = [
        a.option_strings[0]
        for a in subparsers()[command]._actions
        if a.option_strings and (not a.help or a.help == argparse.SUPPRESS)
    ]
    assert undocumented == []


def test_train_help_shows_the_defaults_and_the_ready_configs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    text = " ".join(help_text[help_text.index("options:") :].split())  # below the usage; argparse wraps lines
    defaults = TrainConfig()
    for flag, default in (
        ("--val-split SPLIT", defaults.data.val_split),
        ("--size HxW resize every image and mask", "x".join(map(str, defaults.data.size))),
        ("--lr LR learning rate", defaults.optim.lr),
        ("--epochs N", defaults.epochs),
        ("--strategy STRATEGY", defaults.strategy.name),
    ):
        start = text.index(flag)
        assert f"(default: {default}" in text[start : text.index(" --", start + len(flag))], flag
    assert "--config cpu" in text and "--config paper" in text


def test_help_lists_exactly_the_registered_models_and_strategies(capsys: pytest.CaptureFixture[str]) -> None:
    from nlkd.models import list_models
    from nlkd.strategies import STRATEGIES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert f"--model MODEL {' | '.join(list_models())} (default: unet)" in text
    assert f"how each image's loss is weighted: {' | '.join(STRATEGIES)} (default: baseline)" in text


def test_teacher_help_names_the_strategies_that_need_one(capsys: pytest.CaptureFixture[str]) -> None:
    from nlkd.strategies import STRATEGIES, create_strategy
    from nlkd.teacher_cache import TEACHER_PROB

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    built = {name: create_strategy(StrategyConfig(name=name), 3, None, 10) for name in STRATEGIES}
    need = [name for name, s in built.items() if s.needs_teacher or TEACHER_PROB in s.needs_extras]
    assert {"nlkd", "band_kd", "nlkd_pixel"} <= set(need)
    assert f"--teacher CKPT teacher checkpoint (an earlier run's best.pt); needed by {', '.join(need)} " in text


@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_a_ready_config_by_name(name: str) -> None:
    from nlkd.commands.train import config_arg
    from nlkd.config import load_config

    args = build_parser().parse_args(["train", "--config", name])
    cfg = load_config(args.config)
    expected = yaml.safe_load(Path(config_arg(name)).read_text())
    assert (cfg.epochs, cfg.optim.name) == (expected["epochs"], expected["optim"]["name"])


def test_a_file_named_like_a_ready_config_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cpu").write_text("epochs: 3\n")
    assert build_parser().parse_args(["train", "--config", "cpu"]).config == "cpu"


@pytest.mark.parametrize(
    ("typo", "hint"), [("nlk", "'nlkd'"), ("Baseline", "'baseline'"), ("co-teaching", "'coteaching'")]
)
def test_unknown_strategy_gets_a_did_you_mean(typo: str, hint: str) -> None:
    from nlkd.strategies import create_strategy

    with pytest.raises(ConfigError, match=rf"unknown strategy '{typo}' \(did you mean {hint}\?\); choose one of"):
        create_strategy(StrategyConfig(name=typo), num_classes=3, ignore_index=None, epochs=1)


def test_train_with_a_strategy_typo_is_one_line(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from nlkd.strategies import STRATEGIES

    rc, _, err = run(capsys, "train", "--data", str(tiny_data), "--strategy", "nlk", "--out", str(tmp_path / "r"))
    assert rc == 2 and len(err) == 1
    assert err[0] == (
        "nlkd train: error: unknown strategy 'nlk' (did you mean 'nlkd'?); choose one of: "
        + ", ".join(sorted(STRATEGIES))
    )


# ----------------------------------------------------------------------------- one name for the quality column


def test_score_csv_names_the_quality_column_as_the_audit_does() -> None:
    from nlkd.audit.table import _FIXED
    from nlkd.teacher import ScoreTable

    table = ScoreTable(["a", "b"], np.array([0.2, 0.6]), np.array([0.4, 1.0]), np.array([0.3, 0.8]))
    header, first, _ = table.to_csv("bf").split("\n", 2)
    assert header.split(",") == list(_FIXED[:4]) == ["id", "quality", "bf", "iou"]
    assert first == "a,0.200000,0.200000,0.400000"  # quality = the chosen metric (here BF)


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        ("id,quality,bf,iou", "a,0.25,0.1,0.4", 0.25),
        ("id,bf,iou,bfmiou,weight", "a,0.5,0.3,0.4,0.5", 0.5),  # nlkd score before the rename: weight
        ("id,bf,iou,bfmiou", "a,0.1,0.3,0.2", 0.2),  # only the metric's own name
    ],
)
def test_scores_reader_accepts_the_old_column_names(header: str, row: str, expected: float, tmp_path: Path) -> None:
    from nlkd.teacher import read_scores_csv

    path = tmp_path / "s.csv"
    path.write_text(f"{header}\n{row}\n")
    assert read_scores_csv(path) == read_scores_csv(path, "quality") == {"a": expected}
    assert read_scores_csv(path, "iou") == {"a": float(row.split(",")[header.split(",").index("iou")])}


# ----------------------------------------------------------------------------- units: percent for people


def test_epoch_line_prints_validation_metrics_in_percent() -> None:
    from nlkd.train import epoch_line

    record = {"epoch": 3, "train_loss": 0.41234, "w_teacher": 0.5, "lr": 0.002, "val_miou": 0.51234, "val_bf": 0.4}
    assert epoch_line(record) == "epoch=3 train_loss=0.4123 w_teacher=0.5 lr=0.002 val_miou=51.23% val_bf=40.00%"
    shares = {"loss_share_corrupted_pixels": 0.0189, "weight_ratio_corrupted_clean": 0.9179}  # a share is percent
    assert epoch_line(shares) == "loss_share_corrupted_pixels=1.89% weight_ratio_corrupted_clean=0.9179"


def test_train_prints_percent_and_stores_fractions(
    tiny_data: Path, tmp_path: Path, probe_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1", "--size", "32x48"]
    rc, stdout, _ = run(capsys, *argv, "--device", "cpu", "--set", f"model.name={probe_model}")
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert rc == 0 and 0 <= record["val_miou"] <= 1  # a fraction in the JSON
    assert f"val_miou={100 * record['val_miou']:.2f}%" in stdout  # percent on screen


def _unknown_name_errors() -> list[tuple[str, object]]:
    from nlkd.config import apply_overrides, config_from_dict
    from nlkd.optim import build_scheduler
    from nlkd.reproduce.tables import build_table

    return [
        ("'lr'", lambda: apply_overrides(TrainConfig(), {"optim.lrr": 1})),
        ("'epochs'", lambda: config_from_dict({"epoch": 3})),
        ("'cosine'", lambda: build_scheduler("cosin", None, 10, 1, 0)),
        ("'table2'", lambda: build_table("tabel2", root=Path("."), ratios=[0.5], teacher_model=None)),
    ]


@pytest.mark.parametrize("case", range(4))
def test_unknown_names_get_the_shared_did_you_mean(case: int) -> None:
    hint, call = _unknown_name_errors()[case]
    with pytest.raises(ConfigError, match=rf"\(did you mean {hint}\?\)"):
        call()  # type: ignore[operator]


def test_dataset_yaml_key_typo_gets_a_did_you_mean(tmp_path: Path) -> None:
    from nlkd.data.info import load_dataset_info

    (tmp_path / "dataset.yaml").write_text("num_classes: 3\nignore_indx: 255\n")
    with pytest.raises(ConfigError, match=r"unknown key 'ignore_indx' \(did you mean 'ignore_index'\?\)"):
        load_dataset_info(tmp_path)


# ----------------------------------------------------------------------------- argparse's own errors: one line


@pytest.mark.parametrize(
    ("argv", "prog", "message"),
    [
        (["train", "--size", "32"], "nlkd train", "argument --size: size must look like HxW"),
        (["validate", "--data", "d"], "nlkd validate", "the following arguments are required: --split"),
        (["export", "--format", "tflite"], "nlkd export", "argument --format: invalid choice: 'tflite'"),
        (["eval", "--checkpoint", "c.pt", "--data", "d", "--bogus"], "nlkd eval", "unrecognized arguments: --bogus"),
        (["import", "coco"], "nlkd import coco", "the following arguments are required: --annotations"),
        (["trian"], "nlkd", "argument COMMAND: invalid choice: 'trian'"),
    ],
)
def test_argparse_errors_are_one_line_and_exit_2(
    argv: list[str], prog: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"{prog}: error: {message}") and err[0].endswith(f"(see {prog} --help)")


# ----------------------------------------------------------------------------- train: teacher checks first


@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        (None, "strategy '{strategy}' needs a teacher: pass --teacher CKPT{also}"),
        ("folder", "{teacher}: a folder, not a teacher checkpoint; pass a file such as its best.pt"),
        ("missing.pt", "{teacher}: teacher checkpoint not found"),
    ],
)
@pytest.mark.parametrize(
    ("strategy", "also"),
    [
        (["nlkd"], " (or --teacher-scores CSV)"),
        (["band_kd"], ""),  # needs the teacher's probability maps: teacher scores do not do
        (["nlkd_pixel", "--teacher-scores", "scores.csv"], ""),
        (["relax", "--set", "strategy.doubt_rule=teacher"], ""),
    ],
)
def test_train_checks_the_teacher_before_writing_the_run_folder(
    teacher: str | None,
    message: str,
    strategy: list[str],
    also: str,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "folder").mkdir()
    out = tmp_path / "run"
    extra = [] if teacher is None else ["--teacher", str(tmp_path / teacher)]
    rc, _, err = run(capsys, *train_argv(tiny_data, out, "--strategy", *strategy, *extra))
    expected = message.format(strategy=strategy[0], also=also, teacher=tmp_path / str(teacher))
    assert rc == 2 and err == [f"nlkd train: error: {expected}"]
    assert not out.exists()


def test_teacher_maps_need_a_fixed_size_said_before_writing_the_run_folder(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher, out = tmp_path / "teacher.pt", tmp_path / "run"
    teacher.write_bytes(b"never read: the size is checked first")
    argv = train_argv(tiny_data, out, "--strategy", "band_kd", "--teacher", str(teacher), "--set", "data.size=null")
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert err == ["nlkd train: error: teacher probability maps need a fixed training size: pass --size HxW"]
    assert not out.exists()


# ----------------------------------------------------------------------------- --device cuda without a GPU


@pytest.mark.parametrize("command", ["train", "eval", "score", "audit"])
def test_cuda_without_a_gpu_suggests_the_device_flag(
    command: str, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    ckpt, data = str(tmp_path / "never-read.pt"), str(tiny_data)  # the device is resolved first
    argv = {
        "train": train_argv(tiny_data, tmp_path / "run"),
        "eval": ["eval", "--checkpoint", ckpt, "--data", data],
        "score": ["score", "--checkpoint", ckpt, "--data", data, "--out", str(tmp_path / "s.csv")],
        "audit": ["audit", "--checkpoint", ckpt, "--data", data, "--out", str(tmp_path / "a")],
    }[command]
    rc, _, err = run(capsys, *argv, "--device", "cuda")
    assert rc == 2
    assert err == [f"nlkd {command}: error: device 'cuda' requested but CUDA is not available; use --device cpu"]


# ----------------------------------------------------------------------------- outputs are never replaced by accident


def test_a_second_predict_into_the_same_folder_is_refused(
    untrained_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    save_rgb(images / "a.png", (16, 16))
    save_rgb(images / "b.png", (16, 16), seed=1)
    assert predict(capsys, untrained_ckpt, images, out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    save_rgb(images / "a.png", (16, 16), seed=2)  # a changed image: its old prediction stays until deleted
    rc, _, err = predict(capsys, untrained_ckpt, images, out)
    assert rc == 2 and err == [
        f"nlkd predict: error: {out}: already holds a.png and 3 more of the outputs; "
        "choose another --out, or delete them first"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("command", ["score", "export"])
def test_score_and_export_refuse_an_existing_out_file(
    command: str, untrained_ckpt: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "earlier.out"
    out.write_text("an earlier result\n")
    argv = {
        "score": ["score", "--checkpoint", str(untrained_ckpt), "--data", str(tiny_data), "--device", "cpu"],
        "export": ["export", str(untrained_ckpt)],
    }[command]
    rc, _, err = run(capsys, *argv, "--out", str(out))
    assert rc == 2
    assert err == [f"nlkd {command}: error: {out}: already exists; choose another --out, or delete it first"]
    assert out.read_text() == "an earlier result\n"


def test_audit_resume_without_an_earlier_audit_is_refused(
    untrained_ckpt: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "audit"
    argv = ["audit", "--checkpoint", str(untrained_ckpt), "--data", str(tiny_data), "--out", str(out)]
    rc, _, err = run(capsys, *argv, "--device", "cpu", "--resume")
    assert rc == 2
    assert err == [f"nlkd audit: error: {out}: no audit to resume (no progress.csv there); start it without --resume"]
    assert not out.exists()


# ----------------------------------------------------------------------------- units: the audit's report in percent


def test_audit_report_shows_per_image_numbers_in_percent() -> None:
    from nlkd.audit.gallery import GalleryItem
    from nlkd.audit.report import _gallery_html, _summary_html
    from nlkd.audit.table import AuditTable

    table = AuditTable.empty(["a", "b"], ["a.png", "b.png"], ["a.png", "b.png"], ["x", "y"])
    table.bf[:], table.iou[:], table.pixel_disagreement[:] = [0.2, 0.9], [0.532, 1.0], [0.25, 0.0]
    table.class_disagreement[:] = 0.0
    page = _gallery_html(table, [GalleryItem("worst", 1, 0, "gallery/worst_01.png")])
    assert "<b>a</b> quality 36.6 %, BF 20.0 %, IoU 53.2 %, 25.0 % of pixels differ" in page
    assert "<th>mean quality</th><td>65.80 %</td>" in _summary_html(table, {})  # (0.366 + 0.95) / 2
