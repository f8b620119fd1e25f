"""Property-based robustness (hypothesis): random shapes, dtypes, value ranges and ignore patterns thrown at
the metrics, the weighting functions, mask reading and the folder data set. The contract: a correct
result, or a ``ValueError`` (``DataError`` for files) that says what is wrong; never another exception,
and never NaN where a number is defined (NaN means "image without a valid pixel", nothing else).

Regression tests for gaps the fuzz once found (now fixed) are at the end.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from nlkd.data.folder import FolderDataset
from nlkd.data.info import DatasetInfo
from nlkd.errors import DataError
from nlkd.io import read_mask
from nlkd.metrics import SegmentationMetrics, bfmiou, boundary_f1, per_image_iou
from nlkd.weighting import METRICS, REDUCTIONS, per_image_cross_entropy, quality_score, weighted_loss
from reference_metrics import reference_batch

FUZZ = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
INT_DTYPES = [torch.uint8, torch.int16, torch.int32, torch.int64]


@st.composite
def label_maps(draw: st.DrawFn, min_side: int = 1) -> dict:
    """(pred, target, num_classes, ignore_index, tolerance) with valid values, any integer dtype."""
    b = draw(st.integers(0, 3))
    h, w = draw(st.integers(min_side, 9)), draw(st.integers(min_side, 9))
    c = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(INT_DTYPES))
    ignore = draw(st.sampled_from([None, "class", "outside", 255]))
    ignore_index = {None: None, "class": c - 1, "outside": c, 255: 255}[ignore]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cell = draw(st.integers(1, 4))  # blobby maps have boundaries; cell 1 is salt and pepper
    shape = (b, -(-h // cell), -(-w // cell))

    def blobs() -> np.ndarray:
        return rng.integers(0, c, shape).repeat(cell, 1).repeat(cell, 2)[:, :h, :w]

    pred, target = blobs(), blobs()
    if ignore_index is not None:
        target[rng.random(target.shape) < draw(st.sampled_from([0.0, 0.2, 1.0]))] = ignore_index
        if draw(st.booleans()) and b:
            target[0] = ignore_index  # an image without a valid pixel
    tolerance = draw(st.floats(0.05, 6.0))
    as_t = lambda a: torch.from_numpy(a.astype(np.int64)).to(dtype)  # noqa: E731
    return {"pred": as_t(pred), "target": as_t(target), "c": c, "ignore": ignore_index, "tol": tolerance}


def no_valid_pixel(target: torch.Tensor, ignore: int | None) -> torch.Tensor:
    """(B,) bool: images in which every pixel is ignored (or that have no pixel)."""
    valid = torch.ones_like(target, dtype=torch.bool) if ignore is None else target.long() != ignore
    return ~valid.flatten(1).any(1)


def assert_scores(x: torch.Tensor, undefined: torch.Tensor) -> None:
    """(B,) scores in [0, 1], NaN exactly where the image has no valid pixel."""
    assert x.shape == undefined.shape
    assert torch.equal(x.isnan(), undefined)
    ok = x[~undefined]
    assert bool(((ok >= 0) & (ok <= 1)).all())


# ----------------------------------------------------------------------------- metrics


@FUZZ
@given(label_maps())
def test_metrics_on_any_valid_maps(m: dict) -> None:
    pred, target, c, ignore, tol = m["pred"], m["target"], m["c"], m["ignore"], m["tol"]
    undefined = no_valid_pixel(target, ignore)
    bf = boundary_f1(pred, target, c, tol, ignore)
    iou = per_image_iou(pred, target, c, ignore)
    both = bfmiou(pred, target, c, tol, ignore)
    for x in (bf, iou, both):
        assert x.dtype == torch.float64
        assert_scores(x, undefined)
    torch.testing.assert_close(both, (bf + iou) / 2, equal_nan=True)
    ref_bf, ref_iou = reference_batch(pred.numpy(), target.numpy(), c, tol, ignore)
    np.testing.assert_allclose(bf.numpy(), ref_bf, atol=1e-9)
    np.testing.assert_allclose(iou.numpy(), ref_iou, atol=1e-9)


@FUZZ
@given(label_maps(), st.integers(1, 3))
def test_segmentation_metrics_on_any_valid_maps(m: dict, splits: int) -> None:
    pred, target, c, ignore, tol = m["pred"], m["target"], m["c"], m["ignore"], m["tol"]
    metrics = SegmentationMetrics(c, ignore, tol)
    for p, t in zip(pred.tensor_split(splits), target.tensor_split(splits)):
        assert_scores(metrics.update(p, t), no_valid_pixel(t, ignore))
    out = metrics.compute()
    n_valid = int((~no_valid_pixel(target, ignore)).sum())
    assert out["n_images"] == n_valid
    for key in ("miou", "bf", "pixel_accuracy"):
        value = out[key]
        assert isinstance(value, float)
        assert (value != value) == (n_valid == 0), key  # NaN only when nothing was valid
        assert n_valid == 0 or 0 <= value <= 1
    assert len(out["per_class_iou"]) == c


@st.composite
def bad_metric_inputs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int, float, int | None]:
    """Inputs each of which breaks exactly one documented rule."""
    c = draw(st.integers(1, 4))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    pred, target = torch.zeros(shape, dtype=torch.int64), torch.zeros(shape, dtype=torch.int64)
    tol, ignore = 2.0, None
    flaw = draw(
        st.sampled_from(
            ["pred_high", "pred_negative", "target_high", "float", "bool", "shape", "ndim", "tolerance", "num_classes"]
        )
    )
    if flaw == "pred_high":
        pred[0, 0, 0] = draw(st.integers(c, 300))
    elif flaw == "pred_negative":
        pred[-1, -1, -1] = draw(st.integers(-300, -1))
    elif flaw == "target_high":
        ignore = draw(st.sampled_from([None, 255]))
        target[0, -1, 0] = draw(st.integers(c, 254))
    elif flaw == "float":
        pred = pred.to(draw(st.sampled_from([torch.float16, torch.float32, torch.float64])))
    elif flaw == "bool":
        target = target.bool()
    elif flaw == "shape":
        target = torch.zeros((shape[0], shape[1], shape[2] + 1), dtype=torch.int64)
    elif flaw == "ndim":
        pred, target = pred[0], target[0]
    elif flaw == "tolerance":
        tol = draw(st.sampled_from([0.0, -1.0, float("nan"), float("inf")]))
    else:
        c = draw(st.sampled_from([0, -3]))
    return pred, target, c, tol, ignore


@FUZZ
@given(bad_metric_inputs(), st.sampled_from(["bf", "iou", "bfmiou", "class"]))
def test_metrics_refuse_bad_inputs_with_value_error(bad: tuple, which: str) -> None:
    pred, target, c, tol, ignore = bad
    with pytest.raises(ValueError):
        if which == "bf":
            boundary_f1(pred, target, c, tol, ignore)
        elif which == "iou":
            assume(tol == 2.0)  # per_image_iou has no tolerance
            per_image_iou(pred, target, c, ignore)
        elif which == "bfmiou":
            bfmiou(pred, target, c, tol, ignore)
        else:
            assume(c >= 1)  # SegmentationMetrics(0) is a known gap, see the end of the file
            SegmentationMetrics(c, ignore, tol).update(pred, target)


# ----------------------------------------------------------------------------- weighting


@FUZZ
@given(label_maps(), st.sampled_from([torch.float32, torch.float64]), st.floats(0.01, 50.0))
def test_per_image_cross_entropy_is_finite_and_zero_without_valid_pixels(
    m: dict, dtype: torch.dtype, scale: float
) -> None:
    target, c, ignore = m["target"], m["c"], m["ignore"]
    b, h, w = target.shape
    gen = torch.Generator().manual_seed(int(scale * 1000))
    logits = (torch.randn((b, c, h, w), generator=gen, dtype=dtype) * scale).requires_grad_()
    ce = per_image_cross_entropy(logits, target, ignore)
    assert ce.shape == (b,) and ce.dtype == dtype
    assert bool(torch.isfinite(ce).all()) and bool((ce >= 0).all())
    assert bool((ce[no_valid_pixel(target, ignore)] == 0).all())
    if b:
        ce.sum().backward()
        assert bool(torch.isfinite(logits.grad).all())


@FUZZ
@given(
    st.lists(st.floats(0, 1e4), min_size=0, max_size=6),
    st.data(),
    st.sampled_from(REDUCTIONS),
)
def test_weighted_loss_is_finite(ce_values: list[float], data: st.DataObject, reduction: str) -> None:
    weights = data.draw(
        st.lists(st.one_of(st.floats(0, 1), st.just(float("nan"))), min_size=len(ce_values), max_size=len(ce_values))
    )
    ce = torch.tensor(ce_values, dtype=torch.float32, requires_grad=True)
    w = torch.tensor(weights, dtype=torch.float32)
    loss = weighted_loss(ce, w, reduction)  # type: ignore[arg-type]
    assert loss.ndim == 0 and bool(torch.isfinite(loss))
    w0 = w.nan_to_num(0.0)
    total = float((w0 * ce.detach()).sum())
    expected = {
        "sum": total,
        "mean": total / max(len(ce_values), 1),
        "normalized": total / float(w0.sum()) if float(w0.sum()) > 0 else 0.0,
    }[reduction]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    if ce_values:
        loss.backward()
        assert bool(torch.isfinite(ce.grad).all())


@FUZZ
@given(label_maps(), st.sampled_from(METRICS), st.booleans())
def test_quality_score_in_unit_interval(m: dict, metric: str, as_logits: bool) -> None:
    pred, target, c, ignore, tol = m["pred"], m["target"], m["c"], m["ignore"], m["tol"]
    if as_logits:  # (B, C, H, W) scores whose argmax is pred
        pred = torch.nn.functional.one_hot(pred.long(), c).permute(0, 3, 1, 2).float()
    score = quality_score(pred, target, c, metric, tol, ignore)  # type: ignore[arg-type]
    assert score.dtype == torch.float32
    assert_scores(score, no_valid_pixel(target, ignore))


@pytest.mark.parametrize("flaw", ["metric", "shape", "weights"])
def test_weighting_refuses_bad_arguments(flaw: str) -> None:
    with pytest.raises(ValueError):
        if flaw == "metric":
            quality_score(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), 2, "dice")  # type: ignore[arg-type]
        elif flaw == "shape":
            per_image_cross_entropy(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))
        else:
            weighted_loss(torch.zeros(3), torch.zeros(2))


# ----------------------------------------------------------------------------- masks on disk


@FUZZ
@given(st.binary(max_size=300))
def test_read_mask_of_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("bytes") / "m.png"
    path.write_bytes(data)
    with pytest.raises(DataError, match="unreadable or truncated mask"):
        read_mask(path)


@st.composite
def mask_images(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    mode = draw(st.sampled_from(["L", "P", "I;16", "1", "LA", "RGB"]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arr = {
        "L": lambda: rng.integers(0, 256, (h, w), dtype=np.uint8),
        "P": lambda: rng.integers(0, 256, (h, w), dtype=np.uint8),
        "I;16": lambda: rng.integers(0, 2**16, (h, w)).astype(np.uint16),
        "1": lambda: rng.random((h, w)) < 0.5,
        "LA": lambda: rng.integers(0, 256, (h, w, 2), dtype=np.uint8),
        "RGB": lambda: rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
    }[mode]()
    return mode, arr


@FUZZ
@given(mask_images(), st.sampled_from(["whole", "truncated"]))
def test_read_mask_of_any_png(
    tmp_path_factory: pytest.TempPathFactory, image: tuple[str, np.ndarray], cut: str
) -> None:
    mode, arr = image
    if mode == "P":  # palette image: the stored indices are the classes
        im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
        im.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    else:
        im = Image.fromarray(arr)
        assert im.mode == mode
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    data = buf.getvalue()
    path = tmp_path_factory.mktemp("png") / "m.png"
    path.write_bytes(data if cut == "whole" else data[: max(8, len(data) // 2)])
    if cut == "truncated":
        with pytest.raises(DataError, match=f"^{path}: "):
            read_mask(path)
        return
    if mode in ("LA", "RGB"):
        with pytest.raises(DataError, match=f"^{path}: mask "):
            read_mask(path)
        return
    mask = read_mask(path)
    assert mask.shape == arr.shape and mask.dtype.kind in "biu"
    np.testing.assert_array_equal(mask.astype(np.int64), arr.astype(np.int64))


@st.composite
def folder_sets(draw: st.DrawFn) -> list[dict]:
    """2-4 image/mask pairs; each may have a bad mask (value, size, garbage) or be fine."""
    n = draw(st.integers(2, 4))
    return [
        {
            "h": draw(st.integers(4, 10)),
            "w": draw(st.integers(4, 10)),
            "flaw": draw(st.sampled_from([None, None, None, "value", "size", "garbage", "ignore"])),
            "seed": draw(st.integers(0, 1000)),
        }
        for _ in range(n)
    ]


@settings(max_examples=15, deadline=None, database=None)
@given(folder_sets(), st.sampled_from([None, (6, 8)]), st.booleans())
def test_folder_dataset_items_or_data_error(
    tmp_path_factory: pytest.TempPathFactory, pairs: list[dict], size: tuple[int, int] | None, train: bool
) -> None:
    root = tmp_path_factory.mktemp("folder")
    info = DatasetInfo(num_classes=3, ignore_index=255)
    bad_files = set()
    for i, p in enumerate(pairs):
        rng = np.random.default_rng(p["seed"])
        (root / "images" / "s").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "s").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (p["h"], p["w"], 3), dtype=np.uint8)).save(root / f"images/s/{i}.png")
        mask = rng.integers(0, 3, (p["h"], p["w"])).astype(np.uint8)
        mask_path = root / f"labels/s/{i}.png"
        if p["flaw"] == "value":
            mask[0, 0] = 7
        elif p["flaw"] == "ignore":
            mask[:2] = 255  # allowed: ignored pixels
        elif p["flaw"] == "size":
            mask = mask[:-1]
        Image.fromarray(mask).save(mask_path)
        if p["flaw"] == "garbage":
            mask_path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 40, dtype=np.uint8)))
        if p["flaw"] in ("value", "size", "garbage"):
            bad_files.add(str(mask_path))
    if size is None and len({(p["h"], p["w"]) for p in pairs}) > 1:
        size = (6, 8)  # batches need one size; without one, items differ (covered in test_data.py)
    try:
        ds = FolderDataset(root, "s", info=info, size=size, train=train, seed=0)
    except DataError as e:
        assert bad_files, e
        assert str(e).split(":")[0] in bad_files  # the message starts with the bad file
        return
    assert not bad_files
    for k in range(len(ds)):
        item = ds[k] if not train else ds[(k, k)]
        h, w = size or (pairs[k]["h"], pairs[k]["w"])
        assert item["image"].shape == (3, h, w) and item["image"].dtype == torch.float32
        assert bool(torch.isfinite(item["image"]).all())
        assert item["mask"].shape == (h, w) and item["mask"].dtype == torch.int64
        assert set(item["mask"].unique().tolist()) <= {0, 1, 2, 255}


# ----------------------------------------------------------------------------- known gaps (not owned here)


@pytest.mark.parametrize("shape", [(2, 0, 5), (1, 4, 0)])
def test_empty_images_give_nan(shape: tuple[int, int, int]) -> None:
    z = torch.zeros(shape, dtype=torch.long)
    assert bool(boundary_f1(z, z, 3).isnan().all())


def test_segmentation_metrics_needs_a_class() -> None:
    with pytest.raises(ValueError):
        SegmentationMetrics(0)


def test_cross_entropy_target_out_of_range_is_value_error() -> None:
    with pytest.raises(ValueError):
        per_image_cross_entropy(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 5))


def test_cross_entropy_integer_logits_is_value_error() -> None:
    with pytest.raises(ValueError):
        per_image_cross_entropy(torch.zeros(1, 3, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))


def test_cross_entropy_of_an_empty_image_is_zero() -> None:
    ce = per_image_cross_entropy(torch.zeros(2, 3, 0, 4), torch.zeros(2, 0, 4, dtype=torch.long))
    assert torch.equal(ce, torch.zeros(2))


def test_infinite_weight_is_refused() -> None:
    with pytest.raises(ValueError):
        weighted_loss(torch.ones(2), torch.tensor([float("inf"), 0.0]))


def test_decompression_bomb_is_a_data_error(tmp_path: Path) -> None:
    """Kept beside the fuzz: a huge mask is a DataError naming the file, not PIL's own exception."""
    path = tmp_path / "big.png"
    Image.new("1", (15000, 15000)).save(path)
    with pytest.raises(DataError, match="unreadable or truncated mask"):
        read_mask(path)
