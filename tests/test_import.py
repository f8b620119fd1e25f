"""``nlkd import coco|voc|palette|cvat``: each format becomes a data set ``nlkd validate`` accepts, with known
pixels exact; every bad input is one line naming the file, exit 2, and nothing under --out."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from nlkd.cli import main
from nlkd.data.cvat import format_cvat_labelmap, parse_cvat_labelmap, read_cvat_labelmap
from nlkd.data.importers import IMPORT_FORMATS
from nlkd.data.importers.coco import coco_semantic_mask
from nlkd.data.importers.palette import colour_mask_to_index
from nlkd.data.info import default_palette
from nlkd.errors import DataError

TINY_COCO = Path(__file__).resolve().parent / "data" / "tiny_coco"
H, W = 12, 16


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _validates(root: Path, split: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["validate", "--data", str(root), "--split", split], capsys)
    assert code == 0, err
    assert "ok: " in out


def _mask(root: Path, name: str, split: str = "train") -> np.ndarray:
    return np.asarray(Image.open(root / "labels" / split / f"{name}.png"))


def _refused(argv: list[str], out: Path, named: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Exit 2, one stderr line naming ``named``, nothing at ``out`` and no temporary folder beside it."""
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("nlkd import: error: ")
    assert named in err, err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.import-")]
    return err


