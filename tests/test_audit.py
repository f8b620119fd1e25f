"""nlkd audit: per-image numbers, detection metrics, CSV / gallery / HTML outputs, resume, bad input,
out-of-fold teachers (nlkd.folds) and the audit benchmark, on the tiny synthetic data set."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from nlkd.audit import (
    AuditTable,
    Teachers,
    audit_batch,
    audit_dataset,
    auroc,
    average_precision,
    detection,
    known_bad_ids,
    precision_recall_curve,
    roc_curve,
)
from nlkd.audit.gallery import disagreement_map
from nlkd.checkpoint import model_from_checkpoint
from nlkd.cli import main
from nlkd.data.folder import FolderDataset
from nlkd.data.info import load_dataset_info
from nlkd.data.validate import validate_split
from nlkd.errors import DataError
from nlkd.folds import assign_folds
from nlkd.io import read_mask, write_mask
from nlkd.metrics import bf_and_iou
from nlkd.teacher import read_scores_csv, score_dataset

BAD = [f"train_{i:04d}" for i in (1, 4, 6, 9, 12, 15)]
SIZE = (32, 48)


# ----------------------------------------------------------------------------- fixtures


def _linked_root(tiny_data: Path, root: Path) -> Path:
    """A data root sharing tiny_data's images and clean labels through symlinks (tiny_data stays as is)."""
    (root / "labels").mkdir(parents=True)
    os.symlink(tiny_data / "images", root / "images")
    for split in ("train", "val"):
        os.symlink(tiny_data / "labels" / split, root / "labels" / split)
    shutil.copy(tiny_data / "dataset.yaml", root / "dataset.yaml")
    return root


