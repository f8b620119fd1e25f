"""Tests for nlkd.noise: dilate_erode, polygon_coarse, corrupt_dataset, load_manifest, `nlkd corrupt`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from nlkd.cli import main
from nlkd.errors import ConfigError, DataError
from nlkd.io import read_mask, write_mask
from nlkd.noise import corrupt_dataset, dilate_erode, load_manifest, polygon_coarse
from nlkd.noise_markov import markov_noise, markov_walk

IGNORE = 255


def random_mask(seed: int, shape: tuple[int, int] = (48, 64), n_classes: int = 4) -> np.ndarray:
    """Background 0 with random rectangles of classes 1..n_classes-1 and an ignored patch."""
    rng = np.random.default_rng(seed)
    m = np.zeros(shape, np.uint8)
    h, w = shape
    for _ in range(6):
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        m[y0 : y0 + rng.integers(2, 20), x0 : x0 + rng.integers(2, 25)] = rng.integers(1, n_classes)
    y0, x0 = rng.integers(0, h - 6), rng.integers(0, w - 6)
    m[y0 : y0 + 5, x0 : x0 + 5] = IGNORE
    return m


def distance_to_other_class(mask: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """(H, W): distance from each labelled pixel to the nearest labelled pixel of another class."""
    valid = mask != ignore_index if ignore_index is not None else np.ones(mask.shape, bool)
    out = np.full(mask.shape, np.inf)
    for c in np.unique(mask[valid]):
        other = valid & (mask != c)
        if other.any():
            d = ndimage.distance_transform_edt(~other)
            out[mask == c] = d[mask == c]
    return out


def square(size: int = 60, lo: int = 20, hi: int = 40) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[lo:hi, lo:hi] = 1
    return m


# ----------------------------------------------------------------------------- dilate_erode


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), hi=st.floats(1.0, 6.0))
def test_dilate_erode_invariants(seed: int, hi: float) -> None:
    mask = random_mask(seed)
    out = dilate_erode(mask, np.random.default_rng(seed), radius=(hi / 2, hi), ignore_index=IGNORE)
    assert out.shape == mask.shape and out.dtype == mask.dtype
    ignored = mask == IGNORE
    assert np.array_equal(out == IGNORE, ignored)  # ignore kept, never created
    assert set(np.unique(out[~ignored])) <= set(np.unique(mask[~ignored]))
    changed = out != mask
    assert np.all(distance_to_other_class(mask, IGNORE)[changed] <= hi + 1e-9)


def test_dilate_erode_grows_and_shrinks() -> None:
    mask = square()
    areas = {int((dilate_erode(mask, np.random.default_rng(s), radius=(3, 5)) == 1).sum()) for s in range(20)}
    assert min(areas) < 400 < max(areas)  # the square (400 px) both shrank and grew
    assert max(areas) <= (20 + 2 * 5) ** 2 and min(areas) >= (20 - 2 * 5) ** 2


def test_dilate_erode_is_deterministic_per_seed() -> None:
    mask = random_mask(3)
    a = dilate_erode(mask, np.random.default_rng(7), ignore_index=IGNORE)
    b = dilate_erode(mask, np.random.default_rng(7), ignore_index=IGNORE)
    assert np.array_equal(a, b)


def test_dilate_erode_default_radius_follows_paper_scale() -> None:
    mask = np.zeros((321, 321), np.uint8)
    mask[100:220, 80:240] = 1
    for s in range(4):
        out = dilate_erode(mask, np.random.default_rng(s))
        changed = out != mask
        assert changed.any()
        assert np.all(distance_to_other_class(mask, None)[changed] <= 10 + 1e-9)


def test_dilate_erode_single_class_and_bad_args() -> None:
    flat = np.full((8, 8), 2, np.int64)
    assert np.array_equal(dilate_erode(flat, np.random.default_rng(0)), flat)
    with pytest.raises(ValueError, match="radius"):
        dilate_erode(square(), np.random.default_rng(0), radius=(4, 2))
    with pytest.raises(ValueError, match="mask"):
        dilate_erode(np.zeros((4, 4, 3), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match=">= 0"):
        dilate_erode(square().astype(np.int64) - 1, np.random.default_rng(0))
    signed = square().astype(np.int64)
    signed[:3] = -1  # a negative ignore label is fine
    out = dilate_erode(signed, np.random.default_rng(0), ignore_index=-1)
    assert np.array_equal(out == -1, signed == -1)


# ----------------------------------------------------------------------------- polygon_coarse


def test_polygon_coarse_band_and_interior() -> None:
    mask = np.zeros((80, 80), np.uint8)
    mask[:, 40:] = 1
    mask[10:30, 5:25] = 2
    out = polygon_coarse(mask, np.random.default_rng(0), tolerance_px=2, band_px=6)
    assert out.dtype == mask.dtype
    assert set(np.unique(out)) <= {0, 1, 2, IGNORE}
    assert np.all(out[5:75, 38:42] == IGNORE)  # band along the 0|1 boundary
    assert np.all(out[10:30, 39:42] == IGNORE)
    far = distance_to_other_class(mask, None) > 2 * 1.5 + 3 + 2
    assert far.sum() > 0.5 * mask.size and np.array_equal(out[far], mask[far])


def test_polygon_coarse_keeps_ignore_and_drops_thin_regions() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 30:32] = 3  # a 2 px pole narrower than the band
    mask[50:, :10] = IGNORE
    out = polygon_coarse(mask, np.random.default_rng(1), tolerance_px=1.5, band_px=6)
    assert not (out == 3).any()
    assert np.all(out[50:, :10] == IGNORE)
    assert np.array_equal(out, polygon_coarse(mask, np.random.default_rng(1), tolerance_px=1.5, band_px=6))


def test_polygon_coarse_rejects_unrepresentable_ignore() -> None:
    with pytest.raises(ValueError, match="ignore_index"):
        polygon_coarse(square(), np.random.default_rng(0), ignore_index=300)


# ----------------------------------------------------------------------------- corrupt_dataset


def make_label_dir(path: Path, n: int = 10, first: int = 0) -> Path:
    for i in range(first, first + n):
        write_mask(path / f"img{i:03d}.png", random_mask(i, (32, 40)))
    return path


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("mode", ["dilate_erode", "polygon"])
def test_corrupt_dataset_manifest_and_determinism(tmp_path: Path, mode: str) -> None:
    src = make_label_dir(tmp_path / "src")
    before = digest(src)
    m1 = corrupt_dataset(src, tmp_path / "a", ratio=0.35, mode=mode, seed=5, ignore_index=IGNORE)
    m2 = corrupt_dataset(src, tmp_path / "b", ratio=0.35, mode=mode, seed=5, ignore_index=IGNORE)
    assert digest(src) == before
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and m1 == m2
    assert len(m1["corrupted"]) == round(0.35 * 10) and m1["corrupted"] == sorted(m1["corrupted"])
    assert m1 == load_manifest(tmp_path / "a") == json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m1["mode"] == mode and m1["ratio"] == 0.35 and m1["seed"] == 5 and m1["n_images"] == 10
    assert m1["ignore_index"] == IGNORE and m1["params"] == {} and m1["source"] == str(src.resolve())
    for p in sorted(src.glob("*.png")):
        same = p.read_bytes() == (tmp_path / "a" / p.name).read_bytes()
        assert same == (p.stem not in m1["corrupted"])  # corrupted ones differ, others are byte copies


def test_corrupt_dataset_per_image_noise_ignores_folder_contents(tmp_path: Path) -> None:
    a = make_label_dir(tmp_path / "a", n=4)
    b = make_label_dir(tmp_path / "b", n=4, first=2)
    corrupt_dataset(a, tmp_path / "oa", ratio=1.0, mode="dilate_erode", seed=1, radius=(2, 3))
    corrupt_dataset(b, tmp_path / "ob", ratio=1.0, mode="dilate_erode", seed=1, radius=(2, 3))
    for name in ("img002.png", "img003.png"):
        assert (tmp_path / "oa" / name).read_bytes() == (tmp_path / "ob" / name).read_bytes()
    assert load_manifest(tmp_path / "oa")["params"] == {"radius": [2, 3]}


def test_corrupt_dataset_refusals(tmp_path: Path) -> None:
    src = make_label_dir(tmp_path / "src", n=3)
    with pytest.raises(DataError, match="source"):
        corrupt_dataset(src, src, ratio=0.5, mode="dilate_erode", seed=0)
    with pytest.raises(DataError, match="inside"):
        corrupt_dataset(src, src / "sub", ratio=0.5, mode="dilate_erode", seed=0)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        corrupt_dataset(src, tmp_path / "foreign", ratio=0.5, mode="dilate_erode", seed=0)
    with pytest.raises(DataError, match=r"no \*\.png"):
        corrupt_dataset(tmp_path / "foreign", tmp_path / "x", ratio=0.5, mode="dilate_erode", seed=0)
    with pytest.raises(ConfigError, match="ratio"):
        corrupt_dataset(src, tmp_path / "x", ratio=1.5, mode="dilate_erode", seed=0)
    with pytest.raises(ConfigError, match="mode"):
        corrupt_dataset(src, tmp_path / "x", ratio=0.5, mode="blur", seed=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="band_px"):
        corrupt_dataset(src, tmp_path / "x", ratio=0.5, mode="dilate_erode", seed=0, band_px=3)
    assert not (tmp_path / "x").exists()


def test_corrupt_dataset_rewrites_its_own_output(tmp_path: Path) -> None:
    src = make_label_dir(tmp_path / "src", n=4)
    dst = tmp_path / "dst"
    corrupt_dataset(src, dst, ratio=0.5, mode="dilate_erode", seed=0)
    write_mask(dst / "stale.png", np.zeros((4, 4), np.uint8))
    manifest = corrupt_dataset(src, dst, ratio=1.0, mode="polygon", seed=0)
    assert not (dst / "stale.png").exists() and len(manifest["corrupted"]) == 4
    assert read_mask(dst / "img000.png").shape == (32, 40)


def test_load_manifest_missing_and_broken(tmp_path: Path) -> None:
    assert load_manifest(tmp_path) is None
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest"):
        load_manifest(tmp_path)


# ----------------------------------------------------------------------------- CLI


def test_cli_corrupt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_label_dir(tmp_path / "src", n=4)
    argv = ["corrupt", "--src", str(src), "--dst", str(tmp_path / "dst"), "--ratio", "0.5"]
    assert main([*argv, "--mode", "dilate_erode", "--seed", "3", "--radius", "1", "2"]) == 0
    assert "corrupted 2 of 4 masks" in capsys.readouterr().out
    assert main(["corrupt", "--src", str(src), "--dst", str(src)]) == 2
    assert main([*argv, "--mode", "dilate_erode", "--band-px", "4"]) == 2
    assert main(["corrupt", "--src", str(tmp_path / "nope"), "--dst", str(tmp_path / "d2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and all(line.startswith("nlkd corrupt: error:") for line in err.splitlines())


# ----------------------------------------------------------------------------- markov


def disk_mask(size: int = 120, radius: float = 30.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return (np.hypot(yy, xx) <= radius).astype(np.uint8)


def test_markov_walk_drift_direction_follows_expand_prob() -> None:
    fine = disk_mask().astype(bool)
    grown = markov_walk(fine, np.random.default_rng(0), steps=100, expand_prob=1.0, flip_prob=0.1)
    shrunk = markov_walk(fine, np.random.default_rng(0), steps=100, expand_prob=0.0, flip_prob=0.1)
    assert (grown >= fine).all() and grown.sum() > fine.sum()  # only ever adds pixels
    assert (shrunk <= fine).all() and shrunk.sum() < fine.sum()  # only ever removes pixels
    # Mean radial drift ~ T·θ2 = 10 px: area of a disk of radius 30 ± 10 px, within a factor of 2.
    r_grown, r_shrunk = np.sqrt(grown.sum() / np.pi), np.sqrt(shrunk.sum() / np.pi)
    assert 35 < r_grown < 50 and 10 < r_shrunk < 25
    same = markov_walk(fine, np.random.default_rng(0), steps=0, expand_prob=1.0, flip_prob=1.0)
    assert (same == fine).all()
    with pytest.raises(ValueError, match="flip_prob"):
        markov_walk(fine, np.random.default_rng(0), steps=1, expand_prob=1.0, flip_prob=1.5)


def test_markov_walk_respects_allowed_pixels() -> None:
    fine = disk_mask().astype(bool)
    allowed = np.ones_like(fine)
    allowed[:, 70:] = False  # a wall through the disk: pixels behind it neither join nor leave
    for expand_prob in (1.0, 0.0):
        rng = np.random.default_rng(1)
        out = markov_walk(fine, rng, steps=60, expand_prob=expand_prob, flip_prob=0.2, allowed=allowed)
        assert (out[~allowed] == fine[~allowed]).all()
        assert (out[allowed] != fine[allowed]).sum() > 100


@pytest.mark.parametrize("expand_prob", [1.0, 0.0])
def test_markov_noise_two_classes_move_by_the_later_class(expand_prob: float) -> None:
    fine = disk_mask(100, 25)
    fracs = set()
    for seed in range(8):
        out = markov_noise(fine, np.random.default_rng(seed), steps=60, expand_prob=expand_prob, pixel_flip_prob=0)
        change = (out != fine).mean()
        assert 0 < change < 0.5
        fracs.add(bool(out.sum() > fine.sum()))  # the disk grew (or the background did)
    assert fracs == {True, False}  # painting order decides which class's walk moves the shared boundary


def test_markov_noise_keeps_ignore_and_is_deterministic() -> None:
    for seed in range(5):
        mask = random_mask(seed, (60, 80))
        a = markov_noise(mask, np.random.default_rng(seed), steps=30, ignore_index=IGNORE)
        b = markov_noise(mask, np.random.default_rng(seed), steps=30, ignore_index=IGNORE)
        assert (a == b).all() and a.dtype == mask.dtype
        assert ((a == IGNORE) == (mask == IGNORE)).all()  # ignore untouched, and nothing new is ignored
        assert set(np.unique(a)) <= set(np.unique(mask))
        # Without θ3 a boundary moves at most one pixel per step plus the 5×5 blur's reach (2√2 px).
        far = distance_to_other_class(mask, IGNORE) > 30 + 2 * np.sqrt(2)
        smooth = markov_noise(mask, np.random.default_rng(seed), steps=30, pixel_flip_prob=0, ignore_index=IGNORE)
        assert not ((smooth != mask) & far).any()
    one_class = np.ones((20, 20), np.uint8)
    assert (markov_noise(one_class, np.random.default_rng(0)) == one_class).all()


def test_markov_noise_pixel_flips_roughen_boundaries_and_leave_rare_blobs() -> None:
    mask = np.zeros((200, 200), np.uint8)
    mask[:, 100:] = 1
    out = markov_noise(mask, np.random.default_rng(0), steps=5)
    far = distance_to_other_class(mask, None) > 5 + 2 * np.sqrt(2)
    # θ3 = 0.2 then the 5×5 blur: a flipped pixel survives only in a dense cluster of flips, which
    # happens to ~0.07 % of the pixels of a class map; near the boundary the flips make it ragged.
    assert 0 < ((out != mask) & far).mean() < 0.005 * far.mean()
    ragged = (out != mask) & ~far
    assert ragged.sum() > 5 * ((out != mask) & far).sum()


def test_markov_noise_default_steps_scale_with_image() -> None:
    # T = 150 * min(H, W) / 360: a 48-px image walks 20 steps, the same as asking for them.
    mask = random_mask(3, (48, 64))
    a = markov_noise(mask, np.random.default_rng(4))
    b = markov_noise(mask, np.random.default_rng(4), steps=20)
    assert (a == b).all() and (a != mask).any()


def test_corrupt_dataset_markov_manifest_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_label_dir(tmp_path / "src", n=6)
    m1 = corrupt_dataset(src, tmp_path / "a", ratio=0.5, mode="markov", seed=2, ignore_index=IGNORE, steps=10)
    m2 = corrupt_dataset(src, tmp_path / "b", ratio=0.5, mode="markov", seed=2, ignore_index=IGNORE, steps=10)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and m1 == m2
    assert m1["mode"] == "markov" and m1["params"] == {"steps": 10} and len(m1["corrupted"]) == 3
    for p in sorted(src.glob("*.png")):
        fine, noisy = read_mask(p), read_mask(tmp_path / "a" / p.name)
        assert ((noisy == IGNORE) == (fine == IGNORE)).all()
    argv = ["corrupt", "--src", str(src), "--dst", str(tmp_path / "c"), "--mode", "markov", "--seed", "2"]
    assert main([*argv, "--steps", "10", "--expand-prob", "0.3", "--ignore-index", str(IGNORE)]) == 0
    assert load_manifest(tmp_path / "c")["params"] == {"expand_prob": 0.3, "steps": 10}
    capsys.readouterr()  # the run's summary line
    assert main([*argv, "--flip-prob", "1.5"]) == 2
    assert main([*argv, "--radius", "1", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "--flip-prob" in err and "--radius" in err