def _save_image(path: Path, h: int = H, w: int = W, suffix_seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(suffix_seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------- coco


def _coco_argv(out: Path, annotations: Path = TINY_COCO / "instances.json", images: Path = TINY_COCO / "images"):
    return ["import", "coco", "--annotations", str(annotations), "--images", str(images), "--out", str(out)]


def test_coco_tiny_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pycocotools")
    root = tmp_path / "root"
    code, out, _ = _run(_coco_argv(root), capsys)
    assert code == 0 and "imported 3 images" in out
    _validates(root, "train", capsys)
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    # categories 3 (dog), 1 (cat), 72 (tv) in the JSON -> classes by increasing id after background
    assert meta["class_names"] == ["background", "cat", "dog", "tv"]
    assert meta["source"]["category_ids"] == [None, 1, 3, 72]
    assert meta["ignore_index"] == 255 and meta["num_classes"] == 4
    a, b, c = (_mask(root, n) for n in "abc")
    # a: a cat square (x, y 4..20) with a dog square (12..18) inside, the dog listed first: the smaller wins
    assert (a[6, 6], a[15, 15], a[25, 30]) == (1, 2, 0)
    # b: tv from a compressed RLE (rows 2..10, cols 24..36); a crowd of cats (rows 16..30, cols 2..22) is
    # ignored except under the dog polygon inside it
    assert (b[5, 30], b[18, 4], b[23, 9], b[0, 0]) == (3, 255, 2, 0)
    assert b[2:10, 24:36].tolist() == np.full((8, 12), 3).tolist()
    assert not (b == 1).any()
    assert (c == 0).all()  # no annotations: all background
    assert (root / "images/train/a.png").read_bytes() == (TINY_COCO / "images/a.png").read_bytes()


def test_coco_second_split_and_existing_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pycocotools")
    root = tmp_path / "root"
    assert _run(_coco_argv(root), capsys)[0] == 0
    assert _run([*_coco_argv(root), "--split", "val"], capsys)[0] == 0
    _validates(root, "val", capsys)
    code, _, err = _run([*_coco_argv(root), "--split", "val"], capsys)
    assert code == 2 and f"{root / 'images' / 'val'}: split 'val' exists already" in err
    assert _mask(root, "a", "val").tolist() == _mask(root, "a").tolist()


def test_coco_into_another_data_set_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pycocotools")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = _run(_coco_argv(other), capsys)
    assert code == 2 and f"{other}: exists and is not empty" in err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    (other / "dataset.yaml").write_text("num_classes: 3\n")
    code, _, err = _run([*_coco_argv(other), "--split", "val"], capsys)
    assert code == 2 and f"{other / 'dataset.yaml'}: num_classes" in err


def _broken_coco(tmp_path: Path, change: str) -> tuple[Path, Path, str]:
    """A copy of the tiny COCO set with one thing broken; returns (json, images, text the error names)."""
    src = tmp_path / "src"
    shutil.copytree(TINY_COCO, src)
    path, images = src / "instances.json", src / "images"
    data = json.loads(path.read_text())
    named = str(path)
    if change == "json":
        path.write_text(path.read_text()[:-40])
    elif change == "category":
        data["annotations"][2]["category_id"] = 5
        named += ": annotation 20: category_id 5 is not in categories"
    elif change == "missing_image":
        (images / "c.png").unlink()
        named = str(images / "c.png")
    elif change == "unreadable_image":
        (images / "c.png").write_bytes(b"not a png")
        named = str(images / "c.png")
    elif change == "short_rle":
        data["annotations"][3]["segmentation"]["counts"] = [5, 5]
        named += ": annotation 21: RLE runs"
    elif change == "panoptic":
        data["annotations"] = [{"image_id": 1, "file_name": "a.png", "segments_info": []}]
        named = f"{src / 'instances'}: panoptic PNG folder not found"
    if change not in ("json", "missing_image", "unreadable_image"):
        path.write_text(json.dumps(data))
    return path, images, named


@pytest.mark.parametrize("change", ["json", "category", "missing_image", "unreadable_image", "short_rle", "panoptic"])
def test_coco_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str) -> None:
    pytest.importorskip("pycocotools")
    annotations, images, named = _broken_coco(tmp_path, change)
    out = tmp_path / "root"
    _refused(_coco_argv(out, annotations, images), out, named, capsys)


def _panoptic(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """COCO's panoptic layout: annotations/panoptic_val.json + annotations/panoptic_val/<name>.png."""
    ids = np.zeros((H, W), dtype=np.int64)  # 0 = void
    ids[:, 4:], ids[2:6, 6:10], ids[8:, :3] = 2 + 256 * 7, 300, 5  # stuff (id 1794), a thing, a crowd
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    png_dir = tmp_path / "annotations" / "panoptic_val"
    png_dir.mkdir(parents=True)
    Image.fromarray(rgb).save(png_dir / "x.png")
    _save_image(tmp_path / "images" / "x.jpg")
    segments = [
        {"id": 1794, "category_id": 190, "iscrowd": 0},
        {"id": 300, "category_id": 1, "iscrowd": 0},
        {"id": 5, "category_id": 1, "iscrowd": 1},
    ]
    data = {
        "images": [{"id": 9, "file_name": "x.jpg", "height": H, "width": W}],
        "annotations": [{"image_id": 9, "file_name": "x.png", "segments_info": segments}],
        "categories": [{"id": 190, "name": "grass", "isthing": 0}, {"id": 1, "name": "person", "isthing": 1}],
    }
    (tmp_path / "annotations" / "panoptic_val.json").write_text(json.dumps(data))
    expected = np.full((H, W), 255)
    expected[:, 4:], expected[2:6, 6:10] = 2, 1
    return tmp_path / "annotations" / "panoptic_val.json", expected


def test_coco_panoptic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    annotations, expected = _panoptic(tmp_path)
    out = tmp_path / "root"
    assert _run(_coco_argv(out, annotations, tmp_path / "images"), capsys)[0] == 0
    _validates(out, "train", capsys)
    assert _mask(out, "x").tolist() == expected.tolist()  # void and the crowd segment -> 255
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["class_names"] == ["background", "person", "grass"] and meta["source"]["category_ids"] == [None, 1, 190]


@pytest.mark.parametrize("change", ["segment", "png", "category"])
def test_coco_panoptic_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str) -> None:
    annotations, _ = _panoptic(tmp_path)
    png = tmp_path / "annotations/panoptic_val/x.png"
    if change == "segment":
        rgb = np.asarray(Image.open(png)).copy()
        rgb[0, 0] = (7, 0, 0)
        Image.fromarray(rgb).save(png)
        named = f"{png}: segment id 7 (1 pixels) not in {annotations}'s segments_info"
    elif change == "png":
        png.unlink()
        named = f"{png}: panoptic PNG not found"
    else:
        data = json.loads(annotations.read_text())
        data["annotations"][0]["segments_info"][1]["category_id"] = 2
        annotations.write_text(json.dumps(data))
        named = f"{annotations}: annotation x.png: segment 300: category_id 2 is not in categories"
    out = tmp_path / "root"
    _refused(_coco_argv(out, annotations, tmp_path / "images"), out, named, capsys)


def test_coco_semantic_mask_rules_without_pycocotools() -> None:
    """Overlaps: the smaller area wins whatever the list order; crowd -> ignore, under non-crowd objects."""
    boxes = {"big": (0, 6, 0, 6), "small": (2, 4, 2, 4), "crowd": (3, 8, 3, 8)}

    def decode(name: str, h: int, w: int) -> np.ndarray:
        y0, y1, x0, x1 = boxes[name]
        m = np.zeros((h, w), dtype=bool)
        m[y0:y1, x0:x1] = True
        return m

    anns = [
        {"id": 1, "category_id": 9, "segmentation": "small"},
        {"id": 2, "category_id": 4, "segmentation": "big"},
        {"id": 3, "category_id": 4, "segmentation": "crowd", "iscrowd": 1},
    ]
    for order in (anns, anns[::-1]):
        mask = coco_semantic_mask(order, 8, 8, {4: 1, 9: 2}, decode=decode)
        assert (mask[3, 3], mask[1, 1], mask[5, 5], mask[7, 7], mask[7, 0]) == (2, 1, 1, 255, 0)
    with pytest.raises(ValueError, match="annotation 1: category_id 9"):
        coco_semantic_mask(anns, 8, 8, {4: 1}, decode=decode)


def test_rle_string_counts_matches_pycocotools() -> None:
    mask_api = pytest.importorskip("pycocotools.mask")
    from nlkd.data.importers.coco import rle_string_counts

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        runs = rle_string_counts(mask_api.encode(np.asfortranarray(m))["counts"])
        assert sum(runs) == h * w and sum(runs[1::2]) == m.sum()


# ---------------------------------------------------------------- voc


def _voc_mask(path: Path, mask: np.ndarray, mode: str = "P") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(mask.astype(np.uint8), mode="L")
    if mode == "P":
        im = im.convert("P")
        im.putpalette([v for c in default_palette(256) for v in c])
    elif mode == "RGB":
        im = im.convert("RGB")
    im.save(path)


def _voc_root(tmp_path: Path) -> tuple[Path, np.ndarray]:
    root = tmp_path / "VOC2012"
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[2:8, 3:9], mask[1:9, 2] = 15, 255  # a person and a border band
    for name in ("2007_000032", "2007_000039", "2007_000063"):
        _save_image(root / "JPEGImages" / f"{name}.jpg")
        _voc_mask(root / "SegmentationClass" / f"{name}.png", mask)
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "ImageSets/Segmentation/train.txt").write_text("2007_000032\n2007_000039\n")
    return root, mask


