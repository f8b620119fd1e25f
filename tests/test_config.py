"""Training configuration: YAML files, ``--set key=value`` overrides, unknown keys and bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nlkd.config import (
    TrainConfig,
    apply_overrides,
    check_config,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_set,
    parse_size,
)
from nlkd.errors import ConfigError


def test_defaults_round_trip_through_a_dict() -> None:
    cfg = TrainConfig()
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert check_config(cfg) is cfg


def test_yaml_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\noptim:\n  lr: 0.01\n  name: sgd\ndata:\n  size: [64, 80]\n  labels: coarse\n")
    cfg = load_config(path, {"optim.lr": 0.5, "seed": 7})
    assert (cfg.epochs, cfg.optim.lr, cfg.optim.name, cfg.seed) == (3, 0.5, "sgd", 7)
    assert cfg.data.size == [64, 80] and cfg.data.labels == "coarse"
    assert cfg.optim.weight_decay == TrainConfig().optim.weight_decay  # untouched keys keep defaults


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == TrainConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("optim:\n  lrr: 0.1\n", "unknown config key 'optim.lrr'"),
        ("optim: 3\n", "config section 'optim.' must be a mapping"),
        ("epochs: many\n", "config key 'epochs' expects int, got 'many'"),
    ],
)
def test_bad_yaml_file_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        load_config(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("optim.lr=0.01", {"optim.lr": 0.01}),
        ("epochs=3", {"epochs": 3}),
        ("data.size=[64, 64]", {"data.size": [64, 64]}),
        ("data.size=null", {"data.size": None}),
        ("model.options={depth: 3}", {"model.options": {"depth": 3}}),
        ("strategy.name=nlkd", {"strategy.name": "nlkd"}),
        ("data.hflip=false", {"data.hflip": False}),
        ("out=a=b", {"out": "a=b"}),  # only the first '=' splits
        (" seed = 4", {"seed": 4}),
    ],
)
def test_parse_set(item: str, expected: dict[str, object]) -> None:
    assert parse_set([item]) == expected


@pytest.mark.parametrize("item", ["optim.lr", "=3", "epochs=[1,"])
def test_parse_set_rejects_malformed_items(item: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        parse_set([item])


def test_float_keys_accept_exponent_notation() -> None:
    # PyYAML reads '1e-3' as a string (YAML 1.1 wants '1.0e-3'); a float key still takes it.
    cfg = apply_overrides(TrainConfig(), parse_set(["optim.lr=1e-3", "optim.weight_decay=5E-4"]))
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.optim.weight_decay == pytest.approx(5e-4)


def test_int_is_accepted_for_float_and_none_for_optional() -> None:
    cfg = apply_overrides(TrainConfig(), {"optim.lr": 1, "optim.grad_clip": None, "strategy.teacher": None})
    assert isinstance(cfg.optim.lr, float) and cfg.optim.grad_clip is None


def test_mapping_options_take_dotted_keys() -> None:
    cfg = apply_overrides(TrainConfig(), {"model.options.depth": 3, "model.options.head.width": 8})
    assert cfg.model.options == {"depth": 3, "head": {"width": 8}}
    assert cfg.model.kwargs() == {"depth": 3, "head": {"width": 8}}


@pytest.mark.parametrize(
    ("key", "level", "some_valid"),
    [
        ("optim.lrr", "optim", "lr"),
        ("foo.bar", "the top level", "epochs"),
        ("epoch", "the top level", "epochs"),
        ("strategy.teachr", "strategy", "teacher"),
        ("data.sizes", "data", "size"),
    ],
)
def test_unknown_key_lists_the_valid_keys(key: str, level: str, some_valid: str) -> None:
    with pytest.raises(ConfigError) as e:
        apply_overrides(TrainConfig(), {key: 1})
    msg = str(e.value)
    assert f"unknown config key {key!r}" in msg and f"valid keys at {level}:" in msg
    assert some_valid in msg.split(":", 1)[1].replace(",", " ").split()
    assert "\n" not in msg


def test_key_below_a_value_is_not_a_section() -> None:
    with pytest.raises(ConfigError, match="epochs is not a section"):
        apply_overrides(TrainConfig(), {"epochs.x": 1})


@pytest.mark.parametrize(
    ("key", "value", "expects", "shown"),
    [
        ("optim.lr", "abc", "float", "'abc'"),
        ("epochs", 2.5, "int", "2.5"),
        ("epochs", True, "int", "True"),  # a bool is not an int here
        ("epochs", "3", "int", "'3'"),
        ("data.hflip", "yes please", "bool", "'yes please'"),
        ("data.size", "64x64", "a list", "'64x64'"),
        ("data.size", [64, "x"], "int", "'x'"),  # the bad item
        ("model.options", 3, "a mapping", "3"),
        ("strategy.teacher", 5, "str", "5"),
        ("seed", None, "int", "None"),
    ],
)
def test_wrong_type_names_key_and_value(key: str, value: object, expects: str, shown: str) -> None:
    with pytest.raises(ConfigError) as e:
        apply_overrides(TrainConfig(), {key: value})
    assert str(e.value) == f"config key {key!r} expects {expects}, got {shown}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("optim.lr", 0.0),
        ("optim.lr", float("nan")),
        ("optim.lr", "inf"),
        ("optim.weight_decay", -1e-4),
        ("optim.grad_clip", 0.0),
        ("strategy.metric", "dice"),
        ("strategy.reduction", "max"),
        ("strategy.tolerance", -1.0),
        ("strategy.final_lambda", 1.5),
        ("data.format", "coco"),
        ("data.size", [0, 64]),
        ("data.size", [64]),
        ("data.scale", [1.2, 0.8]),
        ("eval_tolerance", 0),
        ("threads", 0),
    ],
)
def test_out_of_range_values_are_refused(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"config key {key!r} expects")) as e:
        apply_overrides(TrainConfig(), {key: value})
    assert "\n" not in str(e.value)


def test_check_config_catches_values_set_in_code() -> None:
    cfg = TrainConfig()
    cfg.strategy.metric = "dice"
    with pytest.raises(ConfigError, match=r"strategy\.metric"):
        check_config(cfg)


def test_overrides_do_not_modify_the_input() -> None:
    cfg = TrainConfig()
    apply_overrides(cfg, {"optim.lr": 0.5, "model.options.depth": 3})
    assert cfg == TrainConfig()


@pytest.mark.parametrize(("text", "size"), [("96x128", [96, 128]), ("32X48", [32, 48]), ("1x1", [1, 1])])
def test_parse_size(text: str, size: list[int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["96", "96x", "x128", "0x5", "-1x4", "axb", "1x2x3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="size"):
        parse_size(text)
