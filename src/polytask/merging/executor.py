"""The streaming executor: plan, optional whole-model threshold passes, then merge tensor by tensor.

For every tensor name the executor reads the base tensor, hands the method a lazy sequence that
reads each fine-tuned model's tensor on access (checked for NaN/Inf), and passes the result to
a sink (a :class:`~polytask.merging.io.ShardedWriter`, or a dict in memory) before moving on.
Peak memory is a few tensors of the largest shape, whatever the model size.

Everything that can be checked without reading data is checked first (keys, shapes, dtypes,
number of models, options), so bad input fails before any output is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from polytask._core import PolytaskError, all_finite
from polytask.merging.buffers import buffer_value, check_written, is_buffer
from polytask.merging.io.filters import KeyFilter
from polytask.merging.selection import MagnitudeSelector
from polytask.merging.sources import TensorSource
from polytask.merging.tensor.pipeline import release_scratch
from polytask.merging.tensor.protocol import TensorMerge, compute_dtype

__all__ = ["CHUNK_ELEMS", "MergePlan", "PlanItem", "execute", "plan_merge", "read_checked"]

CHUNK_ELEMS = 1 << 22  # tensors above this many entries are merged in blocks of rows


@dataclass(frozen=True)
class PlanItem:
    """One output tensor: merged from all models, copied from the base, or (a running statistic
    under ``buffers: average``) the mean of the fine-tuned models' values."""

    key: str
    action: Literal["merge", "copy", "average"]
    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class MergePlan:
    items: tuple[PlanItem, ...]
    merged_numel: int

    @property
    def entries(self) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
        return [(i.key, i.shape, i.dtype) for i in self.items]


