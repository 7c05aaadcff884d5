"""Self-supervised label augmentation: joint labels, aggregation and self-distillation pinned on
a hand example (C = 2 classes, one image, 4 rotations)."""

from __future__ import annotations

import math

import pytest
import torch

from polytask._core import PolytaskError
from polytask.tasks import TaskSet
from polytask.tasks.data import JointLoader, TensorData
from polytask.tasks.ssl.sla import (
    SLAInference,
    SLALoader,
    SLATask,
    joint_labels,
    sd_loss,
    sla_aggregate,
    sla_group,
)

LN7 = math.log(7.0)


def hand_logits(agree: int = 3) -> torch.Tensor:
    """Joint logits [4, 8]: rotation r's row puts ln 7 on (class 0, r) for r < agree, else on
    (class 1, r); every other logit is 0. Each row's softmax: 7/14 on that entry, 1/14 elsewhere."""
    z = torch.zeros(4, 8)
    for r in range(4):
        c = 0 if r < agree else 1
        z[r, c * 4 + r] = LN7
    return z


def test_joint_labels_class_major() -> None:
    y = torch.tensor([0.0, 2.0, float("nan")])
    r = torch.tensor([3.0, 1.0, 0.0])
    out = joint_labels(y, r)
    assert out[:2].tolist() == [3.0, 9.0] and math.isnan(out[2])


def test_aggregation_pinned() -> None:
    # s_0 = (3·ln(1/2) + ln(1/14)) / 4, s_1 = (3·ln(1/14) + ln(1/2)) / 4 → s_0 − s_1 = ln(7)/2
    s = sla_aggregate(hand_logits(3))
    assert s.shape == (1, 2)
    assert float(s[0, 0]) == pytest.approx((3 * math.log(0.5) + math.log(1 / 14)) / 4)
    p = s.softmax(-1)
    assert float(p[0, 0]) == pytest.approx(math.sqrt(7) / (1 + math.sqrt(7)))  # 0.72571
    # all four rotations agree on class 0: P = (1/2, 1/14) normalised = (7/8, 1/8)
    assert sla_aggregate(hand_logits(4)).softmax(-1)[0].tolist() == pytest.approx([0.875, 0.125])


def test_aggregation_reads_each_rotations_own_column() -> None:
    # every row bets on (class 0, rotation 1): only rotation 1's row may count it
    z = torch.zeros(4, 8)
    z[:, 1] = LN7
    p = sla_aggregate(z).softmax(-1)[0]
    # r = 1 row: log p = (ln ½, ln 1/14); other rows: (ln 1/14, ln 1/14) → s_0 − s_1 = ln 7 / 4
    assert float(p[0]) == pytest.approx(1 / (1 + 7 ** (-0.25)))


def test_aggregation_equals_mean_of_raw_logits_after_softmax() -> None:
    z = torch.randn(8, 12, generator=torch.Generator().manual_seed(0))
    raw = z.view(2, 4, 3, 4).diagonal(dim1=1, dim2=3).mean(-1)  # the paper's logit average
    assert torch.allclose(sla_aggregate(z).softmax(-1), raw.softmax(-1), atol=1e-6)


def test_sla_loss_pinned() -> None:
    task = SLATask("label", num_classes=2)
    assert task.out_dim == 8 and task.kind == "multiclass"
    # label 0, rows r = 0..3 each put 7/14 on the (0, r) column → CE = ln 2 per row
    loss = task.compute_loss(hand_logits(4), torch.zeros(4))
    assert float(loss) == pytest.approx(math.log(2))
    # label 1: rows 0..2 give 1/14 to (1, r), row 3 gives 7/14 → (3 ln 14 + ln 2) / 4
    loss1 = task.compute_loss(hand_logits(3), torch.ones(4))
    assert float(loss1) == pytest.approx((3 * math.log(14) + math.log(2)) / 4)


