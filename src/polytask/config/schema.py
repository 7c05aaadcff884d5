"""The typed schema of a training config (YAML), validated on load.

Unknown keys, wrong types and out-of-range values are rejected with one line naming the key.
Paths are resolved relative to the config file's folder.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from polytask._core import PolytaskError

from .balancing import BalancingConfig
from .images import ConvTrunkConfig, ImageData, trunk_kind
from .modal import Modality, MultiModalConfig, check_modal, modalities_of
from .splits import IndexSplit, Split, SplitConfig, Standardize
from .ssl import AuxTaskConfig


class StrictModel(BaseModel):
    """A frozen config section that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EcfpFeaturizer(StrictModel):
    """RDKit Morgan bits from a SMILES column (ECFP4 = radius 2)."""

    kind: Literal["ecfp"] = "ecfp"
    radius: int = Field(2, ge=0, le=6)
    bits: int = Field(2048, ge=8, le=65536)


class ColumnsFeaturizer(StrictModel):
    """Numeric feature columns used as they are."""

    kind: Literal["columns"] = "columns"
    columns: list[str] = Field(min_length=1)


Featurizer = Annotated[EcfpFeaturizer | ColumnsFeaturizer, Field(discriminator="kind")]


class TaskConfig(StrictModel):
    """One task; ``column`` defaults to the task name (for ``per_task`` data: ``label``)."""

    name: str = Field(min_length=1)
    kind: Literal["binary", "multiclass", "multilabel", "regression"] = "binary"
    column: str | None = None
    columns: list[str] | None = None  # multilabel: one column per label
    num_classes: int = 1
    loss: str = ""
    metrics: list[str] = []
    weight: float = 1.0


class Tox21Data(StrictModel):
    """The bundled Tox21 (12 binary tasks; all of them unless ``tasks`` lists some)."""

    source: Literal["tox21"] = "tox21"
    featurizer: Featurizer = EcfpFeaturizer()
    split: Split = SplitConfig()
    tasks: list[str] | None = None
    modalities: dict[str, Modality] | None = None  # multi-modal inputs, see polytask.config.modal


class ColumnOverride(StrictModel):
    """The keys of one label column's task that differ from ``label_columns`` (None: inherit)."""

    kind: Literal["binary", "multiclass", "regression"] | None = None
    num_classes: int | None = Field(None, ge=2)
    loss: str | None = None
    metrics: list[str] | None = None
    weight: float | None = None


class LabelColumns(StrictModel):
    """Many label columns of a table as tasks of one kind (see polytask.build.label_columns).

    ``select``: ``all`` (every column) or shell globs (``assay_*``; case-sensitive); ``exclude``:
    globs left out. The input and feature columns are never tasks. Task order = file order.
    ``overrides`` changes single tasks by column name.
    """

    select: str | list[str] = "all"
    exclude: list[str] = []
    kind: Literal["binary", "regression"] = "binary"
    loss: str = ""
    metrics: list[str] = []
    weight: float = 1.0
    overrides: dict[str, ColumnOverride] = {}

    @field_validator("select", "exclude")
    @classmethod
    def _globs(cls, value: str | list[str], info: ValidationInfo) -> str | list[str]:
        globs = [value] if isinstance(value, str) else value
        if info.field_name == "exclude":
            if not all(globs):
                raise ValueError("give a list of non-empty globs")
            return value
        if not globs or not all(globs):
            raise ValueError("give 'all', a glob, or a non-empty list of non-empty globs")
        return value


class TableData(StrictModel):
    """One table with several label columns (some may be missing): one task per column.

    The tasks are the top-level ``tasks`` list, or every column ``label_columns`` selects.
    """

    source: Literal["table"] = "table"
    path: str
    input: str = "smiles"
    featurizer: Featurizer = EcfpFeaturizer()
    split: Split = SplitConfig()
    modalities: dict[str, Modality] | None = None  # multi-modal inputs, see polytask.config.modal
    label_columns: LabelColumns | None = None  # tasks = columns: polytask.build.label_columns
    standardize: Standardize = Standardize()  # train-split statistics