@pytest.fixture(scope="module")
def bad_root(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_data + labels/bad: the clean train labels with six masks flipped upside down (sky at the
    bottom), listed in a manifest. Gross errors that even a two-epoch teacher sees."""
    root = _linked_root(tiny_data, tmp_path_factory.mktemp("bad") / "data")
    for p in sorted((tiny_data / "labels" / "train").glob("*.png")):
        mask = read_mask(p)
        write_mask(root / "labels" / "bad" / p.name, np.flipud(mask) if p.stem in BAD else mask)
    (root / "labels" / "bad" / "manifest.json").write_text(json.dumps({"corrupted": BAD}))
    return root


@pytest.fixture(scope="module")
def teacher(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A U-Net trained for two epochs on the clean train labels (at one epoch the ranking is not yet
    reliable across seeds; at two it separated the flipped masks perfectly for seeds 0-3)."""
    from nlkd.train import train

    run = tmp_path_factory.mktemp("teacher") / "run"
    train(tiny_config(tiny_data, run, epochs=2), log=lambda *a: None)
    return run / "last.pt"


def _audit_args(ckpt: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "audit",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(root),
        "--split",
        "train",
        "--labels",
        "bad",
        "--out",
        str(out),
        "--top",
        "2",
        "--device",
        "cpu",
        *extra,
    ]


@pytest.fixture(scope="module")
def audit_out(teacher: Path, bad_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit") / "out"
    assert main(_audit_args(teacher, bad_root, out)) == 0
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


# ----------------------------------------------------------------------------- detection metrics


@pytest.mark.parametrize(
    ("scores", "positive", "want_auroc", "want_ap"),
    [
        ([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 3 / 4, (1 / 1 + 2 / 3) / 2),
        ([0.5, 0.5, 0.1], [1, 0, 1], 1 / 4, 1 / 2 * 1 / 2 + 1 / 2 * 2 / 3),  # tie: half a pair, one threshold
        ([3, 2, 1], [1, 1, 0], 1.0, 1.0),
        ([1, 2], [1, 0], 0.0, 1 / 2),
        ([1, 1, 1, 1], [1, 0, 0, 1], 1 / 2, 1 / 2),
        ([0.9, 0.8, 0.8, 0.1], [1, 1, 0, 0], 7 / 8, 1 / 2 * 1 + 1 / 2 * 2 / 3),
    ],
)
def test_auroc_and_ap_hand_computed(scores, positive, want_auroc, want_ap):
    s, y = np.array(scores, dtype=float), np.array(positive, dtype=bool)
    assert auroc(s, y) == pytest.approx(want_auroc, abs=1e-12)
    assert average_precision(s, y) == pytest.approx(want_ap, abs=1e-12)


def test_detection_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 6, size=30).astype(float)  # many ties
        y = rng.random(30) < 0.4
        pairs = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]
        assert auroc(s, y) == pytest.approx(np.mean(pairs), abs=1e-12)
        fpr, tpr = roc_curve(s, y)
        area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties get half credit
        assert area == pytest.approx(auroc(s, y), abs=1e-12)
        u = rng.random(30)  # no ties: AP is the mean precision at the rank of each positive
        ranks = np.argsort(np.argsort(-u)) + 1
        want = np.mean([np.sum(y & (ranks <= r)) / r for r in ranks[y]])
        assert average_precision(u, y) == pytest.approx(want, abs=1e-12)
        precision, recall = precision_recall_curve(u, y)
        assert recall[-1] == 1.0 and precision[-1] == pytest.approx(y.mean())


def test_detection_metrics_degenerate_and_bad_arguments():
    assert np.isnan(auroc(np.array([1.0, 2.0]), np.array([True, True])))
    assert np.isnan(auroc(np.array([1.0, 2.0]), np.array([False, False])))
    assert np.isnan(average_precision(np.array([1.0, 2.0]), np.array([False, False])))
    with pytest.raises(ValueError, match="bool"):
        auroc(np.array([1.0, 2.0]), np.array([1, 0]))
    with pytest.raises(ValueError, match="finite"):
        average_precision(np.array([1.0, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="same length"):
        auroc(np.array([1.0]), np.array([True, False]))


# ----------------------------------------------------------------------------- per-batch numbers


def test_audit_batch_agrees_with_metrics_and_respects_ignore_index():
    g = torch.Generator().manual_seed(0)
    up = torch.nn.functional.interpolate
    target = up(torch.randn(3, 4, 4, 6, generator=g), size=(16, 24), mode="bicubic").argmax(1)
    pred = target.clone()
    pred[:, 5:9, 3:12] = 2  # a wrong block
    target[0, :4] = 255  # ignored band
    target[2] = 255  # an image without valid pixels
    s = audit_batch(pred, target, 4, tolerance=2.0, ignore_index=255)
    bf, iou = bf_and_iou(pred, target, 4, 2.0, 255)
    np.testing.assert_allclose(s.bf, bf.numpy(), equal_nan=True)
    np.testing.assert_allclose(s.iou, iou.numpy(), equal_nan=True)
    # BF is the mean of BF_c over the classes with a boundary in either map
    np.testing.assert_allclose(1 - np.nanmean(s.class_disagreement[:2], 1), s.bf[:2], atol=1e-12)
    valid = target[:2] != 255
    differ = (pred[:2] != target[:2]) & valid
    np.testing.assert_allclose(s.pixel_disagreement[:2], (differ.sum((1, 2)) / valid.sum((1, 2))).numpy())
    assert np.isnan(s.bf[2]) and np.isnan(s.pixel_disagreement[2]) and np.isnan(s.class_disagreement[2]).all()
    np.testing.assert_allclose(s.labelled, [1 - 4 / 16, 1.0, 0.0])  # share of labelled pixels, no teacher needed
    # whatever the prediction says at ignored pixels changes nothing
    pred2 = pred.masked_fill(target == 255, 1)
    s2 = audit_batch(pred2, target, 4, tolerance=2.0, ignore_index=255)
    for a, b in (
        (s.bf, s2.bf),
        (s.pixel_disagreement, s2.pixel_disagreement),
        (s.class_disagreement, s2.class_disagreement),
    ):
        np.testing.assert_array_equal(a, b)


def test_strict_scores_count_unlabelled_bands_as_disagreement():
    from nlkd.audit import strict_bf_iou
    from nlkd.metrics import segmentation_stats

    g = torch.Generator().manual_seed(1)
    up = torch.nn.functional.interpolate
    fine = up(torch.randn(4, 4, 6, 8, generator=g), size=(24, 32), mode="bicubic").argmax(1)
    pred = fine.clone()
    pred[:, 10:14, 5:20] = 3  # the teacher errs in a block
    # a polygon-like mask: the fine one with an unlabelled band along every class boundary
    edge = torch.zeros_like(fine, dtype=torch.bool)
    edge[:, 1:] |= fine[:, 1:] != fine[:, :-1]
    edge[:, :, 1:] |= fine[:, :, 1:] != fine[:, :, :-1]
    band = torch.nn.functional.max_pool2d(edge[:, None].float(), 3, 1, 1)[:, 0] > 0  # 2-3 px wide
    banded = fine.masked_fill(band, 255)
    banded[3] = 255  # nothing labelled
    base = segmentation_stats(pred, banded, 4, 2.0, 255)
    bf, iou = strict_bf_iou(pred, banded, 4, 2.0, 255)
    ok = slice(0, 3)
    assert (base.bf[ok] + base.iou[ok] > (bf[ok] + iou[ok]).float() + 0.05).all()  # the band no longer helps
    assert torch.isnan(bf[3]) and torch.isnan(iou[3])
    fine_bf, fine_iou = strict_bf_iou(pred, fine, 4, 2.0, 255)  # nothing unlabelled: the usual numbers
    plain = segmentation_stats(pred, fine, 4, 2.0, 255)
    assert torch.equal(fine_bf, plain.bf.double()) and torch.equal(fine_iou, plain.iou.double())
    assert ((fine_bf + fine_iou)[ok] > (bf + iou)[ok]).all()  # the banded mask now ranks below its fine one
    # IoU by hand: unlabelled pixels the teacher calls class c count against class c
    for b in range(3):
        ious = []
        for c in range(4):
            p, t, lab = pred[b] == c, banded[b] == c, banded[b] != 255
            union = (p & lab) | t | (p & ~lab)
            if union.any():
                ious.append(int((p & t).sum()) / int(union.sum()))
        assert iou[b].item() == pytest.approx(np.mean(ious), abs=1e-12)


def test_disagreement_map_marks_only_valid_differences():
    image = np.full((2, 2, 3), 100, np.uint8)
    out = disagreement_map(image, np.array([[1, 1], [0, 0]]), np.array([[1, 0], [255, 0]]), ignore_index=255)
    assert out[0, 1].tolist() == [230, 20, 20]  # differs
    assert out[1, 0].tolist() == out[0, 0].tolist() == [35, 35, 35]  # ignored / agreeing: dimmed photo


# ----------------------------------------------------------------------------- the command


def test_corrupted_annotations_rank_worst(audit_out: Path):
    summary = json.loads((audit_out / "audit.json").read_text())
    assert summary["n_images"] == 16
    det = summary["detection"]
    assert (det["n"], det["n_bad"]) == (16, 6) and det["source"].endswith("manifest.json")
    assert det["auroc"] > 0.9  # the flipped masks are gross errors
    rows = _read_csv(audit_out / "scores.csv")
    q = {r["id"]: float(r["quality"]) for r in rows}
    assert np.mean([q[i] for i in BAD]) < np.mean([v for i, v in q.items() if i not in BAD])


def test_scores_csv_columns_order_and_values(audit_out: Path, teacher: Path, bad_root: Path):
    rows = _read_csv(audit_out / "scores.csv")
    header = list(rows[0])
    fixed = ["id", "quality", "bf", "iou", "worst_classes", "pixel_disagreement", "labelled", "strict_quality"]
    fixed += ["image", "mask"]
    names = ["sky", "ground", "building", "tree", "pole", "wire"]
    assert header == fixed + [f"boundary_disagreement:{n}" for n in names]
    assert len(rows) == 16
    quality = [float(r["quality"]) for r in rows]
    assert quality == sorted(quality)  # worst first
    # the numbers are those of nlkd's own scorer on the same teacher and data
    model, _, info = model_from_checkpoint(teacher)
    ref = score_dataset(model, FolderDataset(bad_root, "train", "bad", info=info, size=SIZE), 2.0)
    by_id = {i: (b, u, m) for i, b, u, m in zip(ref.ids, ref.bf, ref.iou, ref.bfmiou)}
    for r in rows:
        b, u, m = by_id[r["id"]]
        assert (float(r["bf"]), float(r["iou"]), float(r["quality"])) == pytest.approx((b, u, m), abs=2e-6)
        worst = [c for c in r["worst_classes"].split(";") if c]
        assert len(worst) <= 3 and set(worst) <= set(names)
        per_class = {n: float(r[f"boundary_disagreement:{n}"]) for n in names}
        assert all(per_class[a] >= per_class[b] for a, b in itertools.pairwise(worst))
        assert 0 <= float(r["pixel_disagreement"]) <= 1
        assert float(r["labelled"]) == 1.0  # the synthetic set has no ignore label ...
        assert r["strict_quality"] == r["quality"]  # ... so nothing is stricter
        assert Path(r["image"]).is_file() and Path(r["mask"]) == bad_root / "labels" / "bad" / f"{r['id']}.png"
    # the nlkd-score-format copy plugs into `nlkd train --teacher-scores`
    weights = read_scores_csv(audit_out / "teacher_scores.csv")
    assert weights == pytest.approx({r["id"]: float(r["quality"]) for r in rows}, abs=2e-6)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v is not None]


def test_report_references_only_files_it_wrote(audit_out: Path):
    parser = _Refs()
    parser.feed((audit_out / "report.html").read_text(encoding="utf-8"))
    assert "script" not in parser.tags and "link" not in parser.tags  # no external JS/CSS
    for ref in parser.refs:
        assert "://" not in ref and not ref.startswith("/") and ".." not in Path(ref).parts, ref
        assert (audit_out / ref).is_file(), ref
    pictures = {f"{d}/{p.name}" for d in ("gallery", "figures") for p in (audit_out / d).iterdir()}
    assert pictures == {r for r in parser.refs if r.endswith(".png")}  # every picture shown, none stale
    assert sorted(p for p in pictures if p.startswith("gallery/")) == [
        "gallery/best_01.png",
        "gallery/best_02.png",
        "gallery/worst_01.png",
        "gallery/worst_02.png",
    ]
    assert "figures/detection.png" in pictures  # the manifest turns on ROC / PR
    assert {"scores.csv", "teacher_scores.csv"} <= set(parser.refs)
    assert (audit_out / "progress.csv").read_text().startswith("# key=")  # what --resume continues from


def test_bad_mask_value_is_a_validate_style_error(tiny_data: Path, tmp_path: Path, teacher: Path, capsys):
    root = _linked_root(tiny_data, tmp_path / "data")
    shutil.copytree(tiny_data / "labels" / "train", root / "labels" / "bad")
    mask = read_mask(root / "labels" / "bad" / "train_0003.png").copy()
    mask[0, 0] = 9  # 6 classes, no ignore index
    write_mask(root / "labels" / "bad" / "train_0003.png", mask)
    lines = validate_split(root, "train", 6, None, "bad")
    assert len(lines) == 1 and "values [9] outside 0..5" in lines[0]
    out = tmp_path / "out"
    assert main(_audit_args(teacher, root, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlkd audit: error: 1 problem in ") and lines[0] in err.splitlines()
    assert not (out / "scores.csv").exists()


def test_rerun_without_known_bad_ids_drops_the_old_detection_figure(
    audit_out: Path, teacher: Path, bad_root: Path, tmp_path: Path
):
    out = tmp_path / "out"
    shutil.copytree(audit_out, out)
    assert (out / "figures" / "detection.png").is_file()
    args = _audit_args(teacher, bad_root, out)
    args[args.index("--labels") + 1] = "train"  # the clean labels: no manifest, no --known-bad
    assert main(args) == 0
    parser = _Refs()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    assert not (out / "figures" / "detection.png").exists()
    assert not any("detection" in ref for ref in parser.refs)
    assert "detection" not in json.loads((out / "audit.json").read_text())


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing checkpoint", "nope.pt: checkpoint not found"),
        ("corrupt checkpoint", "broken.pt: corrupt or truncated checkpoint"),
        ("class count", "checkpoint has 6 classes, the data set has 8"),
        ("missing known-bad", "nope.txt: cannot read the list of known-bad ids"),
    ],
)
def test_audit_bad_input_is_one_line_and_exit_2(
    case: str, message: str, teacher: Path, bad_root: Path, tmp_path: Path, capsys
):
    ckpt, extra, root = teacher, [], bad_root
    if case == "missing checkpoint":
        ckpt = tmp_path / "nope.pt"
    elif case == "corrupt checkpoint":
        ckpt = tmp_path / "broken.pt"
        ckpt.write_bytes(teacher.read_bytes()[:1000])
    elif case == "class count":  # a data set of 8 classes; the teacher predicts 6
        root = _linked_root(bad_root, tmp_path / "data")
        os.symlink(bad_root / "labels" / "bad", root / "labels" / "bad")
        names = [f"c{i}" for i in range(8)]
        (root / "dataset.yaml").write_text(json.dumps({"num_classes": 8, "class_names": names}))
    else:
        extra = ["--known-bad", str(tmp_path / "nope.txt")]
    out = tmp_path / "out"
    assert main(_audit_args(ckpt, root, out, *extra)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("nlkd audit: error: ") and message in err, err
    assert not (out / "scores.csv").exists()


# ----------------------------------------------------------------------------- resume


class _Counting:
    """Wraps a teacher, recording the ids it was asked about; raises after ``fail_after`` calls."""

    def __init__(self, teachers: Teachers, fail_after: int | None = None) -> None:
        self.teachers, self.fail_after, self.seen = teachers, fail_after, []

    def __call__(self, images, ids):
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt
        self.seen.append(list(ids))
        return self.teachers(images, ids)


def test_resume_skips_images_already_scored(teacher: Path, bad_root: Path, tmp_path: Path):
    model, _, info = model_from_checkpoint(teacher)
    teachers = Teachers([model], [teacher])
    ds = FolderDataset(bad_root, "train", "bad", info=info, size=SIZE, cache=False)
    partial, key = tmp_path / "progress.csv", teachers.key(ds, 2.0)
    interrupted = _Counting(teachers, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        audit_dataset(interrupted, ds, batch_size=4, partial=partial, key=key, save_every=1)
    first = [i for ids in interrupted.seen for i in ids]
    assert len(first) == 8 and partial.read_text().startswith(f"# key={key}\n")
    resumed = _Counting(teachers)
    table = audit_dataset(resumed, ds, batch_size=4, partial=partial, key=key, resume=True)
    assert sorted(i for ids in resumed.seen for i in ids) == sorted(set(ds.ids) - set(first))
    whole = audit_dataset(teachers, ds, batch_size=4)
    np.testing.assert_array_equal(table.quality, whole.quality)  # the progress file is exact
    np.testing.assert_array_equal(table.class_disagreement, whole.class_disagreement)
    with pytest.raises(DataError, match="another teacher"):
        audit_dataset(teachers, ds, partial=partial, key="other", resume=True)


def test_cli_resume_of_a_finished_audit_only_redraws(
    audit_out: Path, teacher: Path, bad_root: Path, tmp_path: Path, monkeypatch, capsys
):
    out = tmp_path / "out"
    shutil.copytree(audit_out, out)
    before = (out / "scores.csv").read_text()
    seen: list[str] = []
    call = Teachers.__call__
    monkeypatch.setattr(Teachers, "__call__", lambda self, x, ids: (seen.extend(ids), call(self, x, ids))[1])
    assert main(_audit_args(teacher, bad_root, out, "--resume")) == 0
    assert len(seen) == 4  # the 2 worst + 2 best gallery images, nothing streamed
    assert (out / "scores.csv").read_text() == before
    worst = ", ".join(f"{r['id']} ({100 * float(r['quality']):.1f} %)" for r in _read_csv(out / "scores.csv")[:3])
    assert f"lowest quality: {worst}" in capsys.readouterr().out.splitlines()  # percent on screen, fractions in CSV


def test_resume_after_a_kill_mid_row_gives_the_uninterrupted_table(
    audit_out: Path, teacher: Path, bad_root: Path, tmp_path: Path, monkeypatch
):
    """progress.csv is appended to as the audit goes; a run killed while writing a row leaves a half line.
    --resume keeps the complete rows, scores the rest (the half row's image again), and writes the same
    scores.csv as the run that was never interrupted."""
    out = tmp_path / "out"
    shutil.copytree(audit_out, out)
    before = (out / "scores.csv").read_text()
    progress = out / "progress.csv"
    lines = progress.read_text().splitlines(keepends=True)
    assert lines[0].startswith("# key=") and len(lines) == 2 + 16  # key, header, one row per image
    kept = lines[: 2 + 9]
    progress.write_text("".join(kept) + lines[2 + 9][: len(lines[2 + 9]) // 2])  # 9 rows and half of one
    (out / "scores.csv").unlink()
    seen: list[str] = []
    call = Teachers.__call__
    monkeypatch.setattr(Teachers, "__call__", lambda self, x, ids: (seen.extend(ids), call(self, x, ids))[1])
    assert main(_audit_args(teacher, bad_root, out, "--resume")) == 0
    assert len(seen) == 7 + 4  # the 7 images without a complete row, then the gallery's 2 worst + 2 best
    kept_ids = {ln.split(",")[0] for ln in kept[2:]}
    assert not kept_ids & set(seen[:7])
    assert (out / "scores.csv").read_text() == before
    assert (out / "classes.csv").read_text() == (audit_out / "classes.csv").read_text()  # counts resumed too
    assert len(progress.read_text().splitlines()) == 2 + 16 and progress.read_text().endswith("\n")


def test_known_bad_file_and_detection(tmp_path: Path):
    table = AuditTable.empty(["a", "b", "c", "d"], ["ia"] * 4, ["ma"] * 4, ["x"])
    table.bf[:] = table.iou[:] = [0.1, 0.9, np.nan, 0.5]
    listed = tmp_path / "bad.txt"
    listed.write_text("# reviewed by hand\na\n\nd  # blurry\nzzz\n")
    ids, source = known_bad_ids(tmp_path / "no-manifest-here", str(listed))
    assert ids == {"a", "d", "zzz"} and source == str(listed)
    found = detection(table, ids, source)
    assert (found.n, found.n_bad, found.unknown_ids) == (3, 2, ["zzz"])  # c has no score: left out
    assert found.auroc == 1.0 and found.average_precision == 1.0
    # ranked by labelled share instead (needs no teacher, so "c" counts): bad a = 1.0, d = 0.6 vs good
    # b = 0.8, c = 1.0; pairs (a, b) 0, (a, c) tie 1/2, (d, b) 1, (d, c) 1
    table.labelled[:] = [1.0, 0.8, 1.0, 0.6]
    by_share = detection(table, ids, source, by="labelled")
    assert by_share.n == 4 and by_share.auroc == pytest.approx(2.5 / 4)
    with pytest.raises(ValueError, match="by must be"):
        detection(table, ids, source, by="ce")
    assert known_bad_ids(tmp_path, None) is None
    with pytest.raises(DataError, match="cannot read"):
        known_bad_ids(tmp_path, str(tmp_path / "missing.txt"))


# ----------------------------------------------------------------------------- out-of-fold teachers


def _fold_flags(tiny_data: Path) -> list[str]:
    return [
        "--data",
        str(tiny_data),
        "--split",
        "train",
        "--labels",
        "train_coarse",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--size",
        "32x48",
        "--device",
        "cpu",
    ]


@pytest.fixture(scope="module")
def oof(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``nlkd score --folds 2``: two one-epoch teachers on train_coarse, each on the other fold."""
    csv_path = tmp_path_factory.mktemp("oof") / "oof.csv"
    assert main(["score", *_fold_flags(tiny_data), "--out", str(csv_path)]) == 0
    return csv_path


def test_folds_score_each_image_with_the_teacher_that_did_not_see_it(oof: Path, tiny_data: Path):
    folds_dir = oof.with_name("oof_folds")
    ids = sorted(p.stem for p in (tiny_data / "labels" / "train_coarse").glob("*.png"))
    folds = assign_folds(ids, 2, seed=0)
    assert sorted(folds.values()) == [0] * 8 + [1] * 8
    assert {r["id"]: int(r["fold"]) for r in _read_csv(folds_dir / "folds.csv")} == folds
    assert assign_folds(ids[::-1], 2, seed=0) == folds and assign_folds(ids, 2, seed=1) != folds
    scores = read_scores_csv(oof)  # the `nlkd score` columns: id, quality, bf, iou
    assert list(_read_csv(oof)[0]) == ["id", "quality", "bf", "iou"] and sorted(scores) == ids
    full = FolderDataset(tiny_data, "train", "train_coarse", info=load_dataset_info(tiny_data), size=SIZE)
    for f in range(2):
        data = folds_dir / f"fold_{f}" / "data"
        trained_on = sorted(p.stem for p in (data / "images" / "fold_train").iterdir())
        assert trained_on == sorted(i for i in ids if folds[i] != f)
        assert sorted(p.stem for p in (data / "labels" / "fold_train").iterdir()) == trained_on
        assert (data / "labels" / "fold_train" / f"{trained_on[0]}.png").resolve() == (
            tiny_data / "labels" / "train_coarse" / f"{trained_on[0]}.png"
        ).resolve()
        model = model_from_checkpoint(folds_dir / f"fold_{f}" / "run" / "last.pt")[0]
        ref = score_dataset(model, full, 2.0)
        for i, m in zip(ref.ids, ref.bfmiou):
            if folds[i] == f:  # held out from teacher f: its score comes from teacher f
                assert scores[i] == pytest.approx(m, abs=2e-6)


def test_audit_folds_reuses_fold_teachers(oof: Path, tiny_data: Path, tmp_path: Path):
    folds_dir = oof.with_name("oof_folds")
    stamp = [(folds_dir / f"fold_{f}" / "run" / "last.pt").stat().st_mtime_ns for f in range(2)]
    out = tmp_path / "audit"
    argv = ["audit", *_fold_flags(tiny_data), "--folds-dir", str(folds_dir), "--out", str(out), "--top", "1"]
    assert main(argv) == 0
    assert [(folds_dir / f"fold_{f}" / "run" / "last.pt").stat().st_mtime_ns for f in range(2)] == stamp
    rows = {r["id"]: float(r["quality"]) for r in _read_csv(out / "scores.csv")}
    assert rows == pytest.approx(read_scores_csv(oof), abs=2e-6)
    differ = [  # train_coarse's masks that its corruption changed (its manifest lists 8, 3 of them unchanged)
        p for p in (tiny_data / "labels" / "train_coarse").glob("*.png")
        if p.read_bytes() != (tiny_data / "labels" / "train" / p.name).read_bytes()
    ]  # fmt: skip
    assert json.loads((out / "audit.json").read_text())["detection"]["n_bad"] == len(differ) == 5


def test_fold_config_takes_the_checkpoint_config(teacher: Path, tiny_data: Path):
    from nlkd.cli import build_parser
    from nlkd.commands.audit import fold_config

    args = build_parser().parse_args(["audit", "--checkpoint", str(teacher), "--out", "x", *_fold_flags(tiny_data)])
    cfg = fold_config(args)
    assert (cfg.epochs, cfg.data.labels, cfg.data.root, cfg.data.size) == (1, "train_coarse", str(tiny_data), [32, 48])
    assert (cfg.batch_size, cfg.model.name) == (4, "unet")  # from the teacher's own config


# ----------------------------------------------------------------------------- benchmark


def _bench():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_audit
    finally:
        sys.path.pop(0)
    return bench_audit


def test_bench_audit_table(teacher: Path, bad_root: Path, capsys):
    pytest.importorskip("cleanlab")
    argv = ["--data", str(bad_root), "--checkpoint", str(teacher), "--labels", "bad", "--device", "cpu"]
    assert _bench().main(argv) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and "AUROC" not in ln]
    assert [r.split(" | ")[0] for r in rows] == [
        "| BFmIoU quality (nlkd)",
        "| BFmIoU, unlabelled pixels = disagreement",
        "| BFmIoU × labelled share",
        "| cleanlab get_label_quality_scores (softmin)",
        "| mean pixel cross-entropy",
        "| share of labelled pixels (no teacher)",
        "| chance",
    ]
    assert "Command:" in out and "Machine:" in out and "teacher's argmax" in out
    assert float(rows[0].split(" | ")[2]) > 0.9  # BFmIoU AUROC on the flipped masks
    assert rows[5].split(" | ")[2:4] == ["0.500", "0.375"]  # flipped masks keep every label: no signal
    assert rows[1].split(" | ")[2:4] == rows[0].split(" | ")[2:4] == rows[2].split(" | ")[2:4]  # ... nor change


def test_bench_audit_without_cleanlab(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cleanlab", None)  # import cleanlab -> ImportError
    assert _bench().main(["--data", "x", "--checkpoint", "y", "--labels", "z"]) == 1
    assert "pip install cleanlab" in capsys.readouterr().err


def test_polygon_coarse_annotations_found_by_their_unlabelled_share(tiny_data: Path, teacher: Path, tmp_path: Path):
    """Polygon-coarse masks leave a band unlabelled; the report ranks by that share too (no teacher)."""
    from nlkd.noise import polygon_coarse

    root = _linked_root(tiny_data, tmp_path / "data")
    (root / "dataset.yaml").write_text(
        (root / "dataset.yaml").read_text().replace("ignore_index: null", "ignore_index: 255")
    )
    rng = np.random.default_rng(0)
    for p in sorted((tiny_data / "labels" / "train").glob("*.png")):
        mask = read_mask(p)
        write_mask(root / "labels" / "bad" / p.name, polygon_coarse(mask, rng) if p.stem in BAD else mask)
    (root / "labels" / "bad" / "manifest.json").write_text(json.dumps({"corrupted": BAD}))
    out = tmp_path / "out"
    assert main(_audit_args(teacher, root, out)) == 0
    summary = json.loads((out / "audit.json").read_text())
    assert summary["detection_by_labelled"]["auroc"] == 1.0  # every coarse mask lost its band, no clean one did
    rows = {r["id"]: float(r["labelled"]) for r in _read_csv(out / "scores.csv")}
    assert all(rows[i] < 1 for i in BAD) and all(v == 1 for i, v in rows.items() if i not in BAD)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "leaves unlabelled" in page and "strict quality" in page
    # the band raises BFmIoU; counting it as disagreement turns the ranking the right way round
    strict, plain = summary["detection_by_strict_quality"]["auroc"], summary["detection"]["auroc"]
    assert strict > 0.5 > plain, (strict, plain)


def test_detection_table_script(tmp_path: Path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import detection_table
    finally:
        sys.path.pop(0)
    (tmp_path / "manifest.json").write_text(json.dumps({"corrupted": ["a", "b"]}))
    scores = tmp_path / "s.csv"
    scores.write_text("id,bf,iou,bfmiou,weight\na,0,0,0.2,0.2\nb,0,0,0.6,0.6\nc,0,0,0.4,0.4\nd,0,0,0.9,0.9\n")
    for k, (miou, bf) in enumerate([(0.40, 0.30), (0.42, 0.34)]):
        (tmp_path / f"run{k}").mkdir()
        record = {"epoch": 20, "val_miou": miou, "val_bf": bf}
        (tmp_path / f"run{k}" / "metrics.jsonl").write_text('{"epoch": 19}\n' + json.dumps(record) + "\n")
    runs = f"oof={tmp_path / 'run0'},{tmp_path / 'run1'}"
    argv = ["--manifest", str(tmp_path / "manifest.json"), "--scores", f"oof={scores}", "--students", runs]
    assert detection_table.main(argv) == 0
    out = capsys.readouterr().out
    # bad a = 0.2, b = 0.6 vs good c = 0.4, d = 0.9: pairs (a,c) (a,d) (b,d) found, (b,c) not -> 3/4
    assert "| oof | 0.750 | 0.833 | 0.400 | 0.650 |" in out
    assert "| oof | 41.00 ± 1.41 | 32.00 ± 2.83 | 40.00 / 30.00, 42.00 / 34.00 | 2 (epoch [20]) |" in out
    scores.write_text("id,bf,iou,bfmiou,weight\na,0.9,0,0,0\nb,0.1,0,0,0\nc,0.5,0,0,0\nd,0.3,0,0,0\n")
    assert detection_table.main([*argv[:4], "--column", "bf"]) == 0
    out = capsys.readouterr().out
    # bf: bad a = 0.9, b = 0.1 vs good c = 0.5, d = 0.3: only (b,c) and (b,d) found -> 2/4
    assert "| teacher scores | AUROC | AP | mean bf, corrupted | mean bf, clean |" in out
    assert "| oof | 0.500 |" in out and "| 0.500 | 0.400 | 1.25 |" in out
    assert "mean of" not in out  # one CSV: no mean row
    assert detection_table.main([*argv[:3], f"a={scores}", f"b={tmp_path / 's.csv'}", "--column", "bf"]) == 0
    assert "| mean of 2 | 0.500 (0.500–0.500) | 0.750 | 0.500 | 0.400 | 1.25 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"s.csv: scores CSV needs columns 'id' and 'nope'"):
        detection_table.main([*argv[:4], "--column", "nope"])
    with pytest.raises(SystemExit, match=r"run2/metrics.jsonl: no metrics yet"):
        detection_table.main([*argv[:-1], f"{runs},{tmp_path / 'run2'}"])
    with pytest.raises(SystemExit, match=r"missing.csv: cannot read scores file"):
        detection_table.main([*argv[:2], "--scores", f"x={tmp_path / 'missing.csv'}"])


def test_bench_audit_counts_classes_before_and_after_corruption(tmp_path: Path):
    src, dst = tmp_path / "fine", tmp_path / "coarse"
    write_mask(src / "a.png", np.array([[0, 1], [2, 3]], np.uint8))
    write_mask(dst / "a.png", np.array([[0, 255], [2, 255]], np.uint8))  # classes 1 and 3 vanished
    manifest = {"corrupted": ["a"], "source": str(src)}
    assert _bench()._classes_per_corrupted_mask(manifest, dst, 255) == (4.0, 2.0)
    assert _bench()._classes_per_corrupted_mask({"corrupted": ["a"]}, dst, 255) is None


class _Wrong(torch.nn.Module):
    """A 'teacher' that predicts one class everywhere."""

    def __init__(self, num_classes: int, cls: int) -> None:
        super().__init__()
        self.num_classes, self.cls = num_classes, cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], self.num_classes, *x.shape[2:])
        logits[:, self.cls] = 1.0
        return logits


def test_audit_warns_about_a_teacher_that_agrees_with_nothing(teacher: Path, bad_root: Path, tmp_path: Path):
    from nlkd.commands.audit import run_audit

    _, _, info = model_from_checkpoint(teacher)
    ds = FolderDataset(bad_root, "train", "bad", info=info, size=SIZE, cache=False)
    counts = np.bincount(np.concatenate([np.asarray(ds.get_mask(i)).ravel() for i in range(len(ds))]), minlength=256)
    rarest = int(np.argmin(counts[: info.num_classes]))  # one region of it: no boundary, tiny IoU
    logged: list[str] = []
    teachers = Teachers([_Wrong(info.num_classes, rarest)], [teacher])
    table, _ = run_audit(teachers, ds, tmp_path / "out", top=1, log=logged.append)
    assert np.nanmean(table.quality) < 0.05
    (warning,) = [ln for ln in logged if ln.startswith("warning: ")]
    assert (
        f"mean quality on these {len(ds)} images of split train is {100 * np.nanmean(table.quality):.1f} %" in warning
    )
    good: list[str] = []
    run_audit(Teachers([model_from_checkpoint(teacher)[0]], [teacher]), ds, tmp_path / "ok", top=1, log=good.append)
    assert not [ln for ln in good if ln.startswith("warning: ")]


def _square_masks(shift: int) -> torch.Tensor:
    m = torch.zeros(24, 24, dtype=torch.long)
    m[2:10, 2:10] = 1
    m[14:20, 4 + shift : 10 + shift] = 2
    return m


def test_class_summary_is_evals_per_class_table_of_teacher_vs_annotation() -> None:
    """Class 2's square moved in the prediction: its BF is 0, class 1's is 1; IoU and BF per class are
    SegmentationMetrics' (IoU from the summed counts, BF averaged over images with a class boundary)."""
    from nlkd.audit.classes import class_summary
    from nlkd.metrics import SegmentationMetrics

    target = torch.stack([_square_masks(0), _square_masks(0), torch.zeros(24, 24, dtype=torch.long)])
    pred = torch.stack([_square_masks(10), _square_masks(0), torch.zeros(24, 24, dtype=torch.long)])
    names = ["background", "road", "car", "sign"]
    table = AuditTable.empty(["a", "b", "c"], ["a.png"] * 3, ["a.png"] * 3, names)
    s = audit_batch(pred, target, num_classes=4, tolerance=2.0)
    table.bf, table.iou, table.class_disagreement = s.bf, s.iou, s.class_disagreement
    table.class_intersection, table.class_union = s.class_intersection, s.class_union
    summary = class_summary(table, 2.0)
    evaluated = SegmentationMetrics(4, tolerance=2.0)
    evaluated.update(pred, target)
    want = evaluated.compute()
    np.testing.assert_allclose(summary.iou, want["per_class_iou"], atol=1e-12)
    np.testing.assert_allclose(summary.bf, want["per_class_bf"], atol=1e-12)
    assert summary.bf[1] == 1.0 and summary.bf[2] == 0.5  # moved in one of its two images
    assert summary.n_images.tolist() == [3, 2, 2, 0] and summary.n_boundary.tolist() == [2, 2, 2, 0]
    rows = list(csv.DictReader(summary.to_csv().splitlines()))
    assert list(rows[0]) == ["class", "iou", "bf@2px", "images", "images_with_boundary"]
    assert [r["class"] for r in rows] == ["car", "background", "road", "sign"]  # worst boundary first
    assert rows[-1]["bf@2px"] == "nan" and float(rows[0]["bf@2px"]) == 0.5
    page = summary.to_html()
    assert "<th>BF@2px</th>" in page and "<td>car</td><td>" in page and "n/a" in page


def test_audit_writes_the_per_class_table(audit_out: Path):
    rows = _read_csv(audit_out / "classes.csv")
    assert list(rows[0]) == ["class", "iou", "bf@2px", "images", "images_with_boundary"]
    assert len(rows) == 6 and all(0 <= float(r["iou"]) <= 1 for r in rows)
    bfs = [float(r["bf@2px"]) for r in rows]
    assert bfs == sorted(bfs)
    page = (audit_out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Per class</h2>" in page and "<th>BF@2px</th>" in page