def test_self_distillation_pinned() -> None:
    task = SLATask("label", num_classes=2, self_distill=True)
    assert task.out_dim == 10
    pred = torch.cat([hand_logits(4), torch.zeros(4, 2)], dim=1)  # SD head: uniform (½, ½)
    # teacher (7/8, 1/8); KL(t ‖ ½,½) = 7/8 ln(7/4) + 1/8 ln(1/4); CE(uniform, 0) = ln 2
    kl = 7 / 8 * math.log(7 / 4) + 1 / 8 * math.log(1 / 4)
    expected = math.log(2) + math.log(2) + kl
    assert float(task.compute_loss(pred, torch.zeros(4))) == pytest.approx(expected)
    assert float(sd_loss(hand_logits(4), torch.zeros(1, 2), torch.zeros(1), 1.0)) == pytest.approx(
        math.log(2) + kl
    )
    # temperature T scales the KL by T² on softened distributions
    t2 = sd_loss(hand_logits(4), torch.zeros(1, 2), torch.tensor([float("nan")]), 2.0)
    teacher = (sla_aggregate(hand_logits(4)) / 2).softmax(-1)[0]
    kl2 = sum(float(q) * math.log(float(q) / 0.5) for q in teacher)
    assert float(t2) == pytest.approx(4 * kl2)


def test_sd_teacher_is_detached() -> None:
    joint = hand_logits(3).requires_grad_()
    single = torch.zeros(1, 2, requires_grad=True)
    sd_loss(joint, single, torch.zeros(1), 1.0).backward()
    assert joint.grad is None or float(joint.grad.abs().sum()) == 0.0
    assert float(single.grad.abs().sum()) > 0  # type: ignore[union-attr]


def test_metrics_read_the_right_columns() -> None:
    plain = SLATask("label", num_classes=2)
    head = torch.tensor([[0.0, 0, 0, 0, 5, 0, 0, 0], [5.0, 0, 0, 0, 0, 0, 0, 0]])
    assert plain.class_scores(head).tolist() == [[0.0, 5.0], [5.0, 0.0]]  # r = 0 columns
    assert plain.compute_metrics(head, torch.tensor([1.0, 0.0]))["accuracy"] == 1.0
    sd = SLATask("label", num_classes=2, self_distill=True)
    head_sd = torch.cat([head, torch.tensor([[3.0, 0.0], [3.0, 0.0]])], 1)
    assert sd.compute_metrics(head_sd, torch.tensor([1.0, 0.0]))["accuracy"] == 0.5  # SD head
    assert plain.compute_metrics(torch.tensor([[0.0, 1.0]]), torch.tensor([1.0]))["accuracy"] == 1.0
    with pytest.raises(PolytaskError, match="width 3"):
        plain.class_scores(torch.zeros(1, 3))


def test_sla_errors() -> None:
    with pytest.raises(PolytaskError, match="multiple of 4"):
        SLATask("label", num_classes=2).compute_loss(torch.zeros(6, 8), torch.zeros(6))
    with pytest.raises(PolytaskError, match="multiclass"):
        SLATask("label", kind="binary")
    with pytest.raises(PolytaskError, match="distill_temperature"):
        SLATask("label", num_classes=3, distill_temperature=0.0)
    with pytest.raises(PolytaskError, match=r"\[4B, 4C\]"):
        sla_aggregate(torch.zeros(3, 8))


def test_sla_group_and_loader() -> None:
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])
    seen, target = sla_group(x, y)
    assert seen.shape == (24, 1, 4, 4) and target[:8].tolist() == [0.0] * 4 + [1.0] * 4
    assert torch.equal(seen[4 * 5 + 2], torch.rot90(x[5], 2, dims=(-2, -1)))
    data = TensorData(x, {"label": y, "other": y * 10})
    base = JointLoader(data, batch_size=3, seed=1)
    loader = SLALoader(base, "label")
    assert loader.steps_per_epoch == base.steps_per_epoch
    groups = loader.batch(0)
    plain = base.batch(0)[0]
    assert len(groups) == 2 and set(groups[0].targets) == {"label"}
    assert torch.equal(groups[0].inputs[0::4], plain.inputs)  # type: ignore[index]
    assert torch.equal(groups[1].inputs, plain.inputs) and set(groups[1].targets) == {"other"}


def test_inference_wrapper_aggregates() -> None:
    task = SLATask("label", num_classes=2)

    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor, tasks: object = None) -> dict[str, torch.Tensor]:
            # rotation r of each image gets hand_logits row r (so the hand example is reproduced)
            return {"label": hand_logits(3).repeat(x.shape[0] // 4, 1), "aux": x.flatten(1)[:, :1]}

    x = torch.rand(2, 1, 3, 3)
    out = SLAInference(Fixed(), task)(x)
    assert out["label"].softmax(-1)[:, 0].tolist() == pytest.approx(
        [math.sqrt(7) / (1 + math.sqrt(7))] * 2
    )
    assert torch.equal(out["aux"], x.flatten(1)[:, :1])  # other tasks see the un-rotated rows
    assert TaskSet([task]).names == ("label",)
