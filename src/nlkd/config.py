"""Training configuration: typed dataclasses, loadable from YAML, overridable by ``key=value``.

Keys are dotted paths (``optim.lr``, ``strategy.name``); an unknown key or a value of the wrong type
is a one-line :class:`nlkd.errors.ConfigError`. ``--set optim.lr=0.01`` parses the value as YAML.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nlkd.data.folder import FORMATS
from nlkd.errors import ConfigError, did_you_mean
from nlkd.score_transforms import TRANSFORMS
from nlkd.weighting import METRICS, REDUCTIONS

__all__ = [
    "BandSide",
    "DataConfig",
    "DisagreeRule",
    "DoubtRuleName",
    "LogKind",
    "ModelConfig",
    "OptimConfig",
    "StrategyConfig",
    "TrainConfig",
    "apply_overrides",
    "check_config",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_size",
]

# names only the config knows: the field's type is the list (checked on load, read by the CLI and the strategies)
DoubtRuleName = Literal["all", "teacher", "score"]  # strategy.doubt_rule (nlkd.strategies.doubt)
DisagreeRule = Literal["any", "median"]  # strategy.disagree_rule (coteaching_plus)
BandSide = Literal["both", "teacher"]  # strategy.band_side (band_ignore)
LogKind = Literal["none", "tensorboard"]  # log


@dataclass
class DataConfig:
    root: str = ""  # ROOT with images/<split>/ and labels/<split>/
    format: str = "folder"  # a name of nlkd.data.folder.FORMATS
    train_split: str = "train"
    labels: str | None = None  # label folder to train on (e.g. train_coarse); default: train_split
    val_split: str = "val"
    val_labels: str | None = None  # default: val_split
    num_classes: int | None = None  # default: from ROOT/dataset.yaml
    ignore_index: int | None = None
    size: list[int] | None = field(default_factory=lambda: [96, 128])  # [H, W]; None = native size
    scale: list[float] | None = None  # random scale-crop range for training, e.g. [0.75, 1.25]
    hflip: bool = True
    num_workers: int = 0


@dataclass
class ModelConfig:
    name: str = "unet"  # see nlkd.models.list_models()
    encoder: str | None = None  # e.g. resnet18 / resnet34 / resnet50; None = the model's default
    encoder_weights: str | None = None  # None = random init (offline); "imagenet" downloads; a local file path
    options: dict[str, Any] = field(default_factory=dict)  # other options of create_model(name, ...)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_model(self.name, num_classes, **kwargs)``; a local weights file is
        not one (``nlkd.encoder_weights`` loads it into the built model)."""
        from nlkd.encoder_weights import is_weights_file

        tag = None if is_weights_file(self.encoder_weights) else self.encoder_weights
        given = {"encoder": self.encoder, "encoder_weights": tag}
        return {**{k: v for k, v in given.items() if v is not None}, **self.options}


@dataclass
class OptimConfig:
    name: str = "adamw"  # a name of nlkd.optim.OptimizerName
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # step (paper: x0.5 every 25 % of epochs) | poly | cosine | constant
    warmup_steps: int = 0
    grad_clip: float | None = None