def test_voc_root_and_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    voc, mask = _voc_root(tmp_path)
    out = tmp_path / "root"
    assert _run(["import", "voc", "--voc-root", str(voc), "--out", str(out)], capsys)[0] == 0
    _validates(out, "train", capsys)
    assert sorted(p.stem for p in (out / "labels/train").iterdir()) == ["2007_000032", "2007_000039"]  # train.txt
    assert _mask(out, "2007_000032").tolist() == mask.tolist()  # 15 = person, 255 = border, kept
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["num_classes"] == 21 and meta["class_names"][15] == "person" and meta["ignore_index"] == 255
    out2 = tmp_path / "root2"
    argv = ["import", "voc", "--images", str(voc / "JPEGImages"), "--masks", str(voc / "SegmentationClass")]
    assert _run([*argv, "--out", str(out2), "--split", "val"], capsys)[0] == 0
    _validates(out2, "val", capsys)
    assert len(list((out2 / "images/val").iterdir())) == 3


@pytest.mark.parametrize("change", ["no_mask", "rgb_mask", "bad_value", "both_ways"])
def test_voc_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str) -> None:
    voc, mask = _voc_root(tmp_path)
    bad = voc / "SegmentationClass/2007_000039.png"
    argv = ["import", "voc", "--voc-root", str(voc)]
    named = str(bad)
    if change == "no_mask":
        bad.unlink()
        named = f"{voc / 'JPEGImages/2007_000039.jpg'}: no mask {bad}"
    elif change == "rgb_mask":
        _voc_mask(bad, mask, mode="RGB")
        named += ": RGB image"
    elif change == "bad_value":
        mask[0, 0] = 30
        _voc_mask(bad, mask)
        named += ": values [30] outside 0..20 (ignore_index 255)"
    else:
        argv += ["--images", str(voc / "JPEGImages")]
        named = "give either --voc-root DIR or both --images DIR and --masks DIR"
    out = tmp_path / "root"
    _refused([*argv, "--out", str(out)], out, named, capsys)


