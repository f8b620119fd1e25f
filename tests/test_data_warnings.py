"""One list of image files for every command, and one set of data warnings wherever a data set is read
(issue 17): .tif/.bmp/.webp images train, validate, predict and import alike; files that are not read are
named; an ignore index that is also a class index is warned about by every command that reads dataset.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nlkd.train
from conftest import SMALL_ENCODER
from nlkd.checkpoint import make_checkpoint, save_checkpoint
from nlkd.cli import main
from nlkd.commands.predict import plan_outputs
from nlkd.config import TrainConfig
from nlkd.data.folder import FolderDataset, list_pairs
from nlkd.data.importers.common import pair_by_stem
from nlkd.data.info import DatasetInfo, load_dataset_info
from nlkd.data.notes import data_warnings
from nlkd.io import IMAGE_EXTENSIONS, read_image, write_mask
from nlkd.models import create_model


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout and the non-empty stderr lines (bars' redraws dropped) of ``nlkd argv``."""
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in err.split("\n")]
    return rc, out, [ln for ln in lines if ln]


def photo(seed: int, hw: tuple[int, int] = (24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lossless = {"lossless": True} if path.suffix == ".webp" else {}
    Image.fromarray(pixels).save(path, **lossless)


def stripes(hw: tuple[int, int] = (24, 32), band: int | None = None) -> np.ndarray:
    """Classes 0, 1, 2 in vertical stripes; ``band`` (when given) on the top rows."""
    mask = (np.arange(hw[1])[None, :] * 3 // hw[1]).repeat(hw[0], 0).astype(np.uint8)
    if band is not None:
        mask[:2] = band
    return mask


# ----------------------------------------------------------------------------- one list of image files


@pytest.fixture()
def every_format(tmp_path: Path) -> Path:
    """ROOT/images/train with one image per readable extension (upper case too), a GIF, a text file and a
    hidden file; ROOT/labels/train with their masks, a manifest.json and a mask saved as .jpg."""
    root = tmp_path / "root"
    for i, ext in enumerate(IMAGE_EXTENSIONS):
        name = f"im{i}{ext.upper() if i % 2 else ext}"
        save(root / "images" / "train" / name, photo(i))
        write_mask(root / "labels" / "train" / f"im{i}.png", stripes())
    save(root / "images" / "train" / "anim.gif", photo(99))
    (root / "images" / "train" / "notes.txt").write_text("not an image")
    (root / "images" / "train" / ".DS_Store").write_bytes(b"\0")
    (root / "labels" / "train" / "manifest.json").write_text("{}")
    save(root / "labels" / "train" / "im0_fine.jpg", np.repeat(stripes()[..., None], 3, 2))
    (root / "dataset.yaml").write_text("num_classes: 3\nignore_index: 255\n")
    return root


def test_the_one_list_holds_what_pillow_reads() -> None:
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"} <= set(IMAGE_EXTENSIONS)
    for ext in IMAGE_EXTENSIONS:  # every listed suffix is one Pillow opens
        assert ext in Image.registered_extensions()


def test_training_reads_every_listed_format_and_the_same_pixels(every_format: Path) -> None:
    pairs = list_pairs(every_format, "train")
    assert [s.id for s in pairs] == [f"im{i}" for i in range(len(IMAGE_EXTENSIONS))]
    ds = FolderDataset(every_format, "train", info=load_dataset_info(every_format))
    for i, sample in enumerate(pairs):
        if sample.image_path.suffix.lower() not in (".jpg", ".jpeg"):  # lossless formats: the very pixels
            assert np.array_equal(read_image(sample.image_path), photo(i)), sample.image_path.name
        assert tuple(ds[i]["image"].shape) == (3, 24, 32)


def test_predict_and_import_read_what_training_reads(every_format: Path, tmp_path: Path) -> None:
    images = every_format / "images" / "train"
    files, skipped = plan_outputs(images, tmp_path / "out")
    assert [p.name for p in files] == [s.image_path.name for s in list_pairs(every_format, "train")]
    assert [p.name for p in skipped] == ["anim.gif", "notes.txt"]
    (every_format / "labels" / "train" / "im0_fine.jpg").unlink()
    kept = tmp_path / "kept"  # the importers' pairing (without the GIF and text file, which it would refuse)
    kept.mkdir()
    for path in files:
        (kept / path.name).write_bytes(path.read_bytes())
    assert [i for i, _, _ in pair_by_stem(kept, every_format / "labels" / "train")] == [
        f"im{i}" for i in range(len(IMAGE_EXTENSIONS))
    ]


def test_files_that_are_not_read_are_named(every_format: Path) -> None:
    info = load_dataset_info(every_format)
    warnings = data_warnings(info, every_format, [("train", None)])
    images, labels = every_format / "images" / "train", every_format / "labels" / "train"
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{images}: skipping 2 files that are not read (images: .jpg/")
    assert warnings[0].endswith(": anim.gif, notes.txt")
    assert warnings[1].startswith(f"{labels}: skipping 1 file that is not read") and warnings[1].endswith(
        ": im0_fine.jpg"
    )
    (images / "anim.gif").unlink()
    (images / "notes.txt").unlink()
    (labels / "im0_fine.jpg").unlink()
    assert data_warnings(info, every_format, [("train", None)]) == []  # hidden files and manifest.json: quiet


def test_validate_accepts_every_format_and_says_what_it_skipped(
    every_format: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = cli(capsys, "validate", "--data", str(every_format), "--split", "train")
    assert rc == 0 and out.splitlines()[-1] == f"ok: {len(IMAGE_EXTENSIONS)} pairs"
    assert [ln.split(": skipping ")[0] for ln in err] == [
        f"nlkd validate: warning: {every_format / 'images' / 'train'}",
        f"nlkd validate: warning: {every_format / 'labels' / 'train'}",
    ]


def test_a_mask_without_a_readable_image_names_the_formats(every_format: Path) -> None:
    write_mask(every_format / "labels" / "train" / "anim.png", stripes())
    from nlkd.data.validate import validate_split

    problems = validate_split(every_format, "train", 3, 255)
    assert problems == [
        f"{every_format / 'labels' / 'train' / 'anim.png'}: no image anim.* in {every_format / 'images' / 'train'} "
        f"(read: {', '.join(IMAGE_EXTENSIONS)})"
    ]


# ----------------------------------------------------------------------------- ignore index = a class index


@pytest.fixture(scope="module")
def class_ignore_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train / 4 val images of 3 classes whose dataset.yaml says ignore_index 2 (a class index)."""
    root = tmp_path_factory.mktemp("ci") / "data"
    for split in ("train", "val"):
        for i in range(4):
            save(root / "images" / split / f"{split}{i}.png", photo(i, (32, 32)))
            write_mask(root / "labels" / split / f"{split}{i}.png", stripes((32, 32)))
    (root / "dataset.yaml").write_text("num_classes: 3\nignore_index: 2\n")
    return root


@pytest.fixture(scope="module")
def class_ignore_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 3-class checkpoint made for ignore_index 2 (it matches ``class_ignore_data``)."""
    cfg = TrainConfig(device="cpu")
    cfg.model.encoder = SMALL_ENCODER
    cfg.data.size = [32, 32]
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    model = create_model("unet", 3, encoder=SMALL_ENCODER)
    save_checkpoint(make_checkpoint(cfg, DatasetInfo(num_classes=3, ignore_index=2), [model], epoch=0), path)
    return path


WARNING = "ignore_index 2 is also a class index (0..2): class 2 will be neither learned nor scored"


@pytest.mark.parametrize("command", ["validate", "eval", "score", "audit", "corrupt"])
def test_every_command_reading_dataset_yaml_warns_on_a_class_ignore_index(
    command: str, class_ignore_data: Path, class_ignore_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, ckpt = str(class_ignore_data), str(class_ignore_ckpt)
    argv = {
        "validate": ["--data", data, "--split", "train"],
        "eval": ["--checkpoint", ckpt, "--data", data, "--device", "cpu", "--json"],
        "score": ["--checkpoint", ckpt, "--data", data, "--device", "cpu", "--out", str(tmp_path / "s.csv")],
        "audit": ["--checkpoint", ckpt, "--data", data, "--device", "cpu", "--out", str(tmp_path / "audit")],
        "corrupt": ["--src", str(class_ignore_data / "labels" / "train"), "--dst", str(tmp_path / "c")],
    }[command]
    rc, _, err = cli(capsys, command, *argv)
    assert rc == 0
    warnings = [ln for ln in err if ln.startswith(f"nlkd {command}: warning: ignore_index")]
    assert len(warnings) == 1 and warnings[0].startswith(f"nlkd {command}: warning: {WARNING}")


def test_corrupt_warns_about_an_ignore_index_flag_that_is_a_class(
    class_ignore_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = str(class_ignore_data / "labels" / "train")
    rc, _, err = cli(capsys, "corrupt", "--src", src, "--dst", str(tmp_path / "a"), "--ignore-index", "1")
    assert rc == 0 and any(ln.startswith("nlkd corrupt: warning: ignore_index 1 is also a class index") for ln in err)
    rc, _, err = cli(capsys, "corrupt", "--src", src, "--dst", str(tmp_path / "b"), "--ignore-index", "255")
    assert rc == 0 and not any("warning" in ln for ln in err)


def test_train_warns_on_a_class_ignore_index_into_train_log(
    class_ignore_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nlkd.train, "_plot", lambda out: None)
    out = tmp_path / "run"
    argv = ["train", "--data", str(class_ignore_data), "--out", str(out), "--size", "32x32", "--epochs", "1"]
    rc, stdout, _ = cli(capsys, *argv, "--encoder", SMALL_ENCODER, "--batch-size", "4", "--device", "cpu")
    assert rc == 0
    assert [ln for ln in stdout.splitlines() if "warning" in ln] == [f"warning: {data_warnings_line()}"]
    assert f"warning: {data_warnings_line()}" in (out / "train.log").read_text()


def data_warnings_line() -> str:
    return data_warnings(DatasetInfo(num_classes=3, ignore_index=2), "", [])[0]