class TaskTable(StrictModel):
    """One task's own table (for one-dataset-per-task data)."""

    task: str
    path: str
    input: str = "smiles"
    label: str


class SamplerConfig(StrictModel):
    kind: Literal[
        "proportional", "temperature", "uniform", "round_robin", "all",
        "anti_curriculum", "high_resource_first",
    ] = "proportional"  # fmt: skip
    temperature: float = Field(2.0, gt=0)
    # schedules (docs/stages.md): anti_curriculum ranks tasks by `order` (hardest first) and
    # grows the pool over `ramp` of the budget; high_resource_first samples the tasks with
    # n >= high_fraction * max n until `switch` of the budget, then all tasks at `temperature`
    order: list[str] | None = None
    ramp: float = Field(1.0, gt=0, le=1)
    switch: float = Field(0.5, ge=0, le=1)
    high_fraction: float = Field(0.5, gt=0, le=1)


class PerTaskData(StrictModel):
    """One dataset per task (heterogeneous sizes); a sampler picks the task of each step."""

    source: Literal["per_task"] = "per_task"
    datasets: list[TaskTable] = Field(min_length=1)
    featurizer: Featurizer = EcfpFeaturizer()
    split: Split = SplitConfig()
    sampler: SamplerConfig = SamplerConfig()
    standardize: Standardize = Standardize()  # train-split statistics

    @field_validator("split")
    @classmethod
    def _one_table_split(cls, value: object) -> object:
        if isinstance(value, IndexSplit):
            raise ValueError(
                "index files name rows of one table, and per_task data has one table per "
                "task; use kind 'column' (a split column in each task's file)"
            )
        return value


DataConfig = Annotated[
    Tox21Data | TableData | PerTaskData | ImageData, Field(discriminator="source")
]


class TrunkConfig(StrictModel):
    kind: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [1024, 512], min_length=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    batch_norm: bool = False


class MoETrunkConfig(StrictModel):
    """Multi-gate mixture-of-experts (see :mod:`polytask.models.moe`): a shared ``bottom`` MLP
    (empty: none), ``experts`` expert MLPs of widths ``expert_hidden``; the gates and towers are
    the heads (``heads.hidden`` gives MLP towers)."""

    kind: Literal["moe"]
    bottom: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [512])
    experts: int = Field(4, ge=1, le=256)
    expert_hidden: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [256], min_length=1
    )
    dropout: float = Field(0.2, ge=0, lt=1)
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    batch_norm: bool = False