def _is_float(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point


def plan_merge(
    method: TensorMerge | None,
    base: TensorSource,
    models: Sequence[TensorSource],
    *,
    select: KeyFilter,
    excluded: Literal["base", "drop"] = "base",
    dtype: torch.dtype | None = None,
    buffers: str = "average",
) -> MergePlan:
    """Check that the inputs agree and decide what happens to every tensor.

    ``method`` (when given) checks the number of models; whole-model merges pass ``None``.
    Selected floating running statistics (:func:`~polytask.merging.buffers.is_buffer`) are merged
    only under ``buffers="merge"``; ``"base"`` copies them, ``"average"`` and ``"recompute"`` (the
    caller re-estimates them afterwards) write the fine-tuned models' mean. A plan that writes no
    tensor, or merges none, is refused.
    """
    if excluded not in ("base", "drop"):
        raise PolytaskError(f"'excluded' must be 'base' or 'drop', got {excluded!r}")
    if dtype is not None and not _is_float(dtype):
        raise PolytaskError(f"output dtype must be a floating dtype, got {dtype}")
    if method is not None:
        method.check_models(len(models))
    base_keys = base.keys()
    base_set = set(base_keys)
    model_keys = [set(model.keys()) for model in models]
    items: list[PlanItem] = []
    numel = 0
    for key in base_keys:
        shape, kind = base.shape(key), base.dtype(key)
        out_dtype = dtype if dtype is not None and _is_float(kind) else kind
        if not select(key):
            if excluded == "base":
                items.append(PlanItem(key, "copy", shape, out_dtype))
            continue
        for model, keys in zip(models, model_keys):
            _check_agrees(key, base, model, keys)
        if _is_float(kind) and is_buffer(key) and buffers != "merge":
            action: Literal["copy", "average"] = "copy" if buffers == "base" else "average"
            items.append(PlanItem(key, action, shape, out_dtype))
        elif _is_float(kind):
            items.append(PlanItem(key, "merge", shape, out_dtype))
            n = 1
            for s in shape:
                n *= s
            numel += n
        else:
            items.append(PlanItem(key, "copy", shape, out_dtype))
    for model, keys in zip(models, model_keys):
        for key in sorted(keys - base_set):
            if select(key):
                raise PolytaskError(
                    f"tensor {key!r} is in {model.file_of(key)} but not in the base model "
                    f"({_where(base)}){_prefix_hint(key, base_set)}; exclude it with a filter"
                )
    _check_not_empty(items, base_keys, base)
    return MergePlan(tuple(items), numel)


def _check_not_empty(items: list[PlanItem], keys: list[str], base: TensorSource) -> None:
    if not keys:
        raise PolytaskError(f"checkpoint {_where(base)} holds no tensor: nothing to merge")
    if not any(item.action == "merge" for item in items):
        raise PolytaskError(
            f"the filters select no floating tensor to merge (of {len(keys)} tensors in "
            f"{_where(base)}): the merge would write no merged tensor"
        )


def _prefix_hint(key: str, keys: set[str]) -> str:
    """Why ``key`` may be absent from ``keys``: the same name under, or without, a prefix."""
    for other in keys:
        if other.endswith("." + key):
            prefix = other[: -len(key)]
            return f" (it has {other!r}: set strip_prefix: {prefix!r})"
        if key.endswith("." + other):
            prefix = key[: -len(other)]
            return f" (the other has {other!r}: set strip_prefix: {prefix!r})"
    return ""


def _check_agrees(key: str, base: TensorSource, model: TensorSource, keys: set[str]) -> None:
    """``model`` (whose tensor names are ``keys``) has tensor ``key`` with the base's shape and
    dtype."""
    if key not in keys:
        hint = _prefix_hint(key, keys) if keys else " (it holds no tensor)"
        raise PolytaskError(
            f"tensor {key!r} is in the base model ({base.file_of(key)}) "
            f"but missing from {_where(model)}{hint}"
        )
    shape, kind = base.shape(key), base.dtype(key)
    if model.shape(key) != shape:
        raise PolytaskError(
            f"tensor {key!r} has shape {tuple(shape)} in {base.file_of(key)} "
            f"but {tuple(model.shape(key))} in {model.file_of(key)}"
        )
    if model.dtype(key) != kind:
        raise PolytaskError(
            f"tensor {key!r} has dtype {kind} in {base.file_of(key)} "
            f"but {model.dtype(key)} in {model.file_of(key)}"
        )


def _where(source: TensorSource) -> str:
    return str(getattr(source, "path", None) or getattr(source, "label", "a checkpoint"))


class _Block:
    """Rows ``start:stop`` of one tensor (the whole tensor when ``rows`` is None)."""

    def __init__(self, key: str, rows: tuple[int, int] | None) -> None:
        self.key = key
        self.rows = rows

    def read(self, source: TensorSource) -> torch.Tensor:
        tensor = (
            source.get(self.key) if self.rows is None else source.get_rows(self.key, *self.rows)
        )
        if not all_finite(tensor):
            raise PolytaskError(
                f"tensor {self.key!r} in {source.file_of(self.key)} contains NaN or Inf"
            )
        return tensor


def read_checked(source: TensorSource, key: str) -> torch.Tensor:
    """One whole tensor, refused (naming the file) if it holds NaN or Inf."""
    return _Block(key, None).read(source)


def _blocks(item: PlanItem, chunkable: bool, chunk_elems: int) -> list[_Block]:
    numel = math.prod(item.shape)
    if not chunkable or len(item.shape) < 2 or numel <= chunk_elems:
        return [_Block(item.key, None)]
    step = max(1, chunk_elems // math.prod(item.shape[1:]))
    rows = item.shape[0]
    return [_Block(item.key, (r, min(r + step, rows))) for r in range(0, rows, step)]


class _Lazy(Sequence[torch.Tensor]):
    """The fine-tuned models' tensors for one block, read from their sources on each access."""

    def __init__(self, models: Sequence[TensorSource], block: _Block) -> None:
        self._models = models
        self._block = block

    def __len__(self) -> int:
        return len(self._models)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return self._block.read(self._models[index])

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self[i]


Progress = Callable[[Iterable[PlanItem], str], Iterable[PlanItem]]


def _no_progress(items: Iterable[PlanItem], label: str) -> Iterable[PlanItem]:
    return items


def _select(
    ranks: list[tuple[int, ...]],
    blocks: Iterable[_Block],
    base: TensorSource,
    models: Sequence[TensorSource],
) -> list[list[float]]:
    """Exact k-th largest task-vector magnitudes per model over ``blocks`` (two passes)."""
    selectors = [MagnitudeSelector(r) for r in ranks]
    blocks = list(blocks)
    for pass_no in (1, 2):
        for block in blocks:
            b = block.read(base)
            b = b.to(compute_dtype(b.dtype))
            for i, model in enumerate(models):
                if not ranks[i]:
                    continue
                magnitude = (block.read(model).to(b.dtype) - b).abs_()
                if pass_no == 1:
                    selectors[i].observe(magnitude)
                else:
                    selectors[i].collect(magnitude)
                del magnitude
        if pass_no == 1:
            for selector in selectors:
                selector.locate()
    return [s.thresholds() for s in selectors]


def _bracketed(
    ranks: list[tuple[int, ...]],
    item: PlanItem,
    blocks: list[_Block],
    base: TensorSource,
    models: Sequence[TensorSource],
) -> list[list[float]]:
    """Per-tensor thresholds of a tensor merged in row blocks, in one pass when possible.

    A systematic sample of about 256 rows brackets each k-th largest magnitude; one pass then
    counts the entries above the bracket and keeps those inside it, which pins the exact value.
    Models whose bracket misses (an unrepresentative sample) get the exact two-pass selection.
    """
    key, rows, numel = item.key, item.shape[0], math.prod(item.shape)
    picks = range(0, rows, max(1, rows // 256))
    b_rows = torch.cat([_Block(key, (r, r + 1)).read(base) for r in picks])
    b_rows = b_rows.to(compute_dtype(b_rows.dtype))
    brackets: list[list[tuple[float, float]]] = []
    for i, model in enumerate(models):
        m_rows = torch.cat([_Block(key, (r, r + 1)).read(model) for r in picks])
        sample = (m_rows.to(b_rows.dtype) - b_rows).abs_().reshape(-1).sort(descending=True).values
        s, per = sample.numel(), []
        for k in ranks[i]:
            q = min(max(k / numel, 0.0), 1.0)
            margin = int(4 * math.sqrt(s * q * (1 - q))) + 16
            hi_at, lo_at = int(q * s) - margin, int(q * s) + margin
            hi = float(sample[hi_at]) if hi_at > 0 else math.inf
            per.append((hi, float(sample[lo_at]) if lo_at < s else 0.0))
        brackets.append(per)
    above = [[0] * len(r) for r in ranks]
    bands: list[list[list[torch.Tensor]]] = [[[] for _ in r] for r in ranks]
    for block in blocks:
        b = block.read(base)
        b = b.to(compute_dtype(b.dtype))
        for i, model in enumerate(models):
            if not ranks[i]:
                continue
            magnitude = (block.read(model).to(b.dtype) - b).abs_().reshape(-1)
            for j, (hi, lo) in enumerate(brackets[i]):
                above[i][j] += int(torch.count_nonzero(magnitude > hi))
                bands[i][j].append(magnitude[(magnitude <= hi) & (magnitude >= lo)])
            del magnitude
    out: list[list[float]] = []
    missed: list[tuple[int, ...]] = [() for _ in ranks]
    for i, model_ranks in enumerate(ranks):
        values: list[float] = []
        for j, k in enumerate(model_ranks):
            band = torch.cat(bands[i][j]) if bands[i][j] else torch.empty(0)
            need = k - above[i][j]
            if k <= 0 or k > numel:
                values.append(math.inf if k <= 0 else 0.0)
            elif 0 < need <= band.numel():
                values.append(float(torch.kthvalue(band, band.numel() - need + 1).values))
            else:
                missed[i] = model_ranks
        out.append(values)
    if any(missed):
        exact = _select(missed, blocks, base, models)
        out = [exact[i] if missed[i] else out[i] for i in range(len(ranks))]
    return out


def global_thresholds(
    method: TensorMerge,
    plan: MergePlan,
    base: TensorSource,
    models: Sequence[TensorSource],
    chunk_elems: int = CHUNK_ELEMS,
) -> list[list[float]] | None:
    """Whole-model magnitude thresholds per model (two streaming passes), or None if unneeded."""
    ranks = [method.global_ranks(plan.merged_numel, i) for i in range(len(models))]
    if not any(ranks):
        return None
    merged = [item for item in plan.items if item.action == "merge"]
    blocks = (b for item in merged for b in _blocks(item, True, chunk_elems))
    return _select(ranks, blocks, base, models)


def execute(
    method: TensorMerge,
    plan: MergePlan,
    base: TensorSource,
    models: Sequence[TensorSource],
    sink: Callable[[str, torch.Tensor], None],
    *,
    progress: Progress = _no_progress,
    chunk_elems: int = CHUNK_ELEMS,
) -> list[list[float]] | None:
    """Merge (or copy) every planned tensor into ``sink``; returns the global thresholds used.

    Tensors with more than ``chunk_elems`` entries are processed in blocks of rows when the
    method is ``chunkable`` (``sink`` then receives consecutive row blocks of one key).
    """
    try:
        return _execute(method, plan, base, models, sink, progress, chunk_elems)
    finally:
        release_scratch()  # the pipeline's reusable buffers


def _execute(
    method: TensorMerge,
    plan: MergePlan,
    base: TensorSource,
    models: Sequence[TensorSource],
    sink: Callable[[str, torch.Tensor], None],
    progress: Progress,
    chunk_elems: int,
) -> list[list[float]] | None:
    thresholds = global_thresholds(method, plan, base, models, chunk_elems)
    for item in progress(plan.items, "merging"):
        blocks = _blocks(item, item.action == "merge" and method.chunkable, chunk_elems)
        own = thresholds
        if len(blocks) > 1 and thresholds is None:
            numel = math.prod(item.shape)
            ranks = [method.tensor_ranks(numel, i) for i in range(len(models))]
            own = _bracketed(ranks, item, blocks, base, models) if any(ranks) else None
        row_numel = math.prod(item.shape[1:]) if item.shape else 1
        for block in blocks:
            b = block.read(base)
            if item.action == "merge":
                offset = 0 if block.rows is None else block.rows[0] * row_numel
                out = method(b, _Lazy(models, block), name=item.key, thresholds=own, offset=offset)
                if out.shape != b.shape:
                    raise PolytaskError(f"tensor {item.key!r}: the method changed its shape")
                check_written(item.key, out)
            elif item.action == "average":
                out = buffer_value("average", b, list(_Lazy(models, block)))
            else:
                out = b
            del b
            sink(item.key, out.to(item.dtype))
            del out
    return thresholds
