"""Every ``nlkd`` command end to end on tiny synthetic data, through ``nlkd.cli.main`` (in process).

``demo`` is left out: it trains four models and takes minutes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import train_argv
from nlkd.cli import build_parser, main
from nlkd.config import config_from_dict

VAL_KEYS = {"epoch", "train_loss", "lr", "val_miou", "val_bf", "val_pixel_accuracy", "val_bf_1", "val_miou_band"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """Run ``nlkd argv`` in process: exit code, stdout, and the stderr lines a terminal would show
    (tqdm redraws its bar with carriage returns; only what follows the last one remains)."""
    capsys.readouterr()
    rc = main(list(argv))
    cap = capsys.readouterr()
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in cap.err.split("\n")]
    return rc, cap.out, [ln for ln in lines if ln]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def teacher(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch baseline on the coarse labels, trained with ``nlkd train``: its run folder."""
    out = tmp_path_factory.mktemp("cli") / "baseline"
    rc = main(train_argv(tiny_data, out, "--val-split", "val", "--model", "unet", "--epochs", "2"))
    assert rc == 0
    return out


def test_every_documented_train_flag_exists() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--data",
            "R",
            "--labels",
            "L",
            "--val-split",
            "val",
            "--model",
            "unet",
            "--strategy",
            "nlkd",
            "--teacher",
            "T.pt",
            "--epochs",
            "3",
            "--batch-size",
            "2",
            "--size",
            "16x24",
            "--seed",
            "5",
            "--out",
            "D",
            "--resume",
        ]
    )
    assert (args.data, args.labels, args.val_split, args.model, args.strategy, args.teacher) == (
        "R",
        "L",
        "val",
        "unet",
        "nlkd",
        "T.pt",
    )
    assert (args.epochs, args.batch_size, args.size, args.seed, args.out, args.resume) == (3, 2, [16, 24], 5, "D", True)