# ---------------------------------------------------------------- palette


CLASSES = [
    {"name": "sky", "color": [128, 128, 128]},
    {"name": "road", "color": [128, 64, 128]},
    {"name": "car", "color": [64, 0, 128]},
    {"name": "void", "color": [0, 0, 0], "ignore": True},
]


def _palette_set(tmp_path: Path) -> tuple[Path, Path, Path, np.ndarray]:
    images, masks, table = tmp_path / "images", tmp_path / "masks", tmp_path / "classes.yaml"
    table.write_text(yaml.safe_dump(CLASSES))
    index = np.zeros((H, W), dtype=np.uint8)
    index[6:], index[8:10, 4:9], index[0, :3] = 1, 2, 3  # sky, road, car, void (table entry 3)
    colours = np.array([c["color"] for c in CLASSES], dtype=np.uint8)
    for name in ("0001TP_006690", "0001TP_006720"):
        _save_image(images / f"{name}.png")
        masks.mkdir(exist_ok=True)
        Image.fromarray(colours[index]).save(masks / f"{name}_L.png")
    expected = np.where(index == 3, 255, index)
    return images, masks, table, expected


def test_palette(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, masks, table, expected = _palette_set(tmp_path)
    out = tmp_path / "root"
    argv = ["import", "palette", "--images", str(images), "--masks", str(masks), "--classes", str(table)]
    assert _run([*argv, "--mask-suffix", "_L", "--out", str(out)], capsys)[0] == 0
    _validates(out, "train", capsys)
    assert _mask(out, "0001TP_006690").tolist() == expected.tolist()
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["class_names"] == ["sky", "road", "car"] and meta["palette"][1] == [128, 64, 128]
    assert meta["ignore_index"] == 255


@pytest.mark.parametrize("change", ["colour", "no_mask", "no_image", "table"])
def test_palette_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str) -> None:
    images, masks, table, _ = _palette_set(tmp_path)
    bad = masks / "0001TP_006720_L.png"
    named = str(bad)
    if change == "colour":
        rgb = np.asarray(Image.open(bad)).copy()
        rgb[3, 3] = (1, 2, 3)
        Image.fromarray(rgb).save(bad)
        named += f": colour [1, 2, 3] (1 pixels) not in {table}"
    elif change == "no_mask":
        bad.unlink()
        named = f"{images / '0001TP_006720.png'}: no mask 0001TP_006720_L.png"
    elif change == "no_image":
        (images / "0001TP_006720.png").unlink()
        named += ": no image"
    else:
        table.write_text(yaml.safe_dump([*CLASSES, {"name": "sky2", "color": [128, 128, 128]}]))
        named = f"{table}: entry 5: color [128, 128, 128] is also entry 1's"
    out = tmp_path / "root"
    argv = ["import", "palette", "--images", str(images), "--masks", str(masks), "--classes", str(table)]
    _refused([*argv, "--mask-suffix", "_L", "--out", str(out)], out, named, capsys)