@dataclass
class StrategyConfig:
    name: str = "baseline"
    teacher: str | None = None  # checkpoint of the teacher (reweight, nlkd, discard)
    teacher_scores: str | None = None  # CSV of per-image teacher scores (e.g. out-of-fold); overrides teacher
    metric: str = "bfmiou"  # a name of nlkd.weighting.METRICS
    tolerance: float = 2.0  # BF tolerance θ in pixels at the training resolution, for the weights (not eval)
    transform: str = "raw"  # reweight/nlkd weights: raw score | rank (percentile) | gmm (2-Gaussian posterior)
    # plain CE (every weight 1, the strategy not asked) for this share of the epochs, then the strategy; any strategy
    start: float = 0.0
    # a control: each image gets the teacher score of another (a fixed permutation from the run's seed), so the
    # weights keep their spread and lose what they say about which masks are bad
    shuffle_scores: bool = False
    warmup_epochs: int | None = None  # λ = 0 for this many epochs; default: 10 % of the epochs
    final_lambda: float = 0.5
    reduction: str = "mean"  # a name of nlkd.weighting.REDUCTIONS
    coarse_weight: float = 0.5  # fixed: weight of images flagged coarse
    coarse_list: str | None = None  # fixed: file of coarse ids; default: the label folder's manifest
    discard_ratio: float = 0.2  # discard: share of lowest-scored images dropped
    discard_threshold: float | None = None  # discard: drop images scored below this instead
    forget_rate: float = 0.2  # co-teaching: final share of images each network drops
    forget_epochs: int | None = None  # co-teaching: epochs to ramp up the forget rate (default 10 %)
    peer_model: str | None = None  # two-network strategies: the second network (default: same as model)
    disagree_rule: DisagreeRule = "any"  # coteaching_plus candidates: maps differ anywhere | above batch median
    # pixel-level strategies (relax, band_kd, nlkd_pixel, adele, band_ignore); the papers' defaults where they fit
    relax_radius: int = 1  # relax: labels relax to the classes of the (2r+1)² window (Zhu et al.: r = 1)
    # relax, band_kd, band_ignore act on: all pixels | teacher (cached argmax disagrees) | score (low-scored images)
    doubt_rule: DoubtRuleName = "all"
    doubt_quantile: float = 0.5  # doubt_rule=score: images below this quantile of the teacher scores are in doubt
    # band_kd: pixels nearer than this (px) to an annotated boundary learn the teacher; band_ignore: are left out
    band_radius: float = 3.0
    # band_ignore: both sides of every boundary in the band | only the side the teacher says the annotation moved into
    band_side: BandSide = "both"
    band_sigma: float = 1.0  # band_kd: annotation reliability 1 − exp(−d/σ) by boundary distance d (BAKD: 1 px)
    kd_temperature: float = 1.0  # band_kd: temperature T of the teacher's soft target (BAKD: 1)
    adele_r: float = 0.9  # adele: correct a class once its fitted IoU slope < (1 − r) × its slope at epoch 1
    adele_threshold: float = 0.7  # adele: τ; a label becomes the prediction when its probability > τ (SegTHOR)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    epochs: int = 30
    batch_size: int = 8
    seed: int = 0
    out: str = "runs/run"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # float16 mixed precision, CUDA only
    bf16: bool = False  # bfloat16 autocast for the training forward (CPU with AVX-512 bf16/AMX, or CUDA)
    channels_last: bool = False  # NHWC memory layout for the training step (faster convolutions on CPU)
    eval_tolerance: float = 2.0  # BF tolerance for validation
    threads: int | None = None  # torch CPU threads; default: torch's choice
    log: LogKind = "none"  # also write RUN/tb/ for TensorBoard (metrics.jsonl always)
    log_images_every: int = 5  # log=tensorboard: a grid of validation predictions every N epochs (and the last)
    keep_epochs: list[int] = field(default_factory=list)  # also keep the checkpoints after these epochs: epochN/
    # continue a plain-CE run's checkpoint (e.g. RUN/epoch20/last.pt) whose epochs strategy.start covers: the same
    # run as from scratch, without training those epochs again (nlkd.branch)
    init_from: str | None = None


def parse_size(text: str) -> list[int]:
    """``"96x128"`` -> ``[96, 128]`` (H x W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"size must look like HxW (e.g. 96x128), got {text!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"size must be positive, got {text!r}")
    return [h, w]


# old key -> its new name; configs written before the rename still load
RENAMED: dict[str, str] = {"strategy.reweight_start": "strategy.start"}


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_diffs(old: dict[str, Any], new: dict[str, Any], ignore: typing.Callable[[str], bool]) -> list[str]:
    """``"key: old -> new"`` for every dotted key whose value differs between two config dicts, except the
    keys ``ignore`` accepts (e.g. where a run lives)."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else k)
        elif a != b and not ignore(key):
            diffs.append(f"{key}: {a!r} -> {b!r}")

    walk(old, new, "")
    return diffs


def _fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field's type annotation; ints are accepted for floats."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
        raise ConfigError(
            f"config key {key!r} expects one of {', '.join(map(str, typing.get_args(hint)))}, got {value!r}"
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} expects a mapping, got {value!r}")
        return dict(value)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        return [_coerce(v, item, key) for v in value]
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, str, bool) and type(value) is hint:
        return value
    if hint is Any:
        return value
    raise ConfigError(f"config key {key!r} expects {getattr(hint, '__name__', hint)}, got {value!r}")


