"""A multi-modal trunk: one encoder per modality, fused over the modalities present.

Inputs are a dict ``{modality: [B, ...]}`` (what :class:`~polytask.models.MultiTaskModel` passes
as keyword arguments) plus, optionally, ``modality_mask``: a bool ``[B, M]`` tensor whose column
``j`` says whether modality ``trunk.modalities[j]`` is present for each sample. A modality whose
key is absent is missing for every sample (inference with a modality missing).

Each encoder runs **only on the rows where its modality is present** (rows are gathered before
the encoder and scattered back after it), so a masked or missing modality never enters the
computation: its values cannot change any output or gradient, NaNs in it do not propagate, its
encoder's batch statistics do not see it, and an encoder whose modality is absent from the whole
batch gets no gradient at all (``.grad`` stays ``None``).

Fusion of the present embeddings ``e_m`` (``P`` = the present modalities of a sample):

* ``mean``: ``z = 1/|P| Σ_{m∈P} e_m`` (MultiMAE / PHG-MAE style; width ``d``),
* ``attention``: ``z = Σ_{m∈P} softmax_P(w·e_m + b) e_m`` (one learned score per embedding,
  softmax over the present modalities only; width ``d``),
* ``concat``: ``z = [e_1 · 1[1∈P], …, e_M · 1[M∈P]]`` (absent slots are zeros; width ``M·d``).

A sample with no modality present gets ``z = 0`` (``mean``/``attention``) — modality masking
always keeps at least one. An optional ``post`` module runs on the fused ``z``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.models.mlp import mlp_trunk

Fusion = Literal["mean", "attention", "concat"]
MASK_KEY = "modality_mask"


def _width(module: nn.Module, name: str) -> int:
    width = getattr(module, "out_dim", None)
    if not isinstance(width, int) or width < 1:
        raise PolytaskError(f"multimodal trunk: encoder {name!r} needs an integer 'out_dim' >= 1")
    return width


class MultiModalTrunk(nn.Module):
    """``encoders[m]`` embeds modality ``m``; the present embeddings are fused per sample.

    ``out_dim`` is the width of the output (after ``post`` when given).
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        fusion: Fusion = "mean",
        post: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not encoders:
            raise PolytaskError("multimodal trunk: needs at least one modality encoder")
        if MASK_KEY in encoders:
            raise PolytaskError(f"multimodal trunk: {MASK_KEY!r} is reserved, not a modality name")
        if fusion not in ("mean", "attention", "concat"):
            raise PolytaskError(
                f"multimodal trunk: unknown fusion {fusion!r}; valid: mean, attention, concat"
            )
        self.modalities: tuple[str, ...] = tuple(encoders)
        self.encoders = nn.ModuleDict(dict(encoders))
        widths = {_width(m, n) for n, m in encoders.items()}
        if len(widths) != 1:
            raise PolytaskError(
                f"multimodal trunk: encoders must share one output width, got {sorted(widths)}"
            )
        self.embed_dim = widths.pop()
        self.fusion = fusion
        self.score = nn.Linear(self.embed_dim, 1) if fusion == "attention" else None
        fused = self.embed_dim * len(self.modalities) if fusion == "concat" else self.embed_dim
        self.post = post
        self.out_dim = _width(post, "post") if post is not None else fused

    def present(self, batch: int, modalities: Mapping[str, Tensor], mask: Tensor | None) -> Tensor:
        """The bool ``[B, M]`` presence matrix: key given AND (no mask OR mask says present)."""
        unknown = sorted(set(modalities) - set(self.modalities))
        if unknown:
            raise PolytaskError(
                f"multimodal trunk: unknown modality {unknown[0]!r}; "
                f"the trunk has: {', '.join(self.modalities)}"
            )
        given = torch.tensor([m in modalities for m in self.modalities])
        out = given.unsqueeze(0).expand(batch, -1)
        if mask is None:
            return out.clone()
        if mask.shape != (batch, len(self.modalities)):
            raise PolytaskError(
                f"multimodal trunk: {MASK_KEY} must be [{batch}, {len(self.modalities)}], "
                f"got {list(mask.shape)}"
            )
        return out & mask.to(device=out.device, dtype=torch.bool)

    def forward(self, modality_mask: Tensor | None = None, **modalities: Tensor) -> Tensor:
        if not modalities:
            raise PolytaskError("multimodal trunk: no modality given")
        batch = int(next(iter(modalities.values())).shape[0])
        present = self.present(batch, modalities, modality_mask)
        first = next(iter(modalities.values()))
        embeds: list[Tensor | None] = []
        for j, name in enumerate(self.modalities):
            rows = present[:, j].nonzero().squeeze(1).to(first.device)
            if name not in modalities or rows.numel() == 0:
                embeds.append(None)
                continue
            e = self.encoders[name](modalities[name].index_select(0, rows))
            full = e.new_zeros(batch, e.shape[1])
            embeds.append(full.index_copy(0, rows, e))
        z = self._fuse(embeds, present.to(first.device), batch, first)
        return self.post(z) if self.post is not None else z

    def _fuse(
        self, embeds: list[Tensor | None], present: Tensor, batch: int, ref: Tensor
    ) -> Tensor:
        dtype = next((e.dtype for e in embeds if e is not None), torch.get_default_dtype())
        zeros = ref.new_zeros(batch, self.embed_dim, dtype=dtype)
        if self.fusion == "concat":
            return torch.cat([e if e is not None else zeros for e in embeds], dim=1)
        live = [(j, e) for j, e in enumerate(embeds) if e is not None]
        if not live:
            return zeros
        if self.fusion == "mean":
            total = live[0][1]
            for _, e in live[1:]:
                total = total + e
            count = present.sum(dim=1, keepdim=True).clamp(min=1).to(dtype)
            return total / count
        assert self.score is not None
        scores = torch.stack([self.score(e).squeeze(1) for _, e in live], dim=1)
        keep = present[:, [j for j, _ in live]]
        scores = scores.masked_fill(~keep, float("-inf"))
        weights = torch.softmax(scores, dim=1).nan_to_num(0.0)  # rows with nothing present
        out = weights[:, 0:1] * live[0][1]
        for k in range(1, len(live)):
            out = out + weights[:, k : k + 1] * live[k][1]
        return out


def multimodal_trunk(
    in_dims: Mapping[str, int],
    hidden: tuple[int, ...] | list[int] = (512, 512),
    *,
    fusion: Fusion = "mean",
    post: tuple[int, ...] | list[int] = (),
    dropout: float = 0.0,
    activation: str = "relu",
) -> MultiModalTrunk:
    """One MLP encoder per modality (``in_dims[m] → hidden``), fused, then an optional MLP ``post``.

    >>> t = multimodal_trunk({"a": 8, "b": 3}, (4,), post=(5,))
    >>> t.modalities, t.out_dim
    (('a', 'b'), 5)
    """
    encoders = {m: mlp_trunk(d, hidden, dropout, activation) for m, d in in_dims.items()}
    fused = hidden[-1] * (len(in_dims) if fusion == "concat" else 1)
    tail = mlp_trunk(fused, post, dropout, activation) if post else None
    return MultiModalTrunk(encoders, fusion, tail)