def test_colour_mask_to_index_reports_unknown_colours() -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0], rgb[1] = (255, 0, 0), (0, 0, 9)
    mask, unknown = colour_mask_to_index(rgb, {0: 4, 255 << 16: 7})
    assert mask.tolist() == [[7, 4, 4], [0, 0, 0]]
    assert unknown == [((0, 0, 9), 3)]


# ---------------------------------------------------------------- cvat


LABELMAP = [("background", (0, 0, 0)), ("road", (128, 64, 128)), ("car", (0, 0, 142))]


def _cvat_export(folder: Path, with_images: bool = True) -> np.ndarray:
    """A CVAT 'Segmentation mask 1.1' export folder; returns the class indices of every mask."""
    (folder / "labelmap.txt").parent.mkdir(parents=True, exist_ok=True)
    (folder / "labelmap.txt").write_text(format_cvat_labelmap(LABELMAP))
    index = np.zeros((H, W), dtype=np.uint8)
    index[5:], index[7:10, 2:6] = 1, 2
    colours = np.array([c for _, c in LABELMAP], dtype=np.uint8)
    names = ["frame_000000", "frame_000001"]
    for name in names:
        (folder / "SegmentationClass").mkdir(exist_ok=True)
        Image.fromarray(colours[index]).save(folder / "SegmentationClass" / f"{name}.png")
        (folder / "SegmentationObject").mkdir(exist_ok=True)  # instance masks: not read
        Image.fromarray(colours[index]).save(folder / "SegmentationObject" / f"{name}.png")
        if with_images:
            _save_image(folder / "JPEGImages" / f"{name}.jpg")
    (folder / "ImageSets/Segmentation").mkdir(parents=True)
    (folder / "ImageSets/Segmentation/default.txt").write_text("\n".join(names) + "\n")
    return index


def _zip(folder: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
    return path


def test_cvat_zip_and_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = _cvat_export(tmp_path / "export")
    task = _zip(tmp_path / "export", tmp_path / "task.zip")
    for export, out in ((task, tmp_path / "a"), (tmp_path / "export", tmp_path / "b")):
        assert _run(["import", "cvat", "--export", str(export), "--out", str(out)], capsys)[0] == 0
        _validates(out, "train", capsys)
        assert _mask(out, "frame_000001").tolist() == index.tolist()
        meta = yaml.safe_load((out / "dataset.yaml").read_text())
        assert meta["class_names"] == ["background", "road", "car"] and meta["palette"][2] == [0, 0, 142]
        assert meta["ignore_index"] is None


def test_cvat_without_images_takes_images_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cvat_export(tmp_path / "export", with_images=False)
    task = _zip(tmp_path / "export", tmp_path / "task.zip")
    out = tmp_path / "root"
    _refused(["import", "cvat", "--export", str(task), "--out", str(out)], out, f"{task}: the export has no", capsys)
    for name in ("frame_000000", "frame_000001"):
        _save_image(tmp_path / "frames" / f"{name}.png")
    argv = ["import", "cvat", "--export", str(task), "--images", str(tmp_path / "frames"), "--out", str(out)]
    assert _run(argv, capsys)[0] == 0
    _validates(out, "train", capsys)


@pytest.mark.parametrize("change", ["colour", "no_mask", "not_zip", "labelmap"])
def test_cvat_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str) -> None:
    folder = tmp_path / "export"
    _cvat_export(folder)
    mask = folder / "SegmentationClass/frame_000001.png"
    task = tmp_path / "task.zip"
    named = f"{task / 'SegmentationClass/frame_000001.png'}: colour [9, 9, 9] (1 pixels) not in {task}: labelmap.txt"
    if change == "colour":
        rgb = np.asarray(Image.open(mask)).copy()
        rgb[0, 0] = 9
        Image.fromarray(rgb).save(mask)
    elif change == "no_mask":
        mask.unlink()
        named = f"no mask SegmentationClass/frame_000001.png in {task}"
    elif change == "labelmap":
        (folder / "labelmap.txt").write_text("background:0,0,0::\nroad:128,64::\n")
        named = "labelmap.txt: line 2: expected 'name:R,G,B::'"
    _zip(folder, task)
    if change == "not_zip":
        task.write_bytes(b"PK not really")
        named = f"{task}: not a readable zip file"
    out = tmp_path / "root"
    _refused(["import", "cvat", "--export", str(task), "--out", str(out)], out, named, capsys)