@pytest.mark.parametrize("command", ["synth", "corrupt", "validate", "train", "score", "eval", "predict", "demo"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert f"usage: nlkd {command}" in capsys.readouterr().out


def test_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "syn"
    rc, out, err = run(
        capsys,
        "synth",
        str(root),
        "--n-train",
        "4",
        "--n-val",
        "2",
        "--n-test",
        "2",
        "--height",
        "24",
        "--width",
        "32",
        "--coarse-ratio",
        "0.5",
    )
    assert rc == 0 and err == [] and str(root) in out
    for split, n in (("train", 4), ("val", 2), ("test", 2), ("train_coarse", 4)):
        assert len(list((root / "labels" / split).glob("*.png"))) == n
    assert len(list((root / "images" / "train").iterdir())) == 4
    assert yaml.safe_load((root / "dataset.yaml").read_text())["num_classes"] >= 2
    manifest = json.loads((root / "labels" / "train_coarse" / "manifest.json").read_text())
    assert len(manifest["corrupted"]) == 2
    mask = np.asarray(Image.open(root / "labels" / "train_coarse" / f"{sorted(manifest['corrupted'])[0]}.png"))
    assert mask.shape == (24, 32)


def test_synth_bad_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "synth", str(tmp_path / "x"), "--coarse-ratio", "2")
    assert rc == 2 and err == ["nlkd synth: error: --coarse-ratio: expected a number in [0, 1], got 2.0"]


def test_corrupt(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tiny_data / "labels" / "train", tmp_path / "labels_poly"
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    rc, out, _ = run(
        capsys, "corrupt", "--src", str(src), "--dst", str(dst), "--ratio", "0.25", "--mode", "polygon", "--seed", "3"
    )
    assert rc == 0 and "corrupted 4 of 16" in out
    manifest = json.loads((dst / "manifest.json").read_text())
    assert len(manifest["corrupted"]) == 4 and manifest["mode"] == "polygon"
    assert sorted(p.name for p in dst.glob("*.png")) == sorted(n for n in before if n.endswith(".png"))
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # the source is never touched


def test_corrupt_option_of_another_mode(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(
        capsys,
        "corrupt",
        "--src",
        str(tiny_data / "labels" / "train"),
        "--dst",
        str(tmp_path / "x"),
        "--mode",
        "polygon",
        "--radius",
        "1",
        "2",
    )
    assert rc == 2 and err == ["nlkd corrupt: error: --radius: not used by --mode polygon"]


def test_validate_exit_codes(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "validate", "--data", str(tiny_data), "--split", "train", "--labels", "train_coarse")
    assert rc == 0 and out.splitlines()[-1] == "ok: 16 pairs"
    root = tmp_path / "bad"
    for split in ("images", "labels"):
        (root / split / "train").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "train" / f"{i}.png")
        Image.fromarray(np.full((8, 8), 9 * i, np.uint8)).save(root / "labels" / "train" / f"{i}.png")
    rc, _, err = run(capsys, "validate", "--data", str(root), "--split", "train", "--num-classes", "3")
    assert rc == 2
    assert len(err) == 2 and err[0].startswith(f"{root / 'labels' / 'train' / '1.png'}:") and "9" in err[0]
    assert err[1].startswith("nlkd validate: 1 problem")


def test_train_baseline_run_folder(teacher: Path, tiny_data: Path) -> None:
    assert {"config.yaml", "last.pt", "best.pt", "metrics.jsonl", "curves.png"} <= {p.name for p in teacher.iterdir()}
    assert not [p for p in teacher.iterdir() if p.name.endswith(".tmp")]
    cfg = config_from_dict(yaml.safe_load((teacher / "config.yaml").read_text()))
    assert (cfg.data.root, cfg.data.labels, cfg.data.size, cfg.epochs) == (str(tiny_data), "train_coarse", [32, 48], 2)
    recs = records(teacher)
    assert [r["epoch"] for r in recs] == [1, 2]
    for r in recs:
        assert set(r) >= VAL_KEYS
        assert np.isfinite(r["train_loss"]) and 0 <= r["val_miou"] <= 1 and 0 <= r["val_bf"] <= 1
    assert Image.open(teacher / "curves.png").size[0] > 100


def test_train_nlkd_with_teacher(
    teacher: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nlkd"
    rc, stdout, _ = run(
        capsys,
        *train_argv(tiny_data, out, "--strategy", "nlkd", "--teacher", str(teacher / "last.pt"), "--epochs", "2"),
    )
    assert rc == 0
    assert "teacher scores: computed for 16 images" in stdout
    recs = records(out)
    assert len(recs) == 2
    for r in recs:
        assert {"lambda", "w_teacher"} | VAL_KEYS <= set(r)
    # 2 epochs: λ = 0 in the warm-up epoch (the student is not scored), then λ > 0 with w_student logged.
    assert recs[0]["lambda"] == 0.0 and recs[1]["lambda"] > 0 and 0 <= recs[1]["w_student"] <= 1
    scores = list(
        csv.DictReader(ln for ln in (out / "teacher_scores.csv").read_text().splitlines() if not ln.startswith("#"))
    )
    assert len(scores) == 16
    assert recs[0]["w_teacher"] == pytest.approx(np.mean([float(s["quality"]) for s in scores]), abs=1e-5)


def test_train_reweight(teacher: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rw"
    rc, _, _ = run(
        capsys,
        *train_argv(tiny_data, out, "--strategy", "reweight", "--teacher", str(teacher / "best.pt"), "--epochs", "1"),
    )
    assert rc == 0
    [rec] = records(out)
    assert 0 < rec["w_teacher"] <= 1


def test_score(teacher: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "scores.csv"
    rc, out, _ = run(
        capsys,
        "score",
        "--checkpoint",
        str(teacher / "last.pt"),
        "--data",
        str(tiny_data),
        "--split",
        "train",
        "--labels",
        "train_coarse",
        "--device",
        "cpu",
        "--out",
        str(dst),
    )
    assert rc == 0 and "scored 16 images" in out
    with open(dst) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "quality", "bf", "iou"]  # as the audit's scores.csv begins
    assert [r["id"] for r in rows] == sorted(p.stem for p in (tiny_data / "labels" / "train_coarse").glob("*.png"))
    for r in rows:
        quality, bf, iou = (float(r[k]) for k in ("quality", "bf", "iou"))
        assert 0 <= bf <= 1 and 0 <= iou <= 1
        assert quality == pytest.approx((bf + iou) / 2, abs=2e-6)  # BFmIoU by default


def test_score_metric_column(
    teacher: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "s.csv"
    rc, _, _ = run(
        capsys,
        "score",
        "--checkpoint",
        str(teacher / "last.pt"),
        "--data",
        str(tiny_data),
        "--split",
        "val",
        "--metric",
        "bf",
        "--device",
        "cpu",
        "--out",
        str(dst),
    )
    assert rc == 0
    with open(dst) as f:
        assert all(r["quality"] == r["bf"] for r in csv.DictReader(f))


def test_eval_table_and_json(teacher: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(teacher / "best.pt")
    rc, table, _ = run(capsys, "eval", "--checkpoint", ckpt, "--data", str(tiny_data), "--device", "cpu")
    assert rc == 0 and table.splitlines()[0] == f"{ckpt} on {tiny_data} [val]"
    assert table.splitlines()[1].startswith("mIoU ") and "(8 images)" in table
    rc, text, _ = run(capsys, "eval", "--checkpoint", ckpt, "--data", str(tiny_data), "--device", "cpu", "--json")
    result = json.loads(text)
    assert rc == 0 and result["n_images"] == 8
    assert f"mIoU {100 * result['miou']:.2f}" in table
    # The checkpoint's best val mIoU is what eval measures on the same split at the same size.
    best = max(r["val_miou"] for r in records(teacher))
    assert result["miou"] == pytest.approx(best, abs=1e-9)
    assert len(result["per_class_iou"]) == len(result["class_names"])


def test_eval_per_class_table_names_the_bf_tolerance(teacher: Path, tiny_data: Path, capsys) -> None:
    """Per class: IoU and BF in percent under a header that says the tolerance; the JSON holds the same
    numbers as fractions (null where undefined)."""
    args = ["eval", "--checkpoint", str(teacher / "best.pt"), "--data", str(tiny_data), "--device", "cpu"]
    rc, table, _ = run(capsys, *args, "--tolerance", "1")
    rc_json, text, _ = run(capsys, *args, "--tolerance", "1", "--json")
    assert rc == rc_json == 0
    result = json.loads(text)
    assert result["tolerance"] == 1.0 and len(result["per_class_bf"]) == len(result["class_names"])
    lines = table.splitlines()
    assert f"BF@1px {100 * result['bf']:.2f}" in lines[1] and "BF θ" not in table
    header = next(i for i, ln in enumerate(lines) if ln.split() == ["class", "IoU", "BF@1px"])
    for line, name, iou, bf in zip(
        lines[header + 1 :], result["class_names"], result["per_class_iou"], result["per_class_bf"]
    ):
        cells = line.split()
        assert cells[0] == name
        for cell, value in zip(cells[1:], (iou, bf)):
            assert cell == ("n/a" if value is None else f"{100 * value:.2f}")
    assert len(lines) == header + 1 + len(result["class_names"])


def test_score_warns_about_a_weak_teacher(teacher: Path, tiny_data: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import nlkd.teacher
    from nlkd.teacher import ScoreTable

    def weak(model, dataset, *args, **kwargs):
        low = np.full(len(dataset), 0.02)
        return ScoreTable(list(dataset.ids), low, low, low)

    monkeypatch.setattr(nlkd.teacher, "score_dataset", weak)
    args = ["score", "--checkpoint", str(teacher / "best.pt"), "--data", str(tiny_data), "--device", "cpu"]
    rc, out, err = run(capsys, *args, "--out", str(tmp_path / "s.csv"))
    assert rc == 0 and err == [
        "warning: the teacher's mean quality on these 16 images of split train is 2.0 % (below 5 %): its weights "
        "are near zero everywhere; is it a teacher for this data set and labels?"
    ]
    assert out == f"scored 16 images -> {tmp_path / 's.csv'} (mean quality 2.0 %, bfmiou)\n"  # percent, for people


def test_eval_full_resolution(teacher: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, text, _ = run(
        capsys,
        "eval",
        "--checkpoint",
        str(teacher / "last.pt"),
        "--data",
        str(tiny_data),
        "--split",
        "test",
        "--full-resolution",
        "--size",
        "16x24",
        "--device",
        "cpu",
        "--json",
    )
    result = json.loads(text)
    assert rc == 0 and result["n_images"] == 8 and 0 <= result["miou"] <= 1


def test_predict(teacher: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tiny_data / "images" / "test"
    out = tmp_path / "pred"
    rc, stdout, _ = run(
        capsys,
        "predict",
        "--checkpoint",
        str(teacher / "last.pt"),
        "--images",
        str(images),
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert rc == 0 and "predicted 8 images" in stdout
    n_classes = yaml.safe_load((tiny_data / "dataset.yaml").read_text())["num_classes"]
    for src in sorted(images.iterdir()):
        with Image.open(src) as im:
            size = im.size
        with Image.open(out / f"{src.stem}.png") as m:
            assert m.mode == "L" and m.size == size
            assert np.asarray(m).max() < n_classes
        with Image.open(out / f"{src.stem}_overlay.png") as o:
            assert o.mode == "RGB" and o.size == size
    assert len(list(out.iterdir())) == 16