class AdaptersTrunkConfig(StrictModel):
    """Per-task residual adapters (see :mod:`polytask.models.adapters`): shared MLP layers of
    widths ``hidden`` and, after each, a bottleneck adapter of width ``bottleneck`` per task
    (with ``batch_norm``, each task has its own batch norm). Balancing must use ``mode: exact``."""

    kind: Literal["adapters"]
    hidden: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1024, 512], min_length=1
    )
    bottleneck: int = Field(32, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    batch_norm: bool = False


class HeadsConfig(StrictModel):
    hidden: int | None = Field(None, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)


class ModelConfig(StrictModel):
    trunk: Annotated[
        Annotated[TrunkConfig, Tag("mlp")]
        | Annotated[ConvTrunkConfig, Tag("conv")]
        | Annotated[MoETrunkConfig, Tag("moe")]
        | Annotated[AdaptersTrunkConfig, Tag("adapters")],
        Discriminator(trunk_kind),
    ] = TrunkConfig()
    heads: HeadsConfig = HeadsConfig()


class OptimizerConfig(StrictModel):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class SchedulerConfig(StrictModel):
    name: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = Field(0, ge=0)


class TrainSection(StrictModel):
    epochs: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    grad_clip: float | None = Field(5.0, gt=0)
    eval_every: int | None = Field(None, ge=1)
    checkpoint_every: int | None = Field(None, ge=1)
    gramian_log_every: int = Field(50, ge=0)  # logs/gramian.safetensors every N steps; 0: never
    selection: str | None = None
    patience: int | None = Field(None, ge=1)
    deterministic: bool = True

    @model_validator(mode="after")
    def _length(self) -> TrainSection:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give exactly one of 'epochs' and 'steps'")
        return self


class EvaluationConfig(StrictModel):
    """How runs are scored: ``baseline`` (a single-task run or its report) adds Δm / Δp;
    ``bootstrap`` draws of the test (and val) rows give their intervals (``0``: none)."""

    baseline: str | None = None
    batch_size: int = Field(1024, ge=1)
    bootstrap: int = Field(200, ge=0)


class UnlabeledSmilesData(StrictModel):
    """Unlabeled molecules: every SMILES column of the tables in ``paths`` (files or folders),
    canonicalised and deduplicated; ``qm9: true`` adds QM9's SMILES from the ``qm9pack`` package.
    With ``exclude_test: true`` (default) the val and test molecules of every labelled stage of
    the same config are left out, so pre-training never sees an evaluation molecule.
    """

    source: Literal["unlabeled_smiles"] = "unlabeled_smiles"
    paths: list[str] = Field(default_factory=list)
    qm9: bool = False
    featurizer: EcfpFeaturizer = EcfpFeaturizer()
    exclude_test: bool = True
    val_fraction: float = Field(0.05, gt=0, lt=1)
    seed: int = 0


StageData = Annotated[
    Tox21Data | TableData | PerTaskData | UnlabeledSmilesData, Field(discriminator="source")
]


class LoadSpec(StrictModel):
    """What a stage takes from an earlier one (``from`` is a stage name)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=1)
    what: Literal["trunk", "trunk+heads"] = "trunk"


class StageConfig(StrictModel):
    """One entry of ``stages:`` (see :mod:`polytask.config.stages`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    load: LoadSpec | None = None
    data: StageData | None = None
    tasks: list[TaskConfig] | None = None
    sampler: SamplerConfig | None = None
    steps: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    optimizer: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    balancing: BalancingConfig | None = None
    auxiliary: list[dict[str, Any]] | None = None
    loss_scale: Literal["none", "log_classes"] = "none"


class TrainConfig(StrictModel):
    """A complete training job: data, tasks, model, training recipe, balancing, evaluation."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (polytask._core.resolve_device); not hashed
    data: DataConfig = Tox21Data()
    tasks: list[TaskConfig] | None = None
    model: ModelConfig = ModelConfig()
    train: TrainSection = TrainSection(epochs=20)
    balancing: BalancingConfig | None = None
    evaluation: EvaluationConfig = EvaluationConfig()
    stages: list[StageConfig] | None = None  # derived per stage by polytask.config.stages
    auxiliary: list[AuxTaskConfig] | None = None  # self-supervised tasks, see polytask.build.ssl
    multimodal: MultiModalConfig | None = None  # fusion, masking, ensemble: polytask.config.modal

    @model_validator(mode="after")
    def _across_keys(self) -> TrainConfig:
        """The rules that tie sections together, checked on load before any data is read."""
        trunk, image = self.model.trunk, isinstance(self.data, ImageData)
        if isinstance(trunk, ConvTrunkConfig) != image:
            raise ValueError(
                "key 'model.trunk.kind': image data needs trunk kind 'conv', and a 'conv' trunk "
                "needs image data (data.source fashion_mnist or digits)"
            )
        if modalities_of(self) and isinstance(trunk, MoETrunkConfig | AdaptersTrunkConfig):
            raise ValueError(
                f"key 'model.trunk.kind': {trunk.kind!r} does not take multi-modal inputs"
            )
        bal = self.balancing
        if bal is not None and bal.mode == "features" and isinstance(trunk, AdaptersTrunkConfig):
            raise ValueError(
                "key 'balancing.mode': mode 'features' needs one shared representation, but trunk "
                "kind 'adapters' gives each task its own features; use mode: exact"
            )
        try:
            check_modal(self, "")
        except PolytaskError as exc:
            raise ValueError(str(exc).removeprefix(": ")) from None
        return self