def test_cvat_labelmap_round_trip(tmp_path: Path) -> None:
    assert parse_cvat_labelmap(format_cvat_labelmap(LABELMAP)) == LABELMAP
    (tmp_path / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:0,0,142:wheel:\n")
    assert read_cvat_labelmap(tmp_path / "labelmap.txt") == [("background", (0, 0, 0)), ("car", (0, 0, 142))]
    with pytest.raises(DataError, match="repeats the name or colour of 'background'"):
        parse_cvat_labelmap("background:0,0,0::\nsky:0,0,0::\n")
    with pytest.raises(DataError, match="no labels"):
        parse_cvat_labelmap("# only a comment\n")


def _data_set(root: Path, names: list[str], ignore_index: int | None) -> bytes:
    """An existing data set's dataset.yaml (classes in another order than LABELMAP's); returns its bytes."""
    root.mkdir(parents=True)
    meta = {"num_classes": len(names), "ignore_index": ignore_index, "class_names": names}
    (root / "dataset.yaml").write_text(yaml.safe_dump({**meta, "source": {"format": "coco"}}))
    return (root / "dataset.yaml").read_bytes()


def test_cvat_into_an_existing_data_set_matches_classes_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels take the existing data set's indices by name (road 2, car 0); CVAT's background -> its ignore
    index; its dataset.yaml stays byte for byte; --classes-from gives a new --out the same classes."""
    index = _cvat_export(tmp_path / "export")
    task = _zip(tmp_path / "export", tmp_path / "task.zip")
    root = tmp_path / "root"
    before = _data_set(root, ["car", "sky", "road"], 7)
    expected = np.array([7, 2, 0], dtype=np.uint8)[index]  # background, road, car -> ignore, road, car
    code, out, err = _run(["import", "cvat", "--export", str(task), "--out", str(root), "--split", "fixed"], capsys)
    assert code == 0, err
    assert f"classes of {root / 'dataset.yaml'}, matched to the labels by name" in out
    assert (root / "dataset.yaml").read_bytes() == before
    assert _mask(root, "frame_000001", "fixed").tolist() == expected.tolist()
    _validates(root, "fixed", capsys)
    new = tmp_path / "new"
    argv = ["import", "cvat", "--export", str(task), "--out", str(new), "--classes-from", str(root)]
    assert _run(argv, capsys)[0] == 0
    assert yaml.safe_load((new / "dataset.yaml").read_text()) == yaml.safe_load(before)
    assert _mask(new, "frame_000001").tolist() == expected.tolist()


@pytest.mark.parametrize("change", ["unknown_label", "no_ignore_index", "not_a_data_set"])
def test_cvat_classes_from_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str) -> None:
    _cvat_export(tmp_path / "export")
    task = _zip(tmp_path / "export", tmp_path / "task.zip")
    root, out = tmp_path / "root", tmp_path / "new"
    if change == "unknown_label":  # 'car' is not a class there
        _data_set(root, ["road", "cars", "background"], None)
        named = f"{task}: labelmap.txt: label 'car' is not a class of {root / 'dataset.yaml'} (did you mean 'cars'?)"
    elif change == "no_ignore_index":  # the masks' background pixels have no value in the data set
        _data_set(root, ["road", "car"], None)
        mask = task / "SegmentationClass/frame_000000.png"
        named = f"{mask}: colour [0, 0, 0] (80 pixels) not in {task}: labelmap.txt as {root / 'dataset.yaml'} has"
    else:
        root.mkdir()
        named = f"{root}: not a data set (expected a folder with a dataset.yaml, or that file)"
    _refused(
        ["import", "cvat", "--export", str(task), "--out", str(out), "--classes-from", str(root)], out, named, capsys
    )
    if change != "not_a_data_set":  # the same into the data set itself: nothing added to it
        argv = ["import", "cvat", "--export", str(task), "--out", str(root), "--split", "fixed"]
        assert _run(argv, capsys)[0] == 2
        assert sorted(p.name for p in root.iterdir()) == ["dataset.yaml"]


def test_nothing_left_when_a_later_image_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The first images are written before the bad one is reached: the temporary folder goes, --out stays absent."""
    images, masks, table, _ = _palette_set(tmp_path)
    _save_image(images / "zzz.png")
    Image.fromarray(np.zeros((H, W + 1, 3), dtype=np.uint8)).save(masks / "zzz_L.png")  # last in id order
    out = tmp_path / "root"
    argv = ["import", "palette", "--images", str(images), "--masks", str(masks), "--classes", str(table)]
    named = f"{masks / 'zzz_L.png'}: mask {H}×{W + 1} (H×W) does not match image {H}×{W}"
    _refused([*argv, "--mask-suffix", "_L", "--out", str(out)], out, named, capsys)


@pytest.mark.parametrize("fmt", IMPORT_FORMATS)
def test_help(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["import", fmt, "--help"])
    assert e.value.code == 0 and f"usage: nlkd import {fmt}" in capsys.readouterr().out


@pytest.mark.slow
def test_readme_bring_your_own_labels_block_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's "Bring your own labels" block, every line in order as written (paths relative to a folder
    holding tests/), the trainings with a small encoder and one epoch for speed; then the CVAT round trip line
    that follows it (audit --export cvat, import cvat into the data set)."""
    pytest.importorskip("pycocotools")
    pytest.importorskip("onnxruntime")
    import shlex

    from conftest import SMALL_ENCODER

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "README.md").read_text(encoding="utf-8").split("## Bring your own labels", 1)[1]
    blocks = [b.split("```", 1)[0].replace("\\\n", " ") for b in text.split("```bash\n")[1:3]]
    lines = [shlex.split(line, comments=True) for b in blocks for line in b.splitlines()]
    lines = [argv[1:] for argv in lines if argv]
    expected = ["import", "import", "validate", "train", "audit", "train", "export", "import"]
    assert [argv[0] for argv in lines] == expected
    (tmp_path / "tests").symlink_to(repo / "tests")
    monkeypatch.chdir(tmp_path)
    fast = ["--encoder", SMALL_ENCODER, "--epochs", "1", "--device", "cpu"]
    for argv in lines:
        if argv[0] == "import" and argv[1] == "cvat":  # the corrected queue from CVAT: here, the audit's own
            assert main(["audit", *lines[4][1 : lines[4].index("--export")], "--export", "cvat", "--top", "3"]) == 0
        assert main([*argv, *fast] if argv[0] == "train" else argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "ok: 3 pairs" in out and "checked with onnxruntime" in out
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "audit" / "label-studio" / "tasks.json").is_file()
    assert sorted(p.name for p in (tmp_path / "data/mine/labels").iterdir()) == ["relabelled", "train", "val"]


def test_empty_out_folder_and_non_jpeg_png_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing empty --out is filled; a BMP image is written as PNG with the same pixels."""
    images, masks, table, expected = _palette_set(tmp_path)
    bmp = images / "0001TP_006720.bmp"
    Image.open(images / "0001TP_006720.png").save(bmp)
    (images / "0001TP_006720.png").unlink()
    out = tmp_path / "root"
    out.mkdir()
    argv = ["import", "palette", "--images", str(images), "--masks", str(masks), "--classes", str(table)]
    assert _run([*argv, "--mask-suffix", "_L", "--out", str(out)], capsys)[0] == 0
    _validates(out, "train", capsys)
    written = np.asarray(Image.open(out / "images/train/0001TP_006720.png"))
    assert written.tolist() == np.asarray(Image.open(bmp)).tolist()
    assert _mask(out, "0001TP_006720").tolist() == expected.tolist()
