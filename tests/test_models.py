"""Tests for nlkd.models: every registered model, the factory's errors, the auxiliary-loss interface."""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from nlkd.errors import ConfigError
from nlkd.models import auxiliary_loss, create_model, list_models, register_model
from nlkd.models.pointrend import PointRend, point_sample, sample_uncertain_points, uncertainty
from nlkd.models.registry import _REGISTRY
from nlkd.weighting import per_image_cross_entropy

NUM_CLASSES = 3
IGNORE = 255
MODELS = list_models()
_CACHE: dict[str, torch.nn.Module] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine, 2 threads spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(name: str) -> torch.nn.Module:
    """One shared instance per name (building is the slow part); tests that train build their own."""
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = create_model(name, NUM_CLASSES)
    return _CACHE[name]


def _batch(height: int = 64, width: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable fixed batch: a (2, H, W) map of shapes, and images whose colour encodes the class."""
    target = torch.zeros(2, height, width, dtype=torch.long)
    target[0, : height // 2] = 1
    target[0, height // 4 : height // 2 + 8, width // 4 : width // 2] = 2
    target[1, :, width // 3 :] = 2
    target[1, height // 3 : 2 * height // 3, : width // 2] = 1
    gen = torch.Generator().manual_seed(0)
    images = F.one_hot(target, 3).permute(0, 3, 1, 2).float() + 0.3 * torch.randn(2, 3, height, width, generator=gen)
    return images, target


def test_registry_names() -> None:
    assert MODELS == ["deeplabv3plus", "ocrnet", "pointrend", "unet"]


@pytest.mark.parametrize("size", [(64, 96), (45, 70)])
@pytest.mark.parametrize("name", MODELS)
def test_logits_at_input_size_train_and_eval(name: str, size: tuple[int, int]) -> None:
    model = _model(name)
    images = torch.randn(2, 3, *size)
    model.train()
    assert model(images).shape == (2, NUM_CLASSES, *size)
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out.shape == (2, NUM_CLASSES, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_a_few_steps_lower_the_loss(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, NUM_CLASSES).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, target = _batch(32, 48)
    losses = []
    for _ in range(4):
        logits = model(images)
        loss = per_image_cross_entropy(logits, target, IGNORE) + auxiliary_loss(model, target, IGNORE)
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
        losses.append(loss.mean().item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", MODELS)
def test_auxiliary_loss_per_image(name: str) -> None:
    model = _model(name).train()
    images, target = _batch(48, 80)
    model(images)
    target[0, :10] = IGNORE
    for ignore_index in (IGNORE, None):
        aux = auxiliary_loss(model, target.clamp(max=NUM_CLASSES - 1) if ignore_index is None else target, ignore_index)
        assert aux.shape == (2,)
        assert (aux >= 0).all()
    # an image with no valid pixel contributes 0
    target[1] = IGNORE
    assert auxiliary_loss(model, target, IGNORE)[1] == 0
    # and the loss is differentiable when the model has extras
    aux = auxiliary_loss(model, target, IGNORE)
    assert aux.requires_grad == (name in ("ocrnet", "pointrend"))


@pytest.mark.parametrize("name", ["ocrnet", "pointrend"])
def test_auxiliary_loss_needs_a_training_forward(name: str) -> None:
    model = _model(name)
    images, target = _batch()
    model.train()
    model(images)
    with pytest.raises(ValueError, match="target must be"):
        auxiliary_loss(model, target[:, :32], IGNORE)
    model.eval()
    with torch.no_grad():
        model(images)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        auxiliary_loss(model, target, IGNORE)


def test_auxiliary_loss_zero_for_plain_models_and_bad_target() -> None:
    target = torch.zeros(3, 8, 8, dtype=torch.long)
    assert torch.equal(auxiliary_loss(_model("unet"), target, None), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        auxiliary_loss(_model("unet"), target[0], None)


def test_auxiliary_loss_unwraps_ddp(tmp_path) -> None:
    dist = torch.distributed
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group yet")
    model = _model("ocrnet").train()
    images, target = _batch()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        wrapped(images)
        expected = model.auxiliary_loss(target, IGNORE)
        assert torch.allclose(auxiliary_loss(wrapped, target, IGNORE), expected)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["ocrnet", "pointrend"])
def test_deepcopy_after_training_forward(name: str) -> None:
    model = _model(name).train()
    model(_batch()[0])
    clone = copy.deepcopy(model)
    with pytest.raises(RuntimeError):  # the copy holds no stale training batch
        auxiliary_loss(clone, _batch()[1], IGNORE)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'unet'.*deeplabv3plus, ocrnet, pointrend, unet"):
        create_model("Unet", NUM_CLASSES)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "unet",
            {"encoder_name": "resnet18"},
            r"unknown option.*encoder_name.*accepted: encoder, encoder_weights",
        ),
        ("ocrnet", {"pretrainde": False}, r"unknown option.*pretrainde"),
        ("pointrend", {"oversample": 3}, r"unknown option.*oversample"),
        ("unet", {"encoder": "resnet19"}, r"unknown encoder 'resnet19'.*did you mean"),
        ("ocrnet", {"backbone": "hrnet_w999"}, "unknown timm backbone"),
        ("pointrend", {"importance_ratio": 1.5}, "importance_ratio"),
        ("deeplabv3plus", {"output_stride": 32}, "output_stride"),
    ],
)
def test_bad_options_are_config_errors(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(name, NUM_CLASSES, **kwargs)


def test_bad_num_classes() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("unet", 1)


def test_register_model_rejects_duplicates_and_is_parametrized() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("unet")(lambda num_classes: torch.nn.Identity())
    register_model("_tiny")(lambda num_classes, *, width=4: torch.nn.Conv2d(3, num_classes, 1))
    try:
        assert create_model("_tiny", 2, width=8).out_channels == 2
    finally:
        del _REGISTRY["_tiny"]


def test_models_build_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    for name in MODELS:
        create_model(name, NUM_CLASSES)


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "resnet50"])
@pytest.mark.parametrize("name", ["unet", "deeplabv3plus"])
def test_resnet_encoders(name: str, encoder: str) -> None:
    model = create_model(name, NUM_CLASSES, encoder=encoder).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 24, 40)).shape == (1, NUM_CLASSES, 24, 40)


def test_per_image_cross_entropy_matches_a_loop() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 5, 6, generator=gen)
    target = torch.randint(0, 4, (3, 5, 6), generator=gen)
    target[0, :2] = IGNORE
    target[2] = IGNORE
    got = per_image_cross_entropy(logits, target, IGNORE)
    for i in range(2):
        valid = target[i] != IGNORE
        expected = F.cross_entropy(logits[i].permute(1, 2, 0)[valid], target[i][valid])
        assert torch.allclose(got[i], expected)
    assert got[2] == 0
    assert torch.allclose(
        per_image_cross_entropy(logits, target.clamp(max=3), None)[1],
        F.cross_entropy(logits[1:2], target[1:2].clamp(max=3)),
    )


def test_point_sampling_prefers_uncertain_points_inside_the_image() -> None:
    coarse = torch.zeros(2, 3, 16, 16)
    coarse[:, 0, :, 8:] = 5.0  # right half certain, left half a 3-way tie
    gen = torch.Generator().manual_seed(0)
    points = sample_uncertain_points(coarse, 400, 3.0, 0.75, scale=(0.5, 1.0), generator=gen)
    assert points.shape == (2, 400, 2)
    assert ((points >= 0) & (points <= 1)).all()
    # scale 0.5: the image covers the left half of the padded frame, the uncertain part
    important = point_sample(coarse, points[:, :300] * torch.tensor([0.5, 1.0]) * 2 - 1)
    assert torch.allclose(uncertainty(important), torch.zeros(2, 300))


def test_point_labels_are_nearest_samples_of_the_target() -> None:
    model = create_model("pointrend", NUM_CLASSES, train_points=64).train()
    images, target = _batch(40, 56)
    model(images, generator=torch.Generator().manual_seed(0))
    points = model._extras["points"]
    grid = (points * 2 - 1).unsqueeze(2)
    labels = F.grid_sample(target[:, None].float(), grid, mode="nearest", align_corners=False)
    point_logits = model._extras["point_logits"]
    expected = per_image_cross_entropy(point_logits, labels[:, 0, :, 0].long(), None)
    assert torch.allclose(model.auxiliary_loss(target, None), expected)


def test_subdivision_with_enough_points_repredicts_every_pixel() -> None:
    model = create_model("pointrend", NUM_CLASSES, subdivision_points=10**6).eval()
    assert isinstance(model, PointRend)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(images)
        coarse, fine = model.coarse_head(model.encoder(images)[2:])
        ys, xs = torch.meshgrid((torch.arange(64) + 0.5) / 32 - 1, (torch.arange(64) + 0.5) / 32 - 1, indexing="ij")
        grid = torch.stack([xs, ys], dim=2).reshape(1, -1, 2)
        expected = model.point_head(point_sample(fine, grid), point_sample(coarse, grid)).view(1, NUM_CLASSES, 64, 64)
    assert torch.allclose(out, expected, atol=1e-5)
