"""A short run's final metrics, pinned: the loop's refactors must not change what a seed trains.

The values were recorded from the loop before it was split into build / epoch / step / finish (commit
1ae0232) on an AVX-512 CPU, and on 2026-12-03 with the loop of commit 6390f9b (which matched them there) on
an AVX2-only CPU: float kernels round differently on the two, by up to 1 % over two epochs. Each case runs
two epochs on ``tiny_data`` with the small encoder and exercises a different part of the step: coarse flags
(``fixed``), teacher scores and ``setup`` (``nlkd`` from a scores CSV), two networks (``coteaching``).
Another CPU of the same kernel level still rounds differently: on 2026-12-04 an AVX-512 AMD EPYC was off the
AVX-512 recordings by up to 0.71 % in train_loss (nlkd; fixed 0.09 %, coteaching 0.07 %) and by up to 3.0 % in
what an argmax decides (the student's BFmIoU weights, val metrics: a rounding flips pixels). So train_loss and
the loop's own figures (λ, teacher weights, shares, lr) may differ by 2 %, the argmax figures by 10 % (about
3x what was measured). That is a coarse pin: it catches a loop that trains something else (other RNG draws,
order, weights), not a rounding change; tests/test_method_in_loop.py checks the weights exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import SMALL_ENCODER, recorded_on_this_cpu, tiny_config
from nlkd.train import train


def _scores_csv(data: Path, path: Path) -> str:
    ids = sorted(p.stem for p in (data / "images" / "train").iterdir())
    path.write_text("id,weight\n" + "".join(f"{i},{0.1 + 0.05 * k:.2f}\n" for k, i in enumerate(ids)))
    return str(path)


def _run(name: str, data: Path, out: Path) -> dict[str, Any]:
    changes: dict[str, Any] = {"model.encoder": SMALL_ENCODER, "data.labels": "train_coarse", "epochs": 2}
    changes["strategy.name"] = name
    if name == "nlkd":
        changes["strategy.teacher_scores"] = _scores_csv(data, out.parent / "scores.csv")
    record = train(tiny_config(data, out, **changes), log=lambda *a, **k: None)
    return {k: v for k, v in record.items() if k not in ("seconds", "train_seconds")}


@pytest.mark.parametrize("name", ["fixed", "nlkd", "coteaching"])
def test_final_metrics_are_pinned(name: str, tiny_data: Path, tmp_path: Path) -> None:
    got = _run(name, tiny_data, tmp_path / "run")
    want = recorded_on_this_cpu(PINNED)[name]
    assert want.keys() <= got.keys()  # new diagnostics may be logged beside the pinned figures
    for k, v in want.items():
        rel = 0.1 if k.startswith(("val_", "w_student")) else 2e-2  # an argmax decides the former
        assert got[k] == pytest.approx(v, rel=rel, abs=1e-7), k


PINNED: dict[str, dict[str, dict[str, float]]] = {
    "AVX512": {
        "fixed": {
            "epoch": 2,
            "train_loss": 1.0349582135677338,
            "coarse_share": 0.5,
            "w_mean": 0.75,
            "lr": 0.0,
            "val_miou": 0.14561433581270286,
            "val_bf": 0.3062904581463609,
            "val_pixel_accuracy": 0.4003092348575592,
        },
        "nlkd": {
            "epoch": 2,
            "train_loss": 0.5010773539543152,
            "lambda": 0.5,
            "w_teacher": 0.4750000014901161,
            "w_teacher_coarse": 0.36249999701976776,
            "w_teacher_clean": 0.5874999910593033,
            "w_student": 0.2688019871711731,
            "w_student_coarse": 0.29103951156139374,
            "w_student_clean": 0.24656444415450096,
            "lr": 0.0,
            "val_miou": 0.16658457774172442,
            "val_bf": 0.31553705986551805,
            "val_pixel_accuracy": 0.4090169370174408,
        },
        "coteaching": {
            "epoch": 2,
            "train_loss": 1.8987986147403717,
            "keep_rate": 0.8,
            "kept": 0.75,
            "overlap": 0.7499999999999999,
            "lr": 0.0,
            "val_miou": 0.14298845750389702,
            "val_bf": 0.32544118733752697,
            "val_pixel_accuracy": 0.3706868588924408,
        },
    },
    "AVX2": {
        "fixed": {
            "epoch": 2,
            "train_loss": 1.0350661873817444,
            "coarse_share": 0.5,
            "w_mean": 0.75,
            "lr": 0.0,
            "val_miou": 0.14728112923758582,
            "val_bf": 0.30765141077817953,
            "val_pixel_accuracy": 0.4012857973575592,
        },
        "nlkd": {
            "epoch": 2,
            "train_loss": 0.504377469420433,
            "lambda": 0.5,
            "w_teacher": 0.4750000014901161,
            "w_teacher_coarse": 0.36249999701976776,
            "w_teacher_clean": 0.5874999910593033,
            "w_student": 0.2731412202119827,
            "w_student_coarse": 0.2975233793258667,
            "w_student_clean": 0.24875906482338905,
            "lr": 0.0,
            "val_miou": 0.16693525150214258,
            "val_bf": 0.3121669846720909,
            "val_pixel_accuracy": 0.41162109375,
        },
        "coteaching": {
            "epoch": 2,
            "train_loss": 1.9015735387802124,
            "keep_rate": 0.8,
            "kept": 0.75,
            "overlap": 0.7499999999999999,
            "lr": 0.0,
            "val_miou": 0.14213980414407848,
            "val_bf": 0.32586672631030217,
            "val_pixel_accuracy": 0.370849609375,
        },
    },
}
