"""nlkd audit --export: the relabel queue in Label Studio, CVAT and FiftyOne form, each decoded back (Label
Studio's RLE by label-studio-sdk's own decoder) and compared with the masks it was made from; the order,
``--top`` and bad input, on the tiny synthetic data set with an untrained or one-epoch 3×3-conv teacher."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import PROBE, probe_network, tiny_config
from nlkd.audit import AuditTable
from nlkd.audit.exports import EXPORT_FORMATS, export_relabel_queue
from nlkd.audit.exports.cvat import ZIP_NAME, cvat_colours, labelmap
from nlkd.audit.exports.label_studio import brush_rle, label_config
from nlkd.audit.exports.queue import file_stem
from nlkd.checkpoint import model_from_checkpoint
from nlkd.cli import main
from nlkd.data.folder import FolderDataset
from nlkd.data.info import DatasetInfo, load_dataset_info
from nlkd.io import read_mask, write_mask
from nlkd.models import registry

IGNORE = 255
FLIPPED = ["train_0002", "train_0005", "train_0011"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def noisy_root(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_data's images with labels/noisy: the clean train masks, three flipped upside down, and a band of
    unlabelled pixels (255, the dataset.yaml's ignore_index here) across every fourth mask."""
    root = tmp_path_factory.mktemp("noisy") / "data"
    (root / "labels").mkdir(parents=True)
    os.symlink(tiny_data / "images", root / "images")
    meta = yaml.safe_load((tiny_data / "dataset.yaml").read_text())
    (root / "dataset.yaml").write_text(yaml.safe_dump({**meta, "ignore_index": IGNORE}))
    for k, p in enumerate(sorted((tiny_data / "labels" / "train").glob("*.png"))):
        mask = read_mask(p).copy()
        if p.stem in FLIPPED:
            mask = np.flipud(mask).copy()
        if k % 4 == 0:
            mask[10:14] = IGNORE
        write_mask(root / "labels" / "noisy" / p.name, mask)
    return root


@pytest.fixture(scope="module")
def probe_checkpoint(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """A one-epoch 3×3-conv teacher (registered for the whole module: the CLI loads it by name)."""
    from nlkd.train import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._REGISTRY, PROBE, probe_network)
        run = tmp_path_factory.mktemp("teacher") / "run"
        train(tiny_config(tiny_data, run, **{"model.name": PROBE}), log=lambda *a: None)
        yield run / "last.pt"


def _dataset(root: Path, labels: str = "noisy") -> FolderDataset:
    info = load_dataset_info(root)
    return FolderDataset(root, "train", labels, info=info, size=(32, 48), cache=False)


def _table(dataset: FolderDataset, quality: np.ndarray) -> AuditTable:
    table = AuditTable.for_dataset(dataset)
    table.bf[:], table.iou[:] = quality, quality
    return table


class _KnownTeacher:
    """Logits that put each image's annotation rolled right by 5 columns on top (ignored pixels: class 0)."""

    def __init__(self, dataset: FolderDataset) -> None:
        self.dataset, self.where = dataset, {s.id: i for i, s in enumerate(dataset.samples)}

    def mask(self, sample_id: str) -> np.ndarray:
        m = np.asarray(self.dataset.get_full_mask(self.where[sample_id])).astype(np.int64)
        return np.roll(np.where(m == IGNORE, 0, m), 5, axis=1)

    def __call__(self, images: torch.Tensor, ids: list[str]) -> torch.Tensor:
        c = self.dataset.info.num_classes
        masks = torch.from_numpy(np.stack([self.mask(i) for i in ids]))
        return torch.nn.functional.one_hot(masks, c).permute(0, 3, 1, 2).float() * 8.0


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB") if im.mode not in ("L", "P") else im)


