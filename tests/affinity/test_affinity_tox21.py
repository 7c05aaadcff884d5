"""Real data (slow): gradient affinity on the 12 bundled Tox21 tasks pairs each receptor with its
ligand-binding-domain assay (NR-AR with NR-AR-LBD, NR-ER with NR-ER-LBD)."""

from __future__ import annotations

import pytest
import torch

from polytask.affinity import GradientAffinity, choose_groups
from polytask.balancing import Balancer, UPGrad
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TOX21_TASKS, JointLoader, TensorData, ecfp, load_tox21
from polytask.train import train_step
from tests.conftest import needs


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_tox21_receptor_pairs(seed: int) -> None:
    needs("rdkit")
    torch.manual_seed(seed)
    smiles, labels = load_tox21()
    x = torch.tensor(ecfp(smiles, n_bits=512), dtype=torch.float32)
    y = {t: torch.tensor(labels[t]) for t in TOX21_TASKS}
    ts = TaskSet([Task(t, "binary") for t in TOX21_TASKS])
    model = build_model(mlp_trunk(512, (256,)), ts.tasks, 256)
    loader = JointLoader(TensorData(x, y), 128)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    balancer = Balancer(UPGrad())
    affinity = GradientAffinity(rate=0.05)
    for step in range(300):
        out = train_step(model, loader.batch(step), ts, opt, balancer=balancer, step=step)
        names = tuple(n for n in ts.names if n in out.losses)
        affinity.update(out.gramian, names, epoch=step // loader.steps_per_epoch, step=step)
    c = affinity.matrix()
    names = affinity.task_names
    pairs = sorted(
        ((float(c[i, j]), names[i], names[j]) for i in range(12) for j in range(i + 1, 12)),
        reverse=True,
    )
    top2 = {frozenset(p[1:]) for p in pairs[:2]}
    assert top2 == {frozenset({"NR-AR", "NR-AR-LBD"}), frozenset({"NR-ER", "NR-ER-LBD"})}
    groups = choose_groups(c, 4, names).named()
    assert ["NR-AR", "NR-AR-LBD"] in groups
    assert ["NR-ER", "NR-ER-LBD"] in groups