def config_from_dict(data: dict[str, Any], cls: type = TrainConfig, prefix: str = "") -> Any:
    """Build a (nested) config dataclass from a dict; unknown keys and bad types are ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or '<root>'!r} must be a mapping, got {data!r}")
    fields = _fields(cls)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if key in RENAMED:
            key = RENAMED[key]
            name = key.rsplit(".", 1)[-1]
        if name not in fields:
            valid = ", ".join(sorted(fields))
            raise ConfigError(f"unknown config key {key!r}; valid keys here: {valid}{did_you_mean(name, fields)}")
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = config_from_dict(value, hint, f"{key}.")
        else:
            kwargs[name] = _coerce(value, hint, key)
    return cls(**kwargs)


def _positive_pair(v: Any) -> bool:
    return v is None or (len(v) == 2 and all(isinstance(x, int) and x >= 1 for x in v))


def _scale_range(v: Any) -> bool:
    return v is None or (len(v) == 2 and 0 < v[0] <= v[1])


def _one_of(names: tuple[str, ...]) -> tuple[typing.Callable[[Any], bool], str]:
    """A check for a name of a registry (``names`` is the registry's own tuple)."""
    return (lambda v: v in names), f"{', '.join(names[:-1])} or {names[-1]}"


# Values the types alone do not pin down: dotted key -> (accepts the value?, what is expected).
_CHECKS: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "data.format": _one_of(FORMATS),
    "data.size": (_positive_pair, "[H, W] with H, W >= 1, or null"),
    "data.scale": (_scale_range, "[lo, hi] with 0 < lo <= hi, or null"),
    "data.num_workers": (lambda v: v >= 0, "an int >= 0"),
    "optim.lr": (lambda v: v > 0 and v != float("inf"), "a finite number > 0"),
    "optim.weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "optim.warmup_steps": (lambda v: v >= 0, "an int >= 0"),
    "optim.grad_clip": (lambda v: v is None or v > 0, "a number > 0, or null"),
    "strategy.metric": _one_of(METRICS),
    "strategy.reduction": _one_of(REDUCTIONS),
    "strategy.tolerance": (lambda v: 0 < v < float("inf"), "a finite number of pixels > 0"),
    "strategy.transform": _one_of(TRANSFORMS),
    "strategy.final_lambda": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "strategy.warmup_epochs": (lambda v: v is None or v >= 0, "an int >= 0, or null"),
    "strategy.relax_radius": (lambda v: v >= 0, "an int >= 0"),
    "strategy.doubt_quantile": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "strategy.band_radius": (lambda v: 0 < v < float("inf"), "a finite number of pixels > 0"),
    "strategy.band_sigma": (lambda v: 0 < v < float("inf"), "a finite number of pixels > 0"),
    "strategy.kd_temperature": (lambda v: 0 < v < float("inf"), "a finite number > 0"),
    "strategy.adele_r": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "strategy.adele_threshold": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "strategy.start": (lambda v: 0 <= v < 1, "a share of the epochs in [0, 1)"),
    "epochs": (lambda v: v >= 1, "an int >= 1"),
    "batch_size": (lambda v: v >= 1, "an int >= 1"),
    "eval_tolerance": (lambda v: 0 < v < float("inf"), "a finite number of pixels > 0"),
    "threads": (lambda v: v is None or v >= 1, "an int >= 1, or null"),
    "log_images_every": (lambda v: v >= 1, "an int >= 1"),
    "keep_epochs": (lambda v: all(k >= 1 for k in v), "a list of epochs >= 1"),
}


def check_config(cfg: TrainConfig) -> TrainConfig:
    """Check values the types do not pin down (choices, ranges); a bad one is a one-line ConfigError.

    Returns ``cfg`` unchanged. Model, optimiser, schedule and strategy names are checked by their
    factories, which list the valid names.
    """
    for key, (ok, expected) in _CHECKS.items():
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if not ok(node):
            raise ConfigError(f"config key {key!r} expects {expected}, got {node!r}")
    return cfg


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return a copy of ``cfg`` with dotted-key overrides applied (``{"optim.lr": 0.01}``).

    Keys below a mapping field are free (``model.options.depth=3``); any other unknown key is a
    :class:`ConfigError` listing the valid keys at that level. The result passes :func:`check_config`.
    """
    data = config_to_dict(cfg)
    for key, value in overrides.items():
        key = RENAMED.get(key, key)
        parts = key.split(".")
        node: dict[str, Any] = data
        cls: Any = type(cfg)  # the config dataclass at this level; None inside a free-form mapping
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if cls is not None:
                fields = _fields(cls)
                if part not in fields:
                    where = ".".join(parts[:i]) or "the top level"
                    valid = ", ".join(sorted(fields)) + did_you_mean(part, fields)
                    raise ConfigError(f"unknown config key {key!r}; valid keys at {where}: {valid}")
                hint = typing.get_type_hints(cls)[part]
                cls = hint if dataclasses.is_dataclass(hint) else None
                if not last and cls is None and typing.get_origin(hint) is not dict:
                    raise ConfigError(f"unknown config key {key!r}: {'.'.join(parts[: i + 1])} is not a section")
            if last:
                node[part] = value
                break
            if node.get(part) is None and cls is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ConfigError(f"unknown config key {key!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = node[part]
    return check_config(config_from_dict(data))


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.01", "data.size=[64, 64]"]`` -> dict, values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file (if any), then the overrides."""
    cfg = TrainConfig()
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found (ready configs: --config cpu, --config paper)") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        try:
            cfg = config_from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    return apply_overrides(cfg, overrides or {})
