"""End to end on scikit-learn's digits: image pretexts train through the ordinary Trainer."""

from __future__ import annotations

import pytest
import torch

from polytask.eval import evaluate_split
from polytask.models import build_model
from polytask.models.conv import conv_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, TensorData
from polytask.tasks.data.images import load_digits_images
from polytask.tasks.ssl import PretextLoader
from polytask.tasks.ssl.patch_mae import PatchMAE
from polytask.tasks.ssl.rotation import Rotation
from polytask.tasks.ssl.sla import SLAInference, SLALoader, SLATask
from polytask.train import Trainer
from tests.conftest import needs

needs("sklearn")


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """Small convolutions run several times faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _split() -> tuple[TensorData, TensorData, TensorData]:
    data = load_digits_images()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    train, test = data.select(order[:600]), data.select(order[1200:])
    unlabeled = TensorData(data.inputs[order[600:1200]], {}, "unlabeled")  # type: ignore[index]
    return train, unlabeled, test


def _fit(tasks: list[Task], loader: object, steps: int = 50) -> torch.nn.Module:
    torch.manual_seed(0)
    trunk = conv_trunk(1, channels=(8, 16), out_dim=32)
    model = build_model(trunk, tasks, trunk.out_dim)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    Trainer(model, TaskSet(tasks), loader, opt, max_steps=steps, progress=False).fit()  # type: ignore[arg-type]
    return model


def test_supervised_with_rotation_and_mae_beats_chance() -> None:
    train, unlabeled, test = _split()
    label = Task("label", "multiclass", num_classes=10)
    tasks = [
        label,
        Task("rotation", "multiclass", num_classes=4, auxiliary=True),
        Task("mae", "reconstruction", num_classes=64, auxiliary=True),
    ]
    pretexts = {"rotation": Rotation(), "mae": PatchMAE(patch=2, mask_ratio=0.5)}
    loader = PretextLoader(JointLoader(train, 32, seed=0), pretexts, seed=0, unlabeled=unlabeled)  # type: ignore[arg-type]
    model = _fit(tasks, loader)
    acc = evaluate_split(model, TaskSet([label]), test)["label"]["accuracy"]
    assert acc > 0.7  # chance is 0.1
    # the rotation head learned its pretext on held-out images too
    rotated, k = Rotation()(test.inputs, torch.Generator().manual_seed(1))  # type: ignore[arg-type]
    model.eval()
    with torch.no_grad():
        pred = model(rotated, ["rotation"])["rotation"].argmax(-1).float()
    assert float((pred == k).float().mean()) > 0.5  # chance is 0.25


def test_sla_and_self_distillation_beat_chance() -> None:
    train, _, test = _split()
    for task in (
        SLATask("label", num_classes=10),
        SLATask("label", num_classes=10, self_distill=True),
    ):
        model = _fit([task], SLALoader(JointLoader(train, 16, seed=0), "label"), steps=60)
        single = evaluate_split(model, TaskSet([task]), test)["label"]["accuracy"]
        aggregated = evaluate_split(SLAInference(model, task), TaskSet([task]), test)["label"][
            "accuracy"
        ]
        assert single > 0.6 and aggregated > 0.6, (task.self_distill, single, aggregated)
