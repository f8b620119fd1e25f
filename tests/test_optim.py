"""nlkd.optim: Lookahead math, Ranger, exact resume from a state_dict, gradient centralisation, schedules."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from nlkd.errors import ConfigError, NLKDError
from nlkd.optim import Lookahead, Ranger, build_optimizer, build_scheduler


def _lrs(name: str, total: int, spe: int, warmup: int = 0) -> list[float]:
    """The LR used at each of ``total`` optimiser steps, starting from lr = 1."""
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(name, opt, total_steps=total, steps_per_epoch=spe, warmup_steps=warmup)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def _tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))


def _train(model: nn.Module, opt: torch.optim.Optimizer, sched, steps: int, g: torch.Generator) -> None:
    for _ in range(steps):
        x = torch.randn(4, 2, 4, 4, generator=g)
        y = torch.randn(4, 2, generator=g)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()


def test_lookahead_matches_hand_computed_quadratic():
    # f(w) = w^2 / 2, SGD lr 0.1: each fast step multiplies w by 0.9.
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=3, alpha=0.5)
    seen = []
    for _ in range(6):
        opt.zero_grad()
        (0.5 * w**2).sum().backward()
        opt.step()
        seen.append(w.item())
    assert seen[1] == pytest.approx(0.81)  # plain fast steps inside a cycle
    slow1 = 1.0 + 0.5 * (0.9**3 - 1.0)  # = 0.8645
    assert seen[2] == pytest.approx(slow1)  # fast reset to the slow weights
    slow2 = slow1 + 0.5 * (slow1 * 0.9**3 - slow1)
    assert seen[5] == pytest.approx(slow2)
    assert opt.state[w]["slow_params"].item() == pytest.approx(slow2)


def test_ranger_decreases_loss():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = x @ torch.randn(5, 3, generator=g)
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    opt = Ranger(model.parameters(), lr=0.1, weight_decay=5e-4)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # GC keeps each weight row's mean fixed: no exact fit
    assert losses[-1] < losses[-10] < losses[-20]


def _reference_ranger_step(params, grads, state, lr, wd, t, k=6, alpha=0.5, betas=(0.95, 0.999), eps=1e-8):
    """One step of RAdam (decoupled weight decay) + gradient centralisation + Lookahead, written out."""
    b1, b2 = betas
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    for p, g in zip(params, grads):
        g = g - g.mean(dim=tuple(range(1, g.ndim)), keepdim=True) if g.ndim > 1 else g
        m, v, slow = state.setdefault(p, [torch.zeros_like(p), torch.zeros_like(p), p.clone()])
        p.mul_(1 - lr * wd)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = m / (1 - b1**t)
        if rho_t > 5:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p.sub_(lr * rect * m_hat * math.sqrt(1 - b2**t) / (v.sqrt() + eps))
        else:  # variance not yet usable: a momentum SGD step
            p.sub_(lr * m_hat)
        if t % k == 0:
            slow.add_(p - slow, alpha=alpha)
            p.copy_(slow)


def test_ranger_is_radam_with_gradient_centralisation_and_lookahead():
    """pytorch-optimizer's Ranger, as set up here, takes the steps of the algorithm written out above
    (the first 5 descend: the library's default would climb there)."""
    g = torch.Generator().manual_seed(1)
    model, ref = _tiny_model(0), _tiny_model(0)
    opt = Ranger(model.parameters(), lr=0.01, weight_decay=5e-4)
    state: dict = {}
    for t in range(1, 41):
        x, y = torch.randn(4, 2, 4, 4, generator=g), torch.randn(4, 2, generator=g)
        for m in (model, ref):
            m.zero_grad()
            nn.functional.mse_loss(m(x), y).backward()
        opt.step()
        with torch.no_grad():
            _reference_ranger_step(list(ref.parameters()), [p.grad for p in ref.parameters()], state, 0.01, 5e-4, t)
        for p, q in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_resumes_bit_identically():
    g = torch.Generator().manual_seed(1)
    model = _tiny_model(0)
    opt = Ranger(model.parameters(), lr=0.01, weight_decay=5e-4, k=3)
    sched = build_scheduler("step", opt, total_steps=16, steps_per_epoch=2)
    _train(model, opt, sched, 7, g)  # stop mid-cycle (7 % 3 != 0) and mid-schedule
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    g_state = g.get_state()
    _train(model, opt, sched, 8, g)  # the uninterrupted run

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # plain types only
    resumed = _tiny_model(99)
    resumed.load_state_dict(ckpt["model"])
    opt2 = Ranger(resumed.parameters(), lr=0.01, weight_decay=5e-4, k=3)
    sched2 = build_scheduler("step", opt2, total_steps=16, steps_per_epoch=2)
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    assert opt2.param_groups[0]["step"] == 7
    g2 = torch.Generator()
    g2.set_state(g_state)
    _train(resumed, opt2, sched2, 8, g2)

    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    old = {"base": {}, "slow": {}, "k": 3, "alpha": 0.5, "lookahead_step": 7}  # nlkd's own former Ranger
    with pytest.raises(NLKDError, match="former Ranger"):
        opt2.load_state_dict(old)


@pytest.mark.parametrize("gc", [True, False])
def test_ranger_centralizes_weight_grads_only_when_asked(gc: bool):
    model = nn.Linear(4, 3)
    opt = Ranger(model.parameters(), lr=0.01, weight_decay=0.0, gc=gc)
    model(torch.randn(5, 4, generator=torch.Generator().manual_seed(3))).pow(2).sum().backward()
    w_grad, b_grad = model.weight.grad.clone(), model.bias.grad.clone()
    opt.step()
    if gc:
        torch.testing.assert_close(model.weight.grad, w_grad - w_grad.mean(dim=1, keepdim=True))
    else:
        assert torch.equal(model.weight.grad, w_grad)
    assert torch.equal(model.bias.grad, b_grad)


def test_step_schedule_halves_at_quarters_of_the_epochs():
    lrs = _lrs("step", total=100, spe=1)
    assert [lrs[s] for s in (0, 24, 25, 49, 50, 74, 75, 99)] == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    # 100 steps of 30 per epoch: the decays wait for the next epoch boundary.
    lrs = _lrs("step", total=100, spe=30)
    assert [lrs[s] for s in (29, 30, 59, 60, 89, 90)] == [1, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_poly_cosine_constant_and_warmup():
    poly = _lrs("poly", total=100, spe=10)
    assert poly[0] == 1.0
    assert poly[50] == pytest.approx(0.5**0.9)
    assert poly[99] == pytest.approx(0.01**0.9)
    cos = _lrs("cosine", total=100, spe=10)
    assert cos[0] == 1.0 and cos[50] == pytest.approx(0.5)
    assert cos[99] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    assert set(_lrs("constant", total=10, spe=5)) == {1.0}
    warm = _lrs("cosine", total=110, spe=10, warmup=10)
    assert warm[0] == pytest.approx(0.1) and warm[4] == pytest.approx(0.5)
    assert warm[9] == 1.0 and warm[10] == 1.0
    assert warm[60] == pytest.approx(0.5)
    warm_step = _lrs("step", total=100, spe=1, warmup=4)
    assert warm_step[0] == pytest.approx(0.25) and warm_step[3] == 1.0 and warm_step[25] == 0.5


def test_bad_names_raise_config_error():
    p = [nn.Parameter(torch.zeros(1))]
    with pytest.raises(ConfigError, match="ranger, sgd, adamw"):
        build_optimizer("adam", p, lr=0.1, weight_decay=0.0)  # type: ignore[arg-type]
    opt = build_optimizer("sgd", p, lr=0.1, weight_decay=0.0)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    assert isinstance(build_optimizer("adamw", p, lr=0.1, weight_decay=0.0), torch.optim.AdamW)
    assert isinstance(build_optimizer("ranger", p, lr=0.1, weight_decay=0.0), Ranger)
    with pytest.raises(ConfigError, match="step, poly, cosine, constant"):
        build_scheduler("linear", opt, total_steps=10, steps_per_epoch=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"optim\.warmup_steps"):
        build_scheduler("poly", opt, total_steps=10, steps_per_epoch=1, warmup_steps=10)
