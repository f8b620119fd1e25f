"""``nlkd train --teacher-scores CSV``, the out-of-fold path: scores are matched to images by id, whatever
the file's row order; a missing id, an id given twice, a value that is not a number (or is negative or
infinite) and a file without a score column are one line naming the file, exit code 2."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from nlkd.cli import main
from nlkd.data.folder import FolderDataset
from nlkd.data.info import load_dataset_info
from nlkd.errors import DataError
from nlkd.teacher import read_scores_csv, teacher_scores


def _ids(data: Path) -> list[str]:
    return sorted(p.stem for p in (data / "labels" / "train_coarse").glob("*.png"))


def _scores(ids: list[str]) -> dict[str, float]:
    """A distinct score per image, not monotone in the id."""
    return {i: round(0.05 + 0.9 * ((7 * k) % len(ids)) / (len(ids) - 1), 6) for k, i in enumerate(ids)}


def _write(path: Path, rows: list[tuple[str, object]], column: str = "weight", comment: bool = False) -> Path:
    text = ("# key=abc\n" if comment else "") + f"id,bf,{column}\n"
    text += "".join(f"{i},0.5,{v}\n" for i, v in rows)
    path.write_text(text)
    return path


def _teacher_weights(data: Path, csv_path: Path, tmp_path: Path) -> torch.Tensor:
    info = load_dataset_info(data)
    ds = FolderDataset(data, "train", "train_coarse", info=info, size=(32, 48))
    return teacher_scores(
        ds,
        teacher=None,
        scores_csv=str(csv_path),
        metric="bfmiou",
        tolerance=2.0,
        cache_dir=tmp_path,
        device=torch.device("cpu"),
        log=lambda *a, **k: None,
    )


def test_shuffled_csv_gives_the_same_weights_as_an_ordered_one(tiny_data: Path, tmp_path: Path) -> None:
    ids = _ids(tiny_data)
    scores = _scores(ids)
    ordered = _write(tmp_path / "ordered.csv", list(scores.items()))
    rows = list(scores.items())
    random.Random(3).shuffle(rows)
    assert [r[0] for r in rows] != ids
    shuffled = _write(tmp_path / "shuffled.csv", [*rows, ("val_0000", 0.01)], comment=True)  # + an id not trained
    w_ordered = _teacher_weights(tiny_data, ordered, tmp_path)
    w_shuffled = _teacher_weights(tiny_data, shuffled, tmp_path)
    assert torch.equal(w_ordered, w_shuffled)
    assert w_ordered.tolist() == pytest.approx([scores[i] for i in ids])  # the data set's order is the ids'


def test_quality_column_of_an_audit_csv_is_accepted(tmp_path: Path) -> None:
    """``nlkd audit``'s and ``nlkd score``'s CSVs hold ``quality`` (taken first); earlier ``nlkd score`` CSVs
    held ``weight``, still read when there is no ``quality``."""
    assert read_scores_csv(_write(tmp_path / "a.csv", [("a", 0.25)], column="quality")) == {"a": 0.25}
    both = tmp_path / "both.csv"
    both.write_text("id,quality,weight\na,0.25,0.75\n")
    assert read_scores_csv(both) == {"a": 0.25}
    assert read_scores_csv(both, "weight") == {"a": 0.75}


def test_nan_is_a_score(tmp_path: Path) -> None:
    """An image without valid pixels has a NaN score (``nlkd score`` writes ``nan``)."""
    assert math.isnan(read_scores_csv(_write(tmp_path / "a.csv", [("a", "nan")]))["a"])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no score for 1 training images, e.g. 'train_0005'"),
        ("duplicate", "line 6: id 'train_0002' given twice (first on line 5)"),
        ("not a number", "line 8: weight of 'train_0005' is not a number: 'high'"),
        ("empty", "line 8: weight of 'train_0005' is not a number: ''"),
        ("negative", "score of 'train_0005' is -0.5; scores must be >= 0 and finite"),
        ("infinite", "score of 'train_0005' is inf; scores must be >= 0 and finite"),
        ("no column", "scores CSV needs columns 'id' and 'quality' or 'weight' or 'bfmiou', got: id, bf, score"),
    ],
)
def test_bad_scores_csv_is_one_line_and_exit_2(
    case: str, message: str, tiny_data: Path, tmp_path: Path, probe_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _ids(tiny_data)
    rows: list[tuple[str, object]] = list(_scores(ids).items())  # file line k + 3 holds rows[k]
    column = "weight"
    if case == "missing":
        del rows[5]
    elif case == "duplicate":
        rows.insert(3, rows[2])
    elif case == "not a number":
        rows[5] = (ids[5], "high")
    elif case == "empty":
        rows[5] = (ids[5], "")
    elif case == "negative":
        rows[5] = (ids[5], -0.5)
    elif case == "infinite":
        rows[5] = (ids[5], "inf")
    elif case == "no column":
        column = "score"
    csv_path = _write(tmp_path / "scores.csv", rows, column=column, comment=True)
    capsys.readouterr()
    argv = ["train", "--data", str(tiny_data), "--labels", "train_coarse", "--out", str(tmp_path / "run")]
    argv += ["--strategy", "nlkd", "--teacher-scores", str(csv_path), "--epochs", "1", "--size", "32x48"]
    argv += ["--device", "cpu", "--set", f"model.name={probe_model}"]
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err
    assert err[0].startswith(f"nlkd train: error: {csv_path}: ")
    assert message in err[0]
    assert not (tmp_path / "run" / "last.pt").exists()


def test_unreadable_scores_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read scores file"):
        read_scores_csv(tmp_path / "nowhere.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00id")
    with pytest.raises(DataError, match=r"bin\.csv"):
        read_scores_csv(tmp_path / "bin.csv")


def test_shuffled_csv_trains_exactly_like_an_ordered_one(
    tiny_data: Path, tmp_path: Path, probe_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the command line: two runs that differ only in the CSV's row order log the same epoch."""
    ids = _ids(tiny_data)
    scores = _scores(ids)
    rows = list(scores.items())
    random.Random(5).shuffle(rows)
    records = []
    for name, r in (("ordered", list(scores.items())), ("shuffled", rows)):
        csv_path = _write(tmp_path / f"{name}.csv", r)
        cfg_out = tmp_path / name
        argv = ["train", "--data", str(tiny_data), "--labels", "train_coarse", "--out", str(cfg_out)]
        argv += ["--strategy", "reweight", "--teacher-scores", str(csv_path), "--epochs", "1", "--size", "32x48"]
        argv += ["--device", "cpu", "--batch-size", "4", "--set", f"model.name={probe_model}"]
        assert main(argv) == 0
        record = json.loads((cfg_out / "metrics.jsonl").read_text())
        records.append({k: v for k, v in record.items() if "seconds" not in k})
    assert records[0] == records[1]
    assert records[0]["w_teacher"] == pytest.approx(sum(scores.values()) / len(scores), abs=1e-6)
