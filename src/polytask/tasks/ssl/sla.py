"""Self-supervised label augmentation (SLA) and its self-distillation (SLA+SD): Lee, Hwang & Shin,
"Self-supervised Label Augmentation via Input Transformations", ICML 2020.

Instead of a separate rotation head, ONE head predicts the joint label (class, rotation). With
``C`` classes and the ``M = 4`` rotations ``x̃_r = rot(x, r · 90°)``, the joint label of
``(y, r)`` is ``j = y · M + r`` and the head has ``M·C`` outputs ``z(x̃) ∈ R^{MC}``:

* training (SLA): ``L_SLA(x, y) = (1/M) Σ_r CE(z(x̃_r), y·M + r)``
* aggregated inference: ``s_c(x) = (1/M) Σ_r log softmax(z(x̃_r))[c·M + r]`` and
  ``P_agg(c | x) = softmax(s)_c``. The paper writes ``s_c`` with raw logits ``z_{cM+r}``; the
  two differ by ``(1/M) Σ_r logsumexp z(x̃_r)``, a constant over ``c``, so they give the same
  distribution and the same argmax.
* self-distillation (SLA+SD): a second head ``v`` of ``C`` outputs on the un-rotated ``x`` learns
  from the labels and from the aggregated distribution (teacher detached, temperature ``T``):
  ``L_SD = L_SLA + CE(v(x), y) + T² · KL(softmax(s/T) ‖ softmax(v(x)/T))``. At test time the SD
  head alone gives the prediction in one forward pass.

In polytask, :class:`SLATask` is the classification task itself (not an auxiliary one): its head
is ``M·C`` wide (plus ``C`` for the SD head, placed after the joint outputs) and its target is the
plain class id. :class:`SLALoader` turns each group of a base loader into its four rotations,
sample-major (row ``M·i + r`` = image ``i`` rotated by ``r · 90°``), which is how the loss knows
each row's rotation. Evaluated on un-rotated data the task reads its classes from the SD head
(with SD) or from the ``r = 0`` joint outputs; :class:`SLAInference` wraps a model so that its
predictions are the aggregated scores ``s`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.tasks.data.loaders import Group
from polytask.tasks.data.tensors import Inputs
from polytask.tasks.losses import masked_ce
from polytask.tasks.ssl._image import check_image
from polytask.tasks.ssl.protocol import pick_modality
from polytask.tasks.ssl.rotation import NUM_ROTATIONS, all_rotations, expand_with
from polytask.tasks.task import Task, TaskKind

M = NUM_ROTATIONS


def joint_labels(y: Tensor, r: Tensor) -> Tensor:
    """``y · 4 + r`` (NaN where ``y`` is NaN): the joint (class, rotation) label."""
    return y * M + r


def sla_aggregate(joint_logits: Tensor) -> Tensor:
    """Aggregated class scores ``s`` ``[B, C]`` from joint logits ``[4B, 4C]`` (sample-major rows).

    ``s_c = (1/4) Σ_r log softmax(z(x̃_r))[c·4 + r]``.
    """
    n, width = joint_logits.shape
    if n % M or width % M:
        raise PolytaskError(
            f"sla: joint logits must be [4B, 4C] with sample-major rotations, got {[n, width]}"
        )
    logp = joint_logits.float().log_softmax(-1).view(n // M, M, width // M, M)  # [B, r, c, r']
    diag = torch.diagonal(logp, dim1=1, dim2=3)  # [B, c, r]: rotation r's row, column c·4 + r
    return diag.mean(-1)


def sd_loss(joint_logits: Tensor, single_logits: Tensor, y: Tensor, temperature: float) -> Tensor:
    """``CE(v, y) + T² · KL(softmax(s/T) ‖ softmax(v/T))`` with ``s`` aggregated and detached.

    ``single_logits`` ``[B, C]`` are the SD head's outputs on the un-rotated images; the KL term
    is averaged over all ``B`` images (it needs no label), the CE over the labelled ones.
    """
    teacher = (sla_aggregate(joint_logits.detach()) / temperature).softmax(-1)
    student = (single_logits.float() / temperature).log_softmax(-1)
    kl = F.kl_div(student, teacher, reduction="batchmean")
    return masked_ce(single_logits, y) + temperature**2 * kl


@dataclass(frozen=True)
class SLATask(Task):
    """A multiclass task trained on joint (class × rotation) labels; see the module docstring.

    >>> t = SLATask("label", num_classes=10, self_distill=True)
    >>> t.out_dim
    50
    """

    kind: TaskKind = "multiclass"
    self_distill: bool = False
    distill_temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind != "multiclass" or self.loss != "ce":
            raise PolytaskError(
                f"task {self.name!r}: SLA needs kind 'multiclass' with loss 'ce', got "
                f"{self.kind!r}/{self.loss!r}"
            )
        if not self.distill_temperature > 0:
            raise PolytaskError(
                f"task {self.name!r}: distill_temperature must be > 0, got {self.distill_temperature}"
            )

    @property
    def out_dim(self) -> int:
        return M * self.num_classes + (self.num_classes if self.self_distill else 0)

    def compute_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """``L_SLA`` (+ the SD terms) on a group of 4 rotations per image, sample-major."""
        n = int(pred.shape[0])
        if n % M:
            raise PolytaskError(
                f"task {self.name!r}: an SLA group needs 4 rotations per image (rows a multiple "
                f"of 4, made by SLALoader), got {n} rows"
            )
        c = self.num_classes
        joint = pred[:, : M * c]
        r = torch.arange(n, device=pred.device).remainder(M).to(target.dtype)
        loss = masked_ce(joint, joint_labels(target, r))
        if self.self_distill:
            loss = loss + sd_loss(
                joint, pred[0::M, M * c :], target[0::M], self.distill_temperature
            )
        return loss

    def class_scores(self, pred: Tensor) -> Tensor:
        """``[N, C]`` class scores from ``pred``: given as is, or read off one head output."""
        c = self.num_classes
        if pred.shape[-1] == c:
            return pred
        if pred.shape[-1] != self.out_dim:
            raise PolytaskError(
                f"task {self.name!r}: predictions have width {pred.shape[-1]}; expected "
                f"{c} (class scores) or {self.out_dim} (head output)"
            )
        return pred[:, M * c :] if self.self_distill else pred[:, : M * c : M]

    def compute_metrics(self, pred: Tensor, target: Tensor) -> dict[str, float]:
        return super().compute_metrics(self.class_scores(pred), target)


def sla_group(inputs: Inputs, target: Tensor, modality: str | None = None) -> tuple[Inputs, Tensor]:
    """Four rotations of every image (sample-major) and the class ids repeated to match."""
    x = pick_modality(inputs, modality, "sla")
    check_image(x, "sla", square=True)
    return expand_with(inputs, modality, all_rotations(x), M), target.repeat_interleave(M, dim=0)


class _Loader(Protocol):
    steps_per_epoch: int

    def batch(self, step: int) -> list[Group]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class SLALoader:
    """``base`` batches in which the groups feeding ``task`` carry the 4 rotations of each image.

    Other tasks of such a group keep the un-rotated inputs in a group of their own. Deterministic:
    the batch of a step is the base loader's, expanded.
    """

    def __init__(self, base_loader: _Loader, task: str, modality: str | None = None) -> None:
        self.base, self.task, self.modality = base_loader, task, modality
        self.steps_per_epoch = base_loader.steps_per_epoch

    def batch(self, step: int) -> list[Group]:
        out: list[Group] = []
        for group in self.base.batch(step):
            if self.task not in group.targets:
                out.append(group)
                continue
            seen, target = sla_group(group.inputs, group.targets[self.task], self.modality)
            out.append(Group(seen, {self.task: target}))
            rest = {k: v for k, v in group.targets.items() if k != self.task}
            if rest:
                out.append(Group(group.inputs, rest, group.paired - {self.task}))
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base.load_state_dict(state)


class SLAInference(nn.Module):
    """``model`` whose output for ``task`` is the aggregated score ``s`` ``[B, C]`` (4 passes).

    Other tasks' outputs are those of the un-rotated images. Use it wherever a model is
    evaluated (``polytask.eval.evaluate_split(SLAInference(model, task), ...)``).
    """

    def __init__(self, model: nn.Module, task: SLATask, modality: str | None = None) -> None:
        super().__init__()
        self.model, self.task, self.modality = model, task, modality

    def forward(self, inputs: Inputs, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        x = pick_modality(inputs, self.modality, "sla")
        check_image(x, "sla", square=True)
        out = self.model(expand_with(inputs, self.modality, all_rotations(x), M), tasks)
        result = {k: v[0::M] for k, v in out.items()}
        name, c = self.task.name, self.task.num_classes
        if name in out:
            result[name] = sla_aggregate(out[name][:, : M * c])
        return result
