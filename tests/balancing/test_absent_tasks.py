"""Absent tasks (no label in the batch) are left out of every method, stateful ones included.

The shared property: adding a task that is absent from every step (zero loss, zero gradient) leaves
every other task's weight and the applied update unchanged, step after step.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import polytask.balancing as pb
from polytask._core import PolytaskError
from polytask.balancing.base import BalancingMethod

M = 3  # present tasks
FACTORIES: dict[str, Callable[[int], BalancingMethod]] = {
    "ew": lambda m: pb.EW(),
    "uw": lambda m: pb.UW(m),
    "dwa": lambda m: pb.DWA(),
    "rlw": lambda m: pb.RLW(),
    "gls": lambda m: pb.GLS(),
    "imtl_l": lambda m: pb.IMTLL(m),
    "famo": lambda m: pb.FAMO(),
    "gradnorm": lambda m: pb.GradNorm(),
    "db_mtl": lambda m: pb.DBMTL(),
    "mgda": lambda m: pb.MGDA(),
    "pcgrad": lambda m: pb.PCGrad(),
    "gradvac": lambda m: pb.GradVac(),
    "graddrop": lambda m: pb.GradDrop(leak=[0.2] * m),
    "cagrad": lambda m: pb.CAGrad(),
    "imtl_g": lambda m: pb.IMTLG(),
    "nash_mtl": lambda m: pb.NashMTL(),
    "aligned_mtl": lambda m: pb.AlignedMTL(),
    "upgrad": lambda m: pb.UPGrad(),
    "dualproj": lambda m: pb.DualProj(),
    "config": lambda m: pb.ConFIG(),
    "fairgrad": lambda m: pb.FairGrad(),
}
CASES = [
    (name, mode, cols)
    for name in sorted(FACTORIES)
    for mode in ("exact", "features")
    if mode in FACTORIES[name](M).modes
    for cols in ((False, True) if mode == "features" else (False,))
]


class Net(nn.Module):
    def __init__(self, m: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh())
        self.head = nn.Linear(4, m)

    def losses(self, x: Tensor, y: Tensor, absent: int | None) -> tuple[Tensor, Tensor]:
        z = self.trunk(x)
        out = self.head(z)
        per = []
        for k in range(out.shape[1]):
            if k == absent:  # a masked loss with no label: a constant zero on the graph
                per.append(out[:, k].sum() * 0.0)
            else:
                j = k if absent is None or k < absent else k - 1
                per.append(((out[:, k] - y[:, j]) ** 2).mean() + 0.1 * (j + 1))
        return torch.stack(per), z


def pair(absent: int) -> tuple[Net, Net]:
    """The same network without and with an extra (absent) task head at column ``absent``."""
    torch.manual_seed(0)
    with_absent = Net(M + 1).double()
    plain = Net(M).double()
    plain.trunk.load_state_dict(with_absent.trunk.state_dict())
    keep = [k for k in range(M + 1) if k != absent]
    with torch.no_grad():
        plain.head.weight.copy_(with_absent.head.weight[keep])
        plain.head.bias.copy_(with_absent.head.bias[keep])
    return plain, with_absent


def run(net: Net, bal: pb.Balancer, absent: int | None, cols: bool, steps: int) -> list:
    out = []
    opt = torch.optim.SGD(list(net.parameters()) + list(bal.parameters()), lr=0.05)
    m = net.head.out_features
    for step in range(steps):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(8, 5, generator=g, dtype=torch.float64)
        y = torch.randn(8, M, generator=g, dtype=torch.float64)
        opt.zero_grad()
        losses, z = net.losses(x, y, absent)
        present = None if absent is None else torch.tensor([int(k != absent) * 8 for k in range(m)])
        torch.manual_seed(100 + step)  # RLW, PCGrad, GradVac and GradDrop draw
        res = bal.backward(
            losses,
            net.trunk.parameters(),
            features=z if bal.mode == "features" else None,
            columns=list(range(m)) if cols else None,
            present=present,
        )
        grads = [p.grad.clone() for p in net.trunk.parameters()]
        out.append((res.weights.clone(), grads))
        opt.step()
    return out


@pytest.mark.parametrize(("name", "mode", "cols"), CASES)
@pytest.mark.parametrize("absent", [0, 2])
def test_an_absent_task_changes_nothing(name: str, mode: str, cols: bool, absent: int) -> None:
    plain, with_absent = pair(absent)
    ref = run(plain, pb.Balancer(FACTORIES[name](M), mode), None, cols, steps=4)
    got = run(with_absent, pb.Balancer(FACTORIES[name](M + 1), mode), absent, cols, steps=4)
    keep = [k for k in range(M + 1) if k != absent]
    for step, ((w_ref, g_ref), (w, g)) in enumerate(zip(ref, got)):
        assert float(w[absent]) == 0.0, f"step {step}: the absent task got weight {w[absent]}"
        torch.testing.assert_close(w[keep], w_ref, atol=1e-6, rtol=1e-6)
        for a, b in zip(g, g_ref):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_one_present_task_is_a_finite_step(name: str) -> None:
    torch.manual_seed(0)
    net = Net(M).double()
    bal = pb.Balancer(FACTORIES[name](M), "exact" if name == "db_mtl" else "features")
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, M, dtype=torch.float64)
    for _ in range(2):
        net.zero_grad()
        losses, z = net.losses(x, y, None)
        losses = torch.stack([losses[0], net.head(z)[:, 1].sum() * 0, net.head(z)[:, 2].sum() * 0])
        res = bal.backward(losses, net.trunk.parameters(), features=z, present=[8, 0, 0])
        assert res.weights[1:].tolist() == [0.0, 0.0]
        assert bool(torch.isfinite(res.weights).all()) and float(res.weights[0]) > 0
        trunk = torch.cat([p.grad.flatten() for p in net.trunk.parameters()])
        assert float(trunk.norm()) > 0


@pytest.mark.parametrize("name", ["ew", "famo", "mgda", "upgrad", "graddrop"])
def test_no_present_task_is_no_update(name: str) -> None:
    torch.manual_seed(0)
    net = Net(M).double()
    bal = pb.Balancer(FACTORIES[name](M), "features")
    z = net.trunk(torch.randn(8, 5, dtype=torch.float64))
    losses = net.head(z).sum(0) * 0.0
    res = bal.backward(losses, net.trunk.parameters(), features=z, present=[0, 0, 0])
    assert res.weights.tolist() == [0.0, 0.0, 0.0]
    assert all(p.grad is None or float(p.grad.abs().max()) == 0 for p in net.parameters())


def test_famo_delta_only_for_tasks_present_in_both_calls() -> None:
    # task 1 is absent at call 2: at call 3 its logit must not move (no δ across the gap), and
    # the others' logits move exactly as in a run where task 1 never existed
    famo = pb.FAMO(lr=0.5)
    famo3 = pb.FAMO(lr=0.5)
    losses = [
        torch.tensor([1.0, 2.0, 3.0]),
        torch.tensor([0.5, 0.0, 2.0]),
        torch.tensor([0.4, 1.0, 1.0]),
    ]
    present = [[1, 1, 1], [1, 0, 1], [1, 1, 1]]
    bal, bal3 = pb.Balancer(famo), pb.Balancer(famo3)
    for vec, pres in zip(losses, present):
        v = vec.clone().requires_grad_()
        bal.backward(v, [v], present=torch.tensor(pres))
    # the same two present-in-both steps for tasks 0 and 2 alone
    for vec in losses:
        v = vec[[0, 2]].clone().requires_grad_()
        bal3.backward(v, [v])
    assert float(famo.logits[1]) == 0.0 and float(famo.adam_steps[1]) == 0.0
    torch.testing.assert_close(famo.logits[[0, 2]], famo3.logits)


def test_present_is_validated() -> None:
    v = torch.ones(3, requires_grad=True)
    bal = pb.Balancer(pb.EW())
    for bad, msg in (
        ([1, 1], r"\[m\] = \[3\]"),
        ([1, -1, 0], "negative"),
        ([1.0, float("nan"), 0.0], "NaN"),
    ):
        with pytest.raises(PolytaskError, match=msg):
            bal.backward(v * 1.0, [v], present=torch.tensor(bad))


def test_gls_leaves_out_a_saturated_task() -> None:
    # a present task whose loss underflows to exactly 0 must not stop training (0 geometric mean)
    from polytask.balancing.base import Statistics

    w = pb.GLS().weights(Statistics(losses=torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)))
    assert w.tolist() == pytest.approx([0.0, 1.0, 0.25])  # gm = 2 over the two others, K = 2
    zero = pb.GLS().weights(Statistics(losses=torch.zeros(2, dtype=torch.float64)))
    assert zero.tolist() == [0.0, 0.0]
    with pytest.raises(PolytaskError, match="non-negative"):
        pb.GLS().weights(Statistics(losses=torch.tensor([-1.0, 1.0], dtype=torch.float64)))


def test_dwa_survives_a_saturated_task() -> None:
    # a present task whose loss was exactly 0 gives the ratio 1 (not inf, not NaN)
    from polytask.balancing.base import Statistics

    dwa = pb.DWA(temperature=1.0)
    for loss in ([0.0, 1.0], [0.5, 0.5], [0.5, 0.25]):
        w = dwa.weights(Statistics(losses=torch.tensor(loss, dtype=torch.float64)))
    # r = (1 [undefined: 0.5/0], 0.5/1.0); w = 2 softmax(r)
    e = torch.tensor([1.0, 0.5], dtype=torch.float64).exp()
    torch.testing.assert_close(w, 2 * e / e.sum())


def test_famo_loss_ema_weighs_by_the_running_average() -> None:
    # ρ = 0.5: call 1 L̄ = L = (1, 2); call 2 L̄ = (0.5·1 + 0.5·0, 0.5·2 + 0.5·2) = (0.5, 2).
    # δ = log(1, 2) − log(0.5, 2) = (log 2, 0) moves the logits once; then w = z/(c L̄)
    from polytask.balancing.base import Statistics

    famo = pb.FAMO(lr=0.1, weight_decay=0.0, eps=0.0, loss_ema=0.5)
    famo.weights(Statistics(losses=torch.tensor([1.0, 2.0], dtype=torch.float64)))
    w = famo.weights(Statistics(losses=torch.tensor([0.0, 2.0], dtype=torch.float64)))
    # Adam's first step moves each logit by -lr·sign(grad): grad = z(δ − zᵀδ), z = (½, ½)
    xi = torch.tensor([-0.1, 0.1], dtype=torch.float64)
    z = torch.softmax(xi, 0)
    d = torch.tensor([0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(w, z / ((z / d).sum() * d))
    with pytest.raises(PolytaskError, match="loss_ema"):
        pb.FAMO(loss_ema=1.0)