def _ls_masks(results: list[dict], info: DatasetInfo, shape: tuple[int, int]) -> np.ndarray:
    """Brush results decoded by label-studio-sdk into one index map (unpainted pixels: IGNORE)."""
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    out = np.full(shape, IGNORE, dtype=np.int64)
    for r in results:
        assert (r["type"], r["from_name"], r["to_name"]) == ("brushlabels", "label", "image")
        assert (r["original_height"], r["original_width"]) == shape
        (name,) = r["value"]["brushlabels"]
        rgba = brush.decode_rle(r["value"]["rle"]).reshape(*shape, 4)
        assert set(np.unique(rgba).tolist()) <= {0, 255}
        painted = rgba[..., 3] == 255
        assert (out[painted] == IGNORE).all(), "classes overlap"
        out[painted] = info.class_names.index(name)
    return out


def _cvat_masks(zip_path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(stems in default.txt, {stem: index mask decoded through labelmap.txt})."""
    with zipfile.ZipFile(zip_path) as z:
        lines = z.read("labelmap.txt").decode().splitlines()
        assert lines[0].startswith("# label")
        colours = {}
        for line in lines[1:]:
            name, rgb, _parts, _actions = line.split(":")
            colours[tuple(int(v) for v in rgb.split(","))] = name
        assert len(colours) == len(lines) - 1, "two labels share a colour"
        stems = z.read("ImageSets/Segmentation/default.txt").decode().split()
        masks = {}
        for s in stems:
            rgb = _png(z.read(f"SegmentationClass/{s}.png"))
            names = [colours[tuple(c)] for c in rgb.reshape(-1, 3).tolist()]
            masks[s] = np.array(names, dtype=object).reshape(rgb.shape[:2])
            assert any(n.startswith(f"JPEGImages/{s}.") for n in z.namelist())
    return stems, masks


# ----------------------------------------------------------------------------- format pieces


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (17, 29), (1, 20000), (300, 400)])
def test_brush_rle_decodes_with_label_studio_sdk(shape: tuple[int, int]):
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    rng = np.random.default_rng(sum(shape))
    masks = [np.zeros(shape, bool), np.ones(shape, bool), rng.random(shape) < 0.5, rng.random(shape) < 0.02]
    block = np.zeros(shape, bool)
    block[shape[0] // 4 : shape[0] // 2 + 1, shape[1] // 3 :] = True
    for mask in [*masks, block]:
        rle = brush_rle(mask)
        assert all(0 <= b <= 255 for b in rle)
        rgba = brush.decode_rle(rle).reshape(*shape, 4)
        np.testing.assert_array_equal(rgba, np.repeat(mask[..., None] * 255, 4, axis=2))


def test_brush_rle_splits_runs_longer_than_its_widest_field():
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    mask = np.ones((1, 40000), bool)  # 160000 equal values: three runs of at most 65536
    assert len(brush_rle(mask)) < 30
    np.testing.assert_array_equal(brush.decode_rle(brush_rle(mask)), np.full(160000, 255))


def test_cvat_colours_avoid_black_and_keep_a_good_palette():
    voc = DatasetInfo(3)  # default palette: black first
    assert (0, 0, 0) not in cvat_colours(voc) and len(set(cvat_colours(voc))) == 3
    own = DatasetInfo(2, palette=[(10, 20, 30), (40, 50, 60)])
    assert cvat_colours(own) == [(10, 20, 30), (40, 50, 60)]
    same = DatasetInfo(2, palette=[(10, 20, 30), (10, 20, 30)])
    assert len(set(cvat_colours(same))) == 2
    bg = DatasetInfo(2, class_names=["background", "cat"])
    assert cvat_colours(bg)[0] == (0, 0, 0) and cvat_colours(bg)[1] != (0, 0, 0)
    assert labelmap(bg).splitlines()[1:] == ["background:0,0,0::", "cat:{},{},{}::".format(*cvat_colours(bg)[1])]
    assert labelmap(voc).splitlines()[1] == "background:0,0,0::"


def test_label_config_names_every_class_once():
    info = DatasetInfo(3, class_names=["sky", 'a "quoted" & <odd> name', "road"])
    xml = label_config(info)
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    brush = root.find("BrushLabels")
    assert brush is not None and brush.get("name") == "label" and brush.get("toName") == "image"
    assert [e.get("value") for e in brush.findall("Label")] == info.class_names
    assert root.find("Image").get("name") == "image"


def test_file_stem_has_no_folder_separator():
    assert file_stem("ds/a/b") == "ds__a__b" and file_stem("train_0001") == "train_0001"


# ----------------------------------------------------------------------------- the three formats, round trip


@pytest.fixture(scope="module")
def known_export(noisy_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """All three formats of the 5 worst of a hand-made ranking, with a teacher whose prediction is known."""
    dataset = _dataset(noisy_root)
    quality = np.random.default_rng(3).permutation(len(dataset)) / len(dataset)
    table = _table(dataset, quality)
    teacher = _KnownTeacher(dataset)
    out = tmp_path_factory.mktemp("export") / "out"
    folders = export_relabel_queue(EXPORT_FORMATS, table, dataset, teacher, out, 5, image_url="http://x/")
    assert folders == [out / f for f in EXPORT_FORMATS]
    worst = [dataset.samples[i].id for i in np.argsort(quality)[:5]]
    return out, dataset, teacher, worst, quality


def test_label_studio_round_trip(known_export):
    out, dataset, teacher, worst, _ = known_export
    tasks = json.loads((out / "label-studio" / "tasks.json").read_text())
    assert [t["data"]["sample_id"] for t in tasks] == worst
    assert [t["data"]["rank"] for t in tasks] == [1, 2, 3, 4, 5]
    assert [t["data"]["quality"] for t in tasks] == sorted(t["data"]["quality"] for t in tasks)
    interface = pytest.importorskip("label_studio_sdk.label_interface")
    config = interface.LabelInterface((out / "label-studio" / "label_config.xml").read_text())
    for t in tasks:  # label-studio-sdk checks names, types and labels against the config
        assert [config.validate_prediction(p, return_errors=True) for p in t["predictions"]] == [[], []]
    info = dataset.info
    for t in tasks:
        sid = t["data"]["sample_id"]
        image = t["data"]["image"]
        assert image.startswith("http://x/images/")
        assert (out / "label-studio" / image.removeprefix("http://x/")).is_file()
        by_version = {p["model_version"]: p for p in t["predictions"]}
        annotation = np.asarray(dataset.get_full_mask(dataset.ids.index(sid))).astype(np.int64)
        shape = annotation.shape
        np.testing.assert_array_equal(_ls_masks(by_version["nlkd-teacher"]["result"], info, shape), teacher.mask(sid))
        np.testing.assert_array_equal(_ls_masks(by_version["given-annotation"]["result"], info, shape), annotation)
        assert 0 < by_version["nlkd-teacher"]["score"] <= 1
        assert by_version["given-annotation"]["score"] == pytest.approx(t["data"]["quality"])


def test_cvat_round_trip(known_export):
    out, dataset, teacher, worst, _ = known_export
    stems, masks = _cvat_masks(out / "cvat" / ZIP_NAME)
    assert stems == [file_stem(s) for s in worst]
    names = np.array(dataset.info.class_names, dtype=object)
    for sid in worst:
        np.testing.assert_array_equal(masks[file_stem(sid)], names[teacher.mask(sid)])


def test_cvat_zip_reads_back_with_nlkd_import_cvat(known_export, tmp_path: Path):
    out, dataset, teacher, worst, _ = known_export
    root = tmp_path / "imported"
    assert main(["import", "cvat", "--export", str(out / "cvat" / ZIP_NAME), "--out", str(root)]) == 0
    names = yaml.safe_load((root / "dataset.yaml").read_text())["class_names"]
    for sid in worst:
        mask = read_mask(root / "labels" / "train" / f"{file_stem(sid)}.png")
        got = np.array(names, dtype=object)[mask]
        np.testing.assert_array_equal(got, np.array(dataset.info.class_names, dtype=object)[teacher.mask(sid)])


def test_fiftyone_round_trip(known_export):
    out, dataset, teacher, worst, quality = known_export
    root = out / "fiftyone"
    meta = json.loads((root / "samples.json").read_text())
    assert meta["classes"] == {str(c): n for c, n in enumerate(dataset.info.class_names)}
    assert meta["ignore_index"] == IGNORE
    rows = sorted(meta["samples"].items(), key=lambda kv: kv[1]["rank"])
    assert [r["id"] for _, r in rows] == worst
    assert sorted(p.stem for p in (root / "data").iterdir()) == sorted(p.stem for p in (root / "labels").iterdir())
    for image_name, row in rows:
        i = dataset.ids.index(row["id"])
        assert (root / "data" / image_name).read_bytes() == Path(dataset.samples[i].image_path).read_bytes()
        assert row["quality"] == pytest.approx(quality[i])
        label = root / "labels" / f"{Path(image_name).stem}.png"
        np.testing.assert_array_equal(read_mask(label), teacher.mask(row["id"]))
        np.testing.assert_array_equal(read_mask(root / row["annotation"]), dataset.get_full_mask(i))


def test_failed_export_leaves_the_previous_one(known_export, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    out, dataset, teacher, _, quality = known_export
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = (copy / "cvat" / ZIP_NAME).read_bytes()

    def broken(table, data, judge, k):
        from nlkd.audit.exports.queue import worst_items

        for n, item in enumerate(worst_items(table, data, judge, k)):
            if n == 2:
                raise OSError("disk full")
            yield item

    monkeypatch.setattr("nlkd.audit.exports.worst_items", broken)
    with pytest.raises(OSError, match="disk full"):
        export_relabel_queue(["cvat", "fiftyone"], _table(dataset, quality[::-1]), dataset, teacher, copy, 4)
    assert (copy / "cvat" / ZIP_NAME).read_bytes() == before
    assert sorted(os.listdir(copy)) == sorted(EXPORT_FORMATS)  # no temporary folder left


# ----------------------------------------------------------------------------- the command


def _audit_argv(ckpt: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("audit", "--checkpoint", str(ckpt), "--data", str(root), "--split", "train", "--labels", "noisy"),
        *("--out", str(out), "--device", "cpu", *extra),
    ]


def test_cli_exports_the_worst_in_audit_order(probe_checkpoint: Path, noisy_root: Path, tmp_path: Path, capsys):
    out = tmp_path / "audit"
    argv = _audit_argv(probe_checkpoint, noisy_root, out, "--top", "4")
    assert main([*argv, "--export", "label-studio", "--export", "cvat", "--export", "fiftyone"]) == 0
    assert "relabel queue (4 worst annotations)" in capsys.readouterr().out
    ranked = [ln.split(",")[0] for ln in (out / "scores.csv").read_text().splitlines()[1:]]
    tasks = json.loads((out / "label-studio" / "tasks.json").read_text())
    assert [t["data"]["sample_id"] for t in tasks] == ranked[:4]
    stems, cvat = _cvat_masks(out / "cvat" / ZIP_NAME)
    assert stems == [file_stem(s) for s in ranked[:4]]
    assert len(os.listdir(out / "fiftyone" / "labels")) == 4
    model, _, info = model_from_checkpoint(probe_checkpoint)  # the teacher's own prediction, computed here
    dataset = _dataset(noisy_root)
    names = np.array(info.class_names, dtype=object)
    for t in tasks:
        sid = t["data"]["sample_id"]
        with torch.no_grad():
            pred = model(dataset[dataset.ids.index(sid)]["image"][None]).argmax(1)[0].numpy()
        teacher = next(p for p in t["predictions"] if p["model_version"] == "nlkd-teacher")
        np.testing.assert_array_equal(_ls_masks(teacher["result"], info, pred.shape), pred)
        np.testing.assert_array_equal(cvat[file_stem(sid)], names[pred])
        np.testing.assert_array_equal(read_mask(out / "fiftyone" / "labels" / f"{file_stem(sid)}.png"), pred)


def _erase_block(zip_path: Path, stem: str) -> None:
    """What a person does in CVAT: erase a block of one mask (CVAT's background, black), export again."""
    with zipfile.ZipFile(zip_path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    rgb = _png(members[f"SegmentationClass/{stem}.png"]).copy()
    rgb[2:6, 3:9] = 0
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    members[f"SegmentationClass/{stem}.png"] = buf.getvalue()
    with zipfile.ZipFile(zip_path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_cli_cvat_export_imports_back_with_the_data_sets_class_indices(
    probe_checkpoint: Path, noisy_root: Path, tmp_path: Path, capsys
):
    """audit --export cvat -> (relabel) -> import cvat into the data set (or --classes-from it): each mask is the
    teacher's prediction in the data set's own class indices (the zip's labelmap.txt starts with CVAT's
    background line, which a plain import makes class 0), an erased block is the ignore index, and
    dataset.yaml is unchanged."""
    out = tmp_path / "audit"
    assert main([*_audit_argv(probe_checkpoint, noisy_root, out, "--top", "4"), "--export", "cvat"]) == 0
    ranked = [ln.split(",")[0] for ln in (out / "scores.csv").read_text().splitlines()[1:5]]
    zip_path = out / "cvat" / ZIP_NAME
    _erase_block(zip_path, file_stem(ranked[0]))
    into = tmp_path / "data"  # the data set (its dataset.yaml; its images stay where they are)
    into.mkdir()
    shutil.copyfile(noisy_root / "dataset.yaml", into / "dataset.yaml")
    argv = ["import", "cvat", "--export", str(zip_path)]
    assert main([*argv, "--out", str(into), "--split", "relabelled"]) == 0
    assert main([*argv, "--out", str(tmp_path / "new"), "--classes-from", str(noisy_root / "dataset.yaml")]) == 0
    assert "matched to the labels by name" in capsys.readouterr().out
    assert (into / "dataset.yaml").read_bytes() == (noisy_root / "dataset.yaml").read_bytes()
    assert yaml.safe_load((tmp_path / "new" / "dataset.yaml").read_text()) == yaml.safe_load(
        (noisy_root / "dataset.yaml").read_text()
    )
    model, _, _ = model_from_checkpoint(probe_checkpoint)
    dataset = _dataset(noisy_root)
    for n, sid in enumerate(ranked):
        with torch.no_grad():
            pred = model(dataset[dataset.ids.index(sid)]["image"][None]).argmax(1)[0].numpy()
        if n == 0:
            pred[2:6, 3:9] = IGNORE
        for mask in (into / "labels" / "relabelled", tmp_path / "new" / "labels" / "train"):
            np.testing.assert_array_equal(read_mask(mask / f"{file_stem(sid)}.png"), pred)


def test_cli_export_default_top_is_capped_by_the_split(probe_checkpoint: Path, noisy_root: Path, tmp_path: Path):
    out = tmp_path / "audit"
    assert main([*_audit_argv(probe_checkpoint, noisy_root, out), "--export", "fiftyone"]) == 0
    assert len(json.loads((out / "fiftyone" / "samples.json").read_text())["samples"]) == 16
    assert len(list((out / "gallery").glob("worst_*.png"))) == 8  # the gallery keeps its own default


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--export", "cvat", "--top", "17"), "--top 17: --export needs 1 <= K <= 16"),
        (("--export", "cvat", "--top", "0"), "--top 0: --export needs 1 <= K <= 16"),
        (("--export", "cvat", "--image-url", "http://x/"), "--image-url applies to --export label-studio only"),
        (
            (
                "--image-url",
                "http://x/",
            ),
            "--image-url applies to --export label-studio only",
        ),
    ],
)
def test_cli_bad_export_options_are_one_line_and_exit_2(
    extra, message, probe_checkpoint: Path, noisy_root: Path, tmp_path: Path, capsys
):
    out = tmp_path / "audit"
    assert main([*_audit_argv(probe_checkpoint, noisy_root, out), *extra]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("nlkd audit: error: ") and message in err[0], err
    assert not out.exists() or not any(out.iterdir())


def test_cli_unknown_export_format_is_exit_2(probe_checkpoint: Path, noisy_root: Path, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*_audit_argv(probe_checkpoint, noisy_root, tmp_path / "a"), "--export", "coco"])
    assert e.value.code == 2
    assert "invalid choice: 'coco'" in capsys.readouterr().err
