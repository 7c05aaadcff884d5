"""PretextLoader: base batch plus generated groups, deterministic in (seed, step), resumable."""

from __future__ import annotations

import pytest
import torch

from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, PerTaskLoader, RoundRobinSampler, TensorData
from polytask.tasks.ssl import ContrastiveViews, FeatureDropout, MaskedFeatures, PretextLoader


def _data(n: int = 40, f: int = 16, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, f, generator=g) < 0.3).float()
    y = torch.rand(n, generator=g).round()
    y[::3] = float("nan")
    return TensorData(x, {"a": y})


def _pretexts() -> dict[str, object]:
    return {"recon": MaskedFeatures(0.25), "views": ContrastiveViews([FeatureDropout(0.2)])}


def _same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for ga, gb in zip(a, b):
        if not torch.equal(ga.inputs, gb.inputs) or set(ga.targets) != set(gb.targets):
            return False
        for k in ga.targets:
            if not torch.equal(ga.targets[k].nan_to_num(-7), gb.targets[k].nan_to_num(-7)):
                return False
    return True


def test_groups_follow_the_base_batch() -> None:
    data = _data()
    base = JointLoader(data, 8, seed=1)
    loader = PretextLoader(JointLoader(data, 8, seed=1), _pretexts(), seed=1)  # type: ignore[arg-type]
    assert loader.steps_per_epoch == base.steps_per_epoch == 5
    batch = loader.batch(3)
    ref = base.batch(3)[0]
    assert len(batch) == 3 and torch.equal(batch[0].inputs, ref.inputs)
    recon, views = batch[1], batch[2]
    assert set(recon.targets) == {"recon"} and set(views.targets) == {"views"}
    # the reconstruction target holds the base rows' values at the masked positions
    t = recon.targets["recon"]
    scored = ~torch.isnan(t)
    assert torch.equal(t[scored], ref.inputs[scored])
    assert bool((recon.inputs[scored] == 0).all())
    assert views.inputs.shape == (16, 16) and views.targets["views"].shape == (16,)


def test_same_seed_same_stream_and_other_seed_differs() -> None:
    data = _data()
    a = PretextLoader(JointLoader(data, 8), _pretexts(), seed=0)  # type: ignore[arg-type]
    b = PretextLoader(JointLoader(data, 8), _pretexts(), seed=0)  # type: ignore[arg-type]
    c = PretextLoader(JointLoader(data, 8), _pretexts(), seed=1)  # type: ignore[arg-type]
    for step in (0, 4, 11):
        assert _same(a.batch(step), b.batch(step))
    assert not _same(a.batch(2)[1:], c.batch(2)[1:])
    # a pretext's randomness does not depend on the steps drawn before (random access)
    fresh = PretextLoader(JointLoader(data, 8), _pretexts(), seed=0)  # type: ignore[arg-type]
    assert _same(fresh.batch(11), a.batch(11))


def test_resume_mid_stream_with_per_task_loader_is_identical() -> None:
    ds = {"a": _data(30, seed=0), "b": _data(20, seed=1)}
    ds["b"] = TensorData(ds["b"].inputs, {"b": ds["b"].targets["a"]})

    def make() -> PretextLoader:
        base = PerTaskLoader(ds, 4, RoundRobinSampler(2), seed=2)
        return PretextLoader(base, _pretexts(), seed=2)  # type: ignore[arg-type]

    full = make()
    stream = [full.batch(s) for s in range(9)]
    first = make()
    for s in range(5):
        first.batch(s)
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    assert first.state_dict() == {"base": {"draws": [3, 2]}}
    for s in range(5, 9):
        assert _same(resumed.batch(s), stream[s])


def test_unlabeled_stream_feeds_the_pretexts() -> None:
    labelled = _data(20)
    unl = TensorData(torch.ones(50, 16) * 5.0, {})
    loader = PretextLoader(
        JointLoader(labelled, 8), {"recon": MaskedFeatures(0.5)}, unlabeled=unl, batch_size=12
    )
    batch = loader.batch(0)
    assert batch[1].inputs.shape == (12, 16)
    t = batch[1].targets["recon"]
    assert bool((t[~torch.isnan(t)] == 5.0).all())
    # the stream walks through shuffled epochs of the unlabeled rows, a pure function of step
    again = PretextLoader(
        JointLoader(labelled, 8), {"recon": MaskedFeatures(0.5)}, unlabeled=unl, batch_size=12
    )
    assert _same(again.batch(7), loader.batch(7))


def test_taskset_with_auxiliary_tasks_trains_through_train_step() -> None:
    from polytask.models import build_model, mlp_trunk
    from polytask.train import train_step

    torch.manual_seed(0)
    data = _data()
    ts = TaskSet(
        [
            Task("a", "binary"),
            Task("recon", "reconstruction", num_classes=16, auxiliary=True, weight=0.5),
            Task("views", "contrastive", num_classes=8, auxiliary=True),
        ]
    )
    model = build_model(mlp_trunk(16, (32,), dropout=0.0), ts.tasks, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loader = PretextLoader(JointLoader(data, 8), _pretexts())  # type: ignore[arg-type]
    batch = loader.batch(0)
    out = train_step(model, batch, ts, opt)
    assert set(out.losses) == {"a", "recon", "views"}
    # each loss equals the task's loss on its own group's head outputs (recon weighted by 0.5)
    with torch.no_grad():
        for group, name, w in ((batch[1], "recon", 0.5), (batch[2], "views", 1.0)):
            pred = model(group.inputs, [name])[name]
            assert pred.shape[0] == group.targets[name].shape[0]
            want = w * float(ts[name].compute_loss(pred, group.targets[name]))
            assert out.losses[name] == pytest.approx(want, rel=1e-6)
