"""The affinity config: a training config plus an ``affinity:`` section (what to measure, for
how long, what to suggest). Run by :func:`polytask.jobs.affinity.run_affinity`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .schema import StrictModel, TrainConfig

Measure = Literal["gradient", "lookahead"]
MEASURES: tuple[Measure, ...] = ("gradient", "lookahead")


class AffinityCheckpoints(StrictModel):
    """A base checkpoint and one fine-tuned checkpoint per task (task-vector similarity).

    ``buffers: true`` also counts running statistics (batch-norm ``running_mean`` /
    ``running_var``); by default the cosines are those of the weights alone."""

    base: str
    tasks: dict[str, str] = Field(min_length=2)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    trust_pickle: bool = False
    buffers: bool = False


class AffinitySection(StrictModel):
    """``affinity:`` section: what to measure, for how long, and what to suggest."""

    measures: list[Measure] = Field(default_factory=lambda: list(MEASURES))
    steps: int | None = Field(None, ge=1)
    ema_rate: float = Field(0.05, gt=0, le=1)
    lookahead_every: int = Field(10, ge=1)
    lookahead_lr: float | None = Field(None, gt=0)
    groups: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [2, 3], min_length=1)
    targets: list[str] | None = None
    lasso_alpha: float | None = Field(0.01, gt=0)
    top: int = Field(5, ge=1)
    checkpoints: AffinityCheckpoints | None = None

    @field_validator("measures", "groups")
    @classmethod
    def _unique(cls, v: list[Any]) -> list[Any]:
        if len(set(v)) != len(v):
            raise ValueError(f"repeated entries in {v}")
        return v

    @model_validator(mode="after")
    def _something(self) -> AffinitySection:
        if not self.measures and self.checkpoints is None:
            raise ValueError("nothing to measure: give 'measures' or 'checkpoints'")
        return self


class AffinityConfig(TrainConfig):
    """A training config plus the ``affinity`` section (``affinity.steps`` overrides the
    training length; default: the length of the ``train`` section)."""

    affinity: AffinitySection = AffinitySection()
