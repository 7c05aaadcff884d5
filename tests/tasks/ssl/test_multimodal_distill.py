"""Distillation: pinned soft-target losses, determinism, and a student that approaches its teacher."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polytask._core import PolytaskError
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task
from polytask.train.distill import count_parameters, distill, soft_loss

LN3 = math.log(3.0)


def test_soft_losses_pinned() -> None:
    # binary: teacher probs (3/4, 1/2); student logits (0, ln 3) -> probs (1/2, 3/4)
    # BCE = mean(log 2, -(1/2 log 3/4 + 1/2 log 1/4)) = mean(0.693147, 0.836988)
    b = soft_loss(torch.tensor([0.0, LN3]), torch.tensor([LN3, 0.0]), "binary")
    assert b.item() == pytest.approx((math.log(2) - 0.5 * (math.log(0.75) + math.log(0.25))) / 2)
    assert b.item() == pytest.approx(0.765068, abs=1e-6)
    # multiclass, T = 2: teacher (0, 2 ln 3)/2 -> (1/4, 3/4); student uniform (1/2, 1/2)
    # T^2 KL = 4 (1/4 ln(1/2) + 3/4 ln(3/2)) = 0.523248
    m = soft_loss(torch.zeros(1, 2), torch.tensor([[0.0, 2 * LN3]]), "multiclass", temperature=2.0)
    assert m.item() == pytest.approx(4 * (0.25 * math.log(0.5) + 0.75 * math.log(1.5)), abs=1e-6)
    assert m.item() == pytest.approx(0.523248, abs=1e-6)
    r = soft_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]), "regression")
    assert r.item() == pytest.approx(2.5)
    assert soft_loss(torch.zeros(3, 4), torch.zeros(3, 4), "reconstruction").item() == 0.0
    with pytest.raises(PolytaskError, match="no soft-target loss for task kind 'contrastive'"):
        soft_loss(torch.zeros(2, 2), torch.zeros(2), "contrastive")


TASKS = [Task("t1", "binary"), Task("t2", "multiclass", num_classes=3), Task("t3", "regression")]
KINDS = {t.name: t.kind for t in TASKS}


def _models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    teacher = build_model(mlp_trunk(10, (64, 64)), TASKS, 64)
    student = build_model(mlp_trunk(10, (16,)), TASKS, 16)
    return teacher, student


def _gap(teacher: nn.Module, student: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        t, s = teacher(x), student(x)
    return (
        (torch.sigmoid(t["t1"]) - torch.sigmoid(s["t1"])).abs().mean().item()
        + (torch.softmax(t["t2"], -1) - torch.softmax(s["t2"], -1)).abs().sum(-1).mean().item()
        + (t["t3"] - s["t3"]).abs().mean().item()
    )


def test_student_approaches_teacher_deterministically() -> None:
    teacher, student = _models()
    teacher.eval()
    x = torch.randn(512, 10, generator=torch.Generator().manual_seed(1))
    held_out = torch.randn(256, 10, generator=torch.Generator().manual_seed(2))
    before = _gap(teacher, student, held_out)
    init = {k: v.clone() for k, v in student.state_dict().items()}
    res = distill(teacher, student, x, KINDS, steps=150, batch_size=64, lr=3e-3, progress=False)
    after = _gap(teacher, student, held_out)
    assert count_parameters(student) == res.student_params == 10 * 16 + 16 + 16 * 5 + 5
    assert after < 0.3 * before, (before, after)
    assert sum(res.losses[-10:]) < sum(res.losses[:10])
    # same seed, same initial student -> the same losses, bit for bit
    student.load_state_dict(init)
    again = distill(teacher, student, x, KINDS, steps=150, batch_size=64, lr=3e-3, progress=False)
    assert again.losses == res.losses


def test_distill_errors() -> None:
    teacher, student = _models()
    x = torch.randn(8, 10)
    with pytest.raises(PolytaskError, match="steps must be >= 1"):
        distill(teacher, student, x, KINDS, steps=0, progress=False)
    with pytest.raises(PolytaskError, match="no task kind given"):
        distill(teacher, student, x, KINDS, steps=1, tasks=["nope"], progress=False)
