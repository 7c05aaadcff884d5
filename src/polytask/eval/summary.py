r"""Results over seeds: mean ± std, paired differences against a reference, markdown tables.

Conventions (the same for every function here):

* **Mean** :math:`\bar x = \frac1n\sum_i x_i`, computed with :func:`statistics.mean` (exact sum,
  one rounding), so the result does not depend on the order of the values.
* **Std** is the *sample* standard deviation (ddof = 1),
  :math:`s = \sqrt{\sum_i (x_i - \bar x)^2 / (n - 1)}` (:func:`statistics.stdev`). It is undefined
  for one value: :func:`mean_std` returns NaN there, and :func:`format_mean_std` shows the value
  alone (``"0.8221"``), or ``"0.8221 ± 0.0000"`` with ``zero_std=True``.
* **Values must be finite.** A NaN or infinite value (a diverged or failed run) raises
  :class:`~polytask._core.PolytaskError` rather than turning into ``"nan ± nan"``: leave such
  runs out and report them on their own.
* **Empty input** raises :class:`~polytask._core.PolytaskError`; :func:`format_mean_std` can show
  a placeholder instead (``empty="—"``).
* **Paired differences** :math:`d_i = v_i - r_i` over the seeds both sides share, their standard
  error :math:`\mathrm{SE} = s_d / \sqrt{n}` and a verdict: *better* / *worse* when
  :math:`|\bar d| > 2\,\mathrm{SE}` (the sign of :math:`\bar d` and the metric's direction
  decide which), *within noise* when :math:`|\bar d| \le 2\,\mathrm{SE}`, *no verdict* for one
  seed. The rule compares, it never divides, so constant differences (SE = 0) are safe.

>>> format_mean_std([0.80, 0.82, 0.84])
'0.8200 ± 0.0200'
>>> d = paired_difference({0: 0.83, 1: 0.84, 2: 0.86}, {0: 0.80, 1: 0.82, 2: 0.84})
>>> d.format(), d.n, d.verdict
('+0.0233 ± 0.0058', 3, 'better')
>>> print("\n".join(markdown_table(["method", "ROC-AUC"], [["EW", "0.8200 ± 0.0200"]])))
| method | ROC-AUC |
|---|---|
| EW | 0.8200 ± 0.0200 |
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from polytask._core import PolytaskError

from .markdown import markdown_row, markdown_table
from .rank import mean_rank, mean_rank_line

__all__ = [
    "MethodSummary",
    "PairedDifference",
    "Verdict",
    "format_mean_std",
    "markdown_row",
    "markdown_table",
    "mean_rank",
    "mean_rank_line",
    "mean_std",
    "paired_difference",
    "runs_from_records",
    "seed_scatter",
    "summarise_runs",
    "summary_table",
]

#: Outcome of a paired comparison (see :class:`PairedDifference`).
Verdict = Literal["better", "worse", "within noise", "no verdict"]

S = TypeVar("S", bound=Hashable)  # a seed: any hashable key (an int, a name)
#: Per-seed values: ``{seed: value}`` (paired by seed) or a sequence (paired by position).
Values = Mapping[S, float] | Sequence[float]


def _finite(values: Iterable[float], what: str = "values") -> list[float]:
    """The values as floats; refuses NaN and ±inf (naming the position of the first one)."""
    out = [float(v) for v in values]
    for i, v in enumerate(out):
        if not math.isfinite(v):
            raise PolytaskError(f"{what} hold a non-finite value ({v}) at position {i}")
    return out


def _std(values: Sequence[float]) -> float:
    """Sample std (ddof = 1) of finite values; NaN for a single value."""
    return float(statistics.stdev(values)) if len(values) > 1 else math.nan


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    r"""Mean and sample standard deviation of finite values.

    :math:`\bar x = \frac1n\sum_i x_i`, :math:`s = \sqrt{\sum_i (x_i-\bar x)^2/(n-1)}` (ddof = 1);
    ``s`` is NaN for a single value (undefined, not zero). Raises
    :class:`~polytask._core.PolytaskError` on empty input or a NaN / infinite value.

    >>> [round(x, 12) for x in mean_std([0.80, 0.82, 0.84])]
    [0.82, 0.02]
    """
    xs = _finite(values)
    if not xs:
        raise PolytaskError("mean_std needs at least one value, got none")
    return float(statistics.mean(xs)), _std(xs)


def format_mean_std(
    values: Iterable[float],
    digits: int = 4,
    *,
    signed: bool = False,
    zero_std: bool = False,
    empty: str | None = None,
) -> str:
    r"""``"{mean} ± {std}"`` with ``digits`` decimals (fixed point), std as in :func:`mean_std`.

    ``signed=True`` writes the mean with its sign (``"+0.12 ± 0.30"``; the std never has one),
    as for differences and Δm. One value is shown alone (``"0.8221"``), or as
    ``"0.8221 ± 0.0000"`` with ``zero_std=True``. No values raise
    :class:`~polytask._core.PolytaskError`, unless ``empty`` gives the text to show instead
    (e.g. ``"—"``). NaN / infinite values are refused.

    >>> format_mean_std([-1.5, 0.5], 2, signed=True)
    '-0.50 ± 1.41'
    >>> format_mean_std([0.8221]), format_mean_std([0.8221], zero_std=True)
    ('0.8221', '0.8221 ± 0.0000')
    """
    if digits < 0:
        raise PolytaskError(f"digits must be >= 0, got {digits}")
    xs = _finite(values)
    if not xs:
        if empty is None:
            raise PolytaskError("format_mean_std needs at least one value, got none")
        return empty
    sign = "+" if signed else ""
    if len(xs) == 1 and not zero_std:  # the value itself: -0.0 keeps its sign, unlike the mean
        return f"{xs[0]:{sign}.{digits}f}"
    mean, std = mean_std(xs)
    return f"{mean:{sign}.{digits}f} ± {0.0 if len(xs) == 1 else std:.{digits}f}"


def seed_scatter(*groups: Sequence[float]) -> float:
    r"""The larger sample std of the groups: :math:`\max_g s_g` over groups of two or more values.

    Groups of one value have no std and are skipped; 0.0 when no group has two values. A
    difference of means :math:`|\bar a - \bar b|` above ``seed_scatter(a, b)`` is "beyond the
    seed scatter" — a looser test than :attr:`PairedDifference.verdict`, for unpaired groups.

    >>> round(seed_scatter([0.80, 0.82, 0.84], [0.5, 0.6], [0.9]), 6)  # √0.005, not 0.02
    0.070711
    """
    stds = [_std(g) for g in (_finite(g, "groups") for g in groups) if len(g) > 1]
    return max(stds, default=0.0)


@dataclass(frozen=True)
class PairedDifference:
    r"""Per-seed differences :math:`d_i = v_i - r_i` (value minus reference) and their summary.

    Build it with :func:`paired_difference`, or from the differences directly. Derived fields:
    ``n``; ``mean`` :math:`\bar d`; ``std`` :math:`s_d` (ddof = 1, NaN for one seed);
    ``se`` :math:`s_d/\sqrt n` (NaN for one seed); ``verdict``:

    * ``"no verdict"`` if :math:`n < 2`;
    * ``"within noise"`` if :math:`|\bar d| \le 2\,\mathrm{SE}`;
    * otherwise ``"better"`` if :math:`\bar d > 0` and higher is better (or :math:`\bar d < 0`
      and lower is better), else ``"worse"``.

    With SE = 0 (all differences equal) a zero mean is within noise and any other is a verdict.
    """

    differences: tuple[float, ...]
    seeds: tuple[Hashable, ...] = ()
    higher_is_better: bool = True
    n: int = field(init=False)
    mean: float = field(init=False)
    std: float = field(init=False)
    se: float = field(init=False)
    verdict: Verdict = field(init=False)

    def __post_init__(self) -> None:
        d = tuple(_finite(self.differences, "differences"))
        if not d:
            raise PolytaskError("a paired difference needs at least one seed, got none")
        if self.seeds and len(self.seeds) != len(d):
            raise PolytaskError(f"{len(self.seeds)} seeds for {len(d)} differences")
        mean, std = mean_std(d)
        se = std / math.sqrt(len(d))
        if len(d) < 2:
            verdict: Verdict = "no verdict"
        elif abs(mean) <= 2 * se:
            verdict = "within noise"
        else:
            verdict = "better" if (mean > 0) == self.higher_is_better else "worse"
        derived = {"differences": d, "n": len(d), "mean": mean, "std": std, "se": se}
        for name, value in {**derived, "verdict": verdict}.items():
            object.__setattr__(self, name, value)

    @property
    def threshold(self) -> float:
        r"""The noise margin :math:`2\,\mathrm{SE}` the verdict compares :math:`|\bar d|` with."""
        return 2 * self.se

    @property
    def wins(self) -> int:
        """Seeds on which the value beats the reference (``d > 0``, or ``d < 0`` if lower is
        better); ties count for neither side."""
        return sum((x > 0) if self.higher_is_better else (x < 0) for x in self.differences)

    @property
    def losses(self) -> int:
        """Seeds on which the reference beats the value (strictly)."""
        return sum((x < 0) if self.higher_is_better else (x > 0) for x in self.differences)

    def format(self, digits: int = 4, *, signed: bool = True) -> str:
        """Mean ± *std* of the differences (not ± SE), as :func:`format_mean_std` writes them."""
        return format_mean_std(self.differences, digits, signed=signed)


def _pair(
    values: Values[S], reference: Values[S]
) -> tuple[Sequence[Hashable], list[float], list[float]]:
    """Shared seeds (in ``values``' order) and the two sides' values on them."""
    mixed = PolytaskError("pair a mapping with a mapping ({seed: value}) or a list with a list")
    if isinstance(values, Mapping):
        if not isinstance(reference, Mapping):
            raise mixed
        seeds = [s for s in values if s in reference]
        if values and reference and not seeds:
            raise PolytaskError(
                f"no shared seeds: values have seeds {[*values]}, the reference {[*reference]}"
            )
        return seeds, [values[s] for s in seeds], [reference[s] for s in seeds]
    if isinstance(reference, Mapping):
        raise mixed
    if len(values) != len(reference):
        raise PolytaskError(
            f"paired lists differ in length ({len(values)} vs {len(reference)}); "
            "pass {seed: value} mappings to pair on shared seeds"
        )
    return list(range(len(values))), list(values), list(reference)


def paired_difference(
    values: Values[S], reference: Values[S], *, higher_is_better: bool = True
) -> PairedDifference:
    r"""Paired per-seed differences :math:`d_i = v_i - r_i` against a reference, summarised.

    ``values`` and ``reference`` are both ``{seed: value}`` mappings (paired on the seeds they
    share; the others are ignored) or both sequences of equal length (paired by position). The
    result has :math:`\bar d`, :math:`s_d`, :math:`\mathrm{SE} = s_d/\sqrt n`, ``n`` and the
    verdict of :class:`PairedDifference` (better when :math:`|\bar d| > 2\,\mathrm{SE}` in the
    good direction). Raises :class:`~polytask._core.PolytaskError` on empty input, no shared
    seeds, lists of different lengths or a NaN / infinite value.

    >>> d = paired_difference([0.81, 0.83], [0.80, 0.84], higher_is_better=True)
    >>> d.verdict, d.wins, d.losses
    ('within noise', 1, 1)
    """
    seeds, v, r = _pair(values, reference)
    v, r = _finite(v), _finite(r, "reference values")
    diffs = tuple(a - b for a, b in zip(v, r))
    return PairedDifference(diffs, tuple(seeds), higher_is_better)


@dataclass(frozen=True)
class MethodSummary:
    """One method over its seeds: ``mean`` ± ``std`` (:func:`mean_std`, all of its own seeds)
    and ``paired``, the :class:`PairedDifference` to the reference method on the shared seeds
    (``None`` for the reference itself)."""

    method: str
    values: tuple[float, ...]
    seeds: tuple[Hashable, ...]
    mean: float
    std: float
    paired: PairedDifference | None

    @property
    def n(self) -> int:
        """Number of seeds of this method."""
        return len(self.values)

    def format(self, digits: int = 4, *, zero_std: bool = False) -> str:
        """``mean ± std`` over this method's seeds (see :func:`format_mean_std`)."""
        return format_mean_std(self.values, digits, zero_std=zero_std)


def runs_from_records(
    records: Iterable[tuple[str, S, float]],
) -> dict[str, dict[S, float]]:
    """``{method: {seed: value}}`` from ``(method, seed, value)`` records, in first-seen order.

    Refuses a (method, seed) pair seen twice, so a rerun cannot silently replace a result.

    >>> runs_from_records([("EW", 0, 0.81), ("EW", 1, 0.83), ("PCGrad", 0, 0.82)])
    {'EW': {0: 0.81, 1: 0.83}, 'PCGrad': {0: 0.82}}
    """
    runs: dict[str, dict[S, float]] = {}
    for method, seed, value in records:
        by_seed = runs.setdefault(method, {})
        if seed in by_seed:
            raise PolytaskError(f"method {method!r} has seed {seed!r} twice")
        by_seed[seed] = value
    return runs


def summarise_runs(
    runs: Mapping[str, Mapping[S, float]],
    reference: str,
    *,
    higher_is_better: bool = True,
) -> list[MethodSummary]:
    r"""Per-method mean ± std and the paired difference to ``reference``, in ``runs``' order.

    ``runs`` is ``{method: {seed: value}}`` (see :func:`runs_from_records` for records). Each
    method's mean and std use all of its seeds; its :class:`PairedDifference`
    :math:`d_s = v_s - r_s` uses only the seeds it shares with the reference. Raises
    :class:`~polytask._core.PolytaskError` when ``runs`` or a method is empty, the reference is
    missing, a method shares no seed with it, or a value is NaN / infinite.

    >>> rows = summarise_runs({"EW": {0: 0.80, 1: 0.82}, "MGDA": {0: 0.81, 1: 0.84}}, "EW")
    >>> [(r.method, r.format(), r.paired and r.paired.format()) for r in rows]
    [('EW', '0.8100 ± 0.0141', None), ('MGDA', '0.8250 ± 0.0212', '+0.0150 ± 0.0071')]
    """
    if not runs:
        raise PolytaskError("no runs to summarise")
    if reference not in runs:
        raise PolytaskError(f"reference method {reference!r} is not among {sorted(runs)}")
    out = []
    for method, by_seed in runs.items():
        if not by_seed:
            raise PolytaskError(f"method {method!r} has no runs")
        values = tuple(_finite(by_seed.values(), f"method {method!r}'s values"))
        mean, std = mean_std(values)
        paired = None
        if method != reference:
            try:
                paired = paired_difference(
                    by_seed, runs[reference], higher_is_better=higher_is_better
                )
            except PolytaskError as err:
                raise PolytaskError(f"method {method!r} against {reference!r}: {err}") from None
        out.append(MethodSummary(method, values, tuple(by_seed), mean, std, paired))
    return out


def summary_table(
    summaries: Sequence[MethodSummary], digits: int = 4, *, value: str = "mean ± std"
) -> list[str]:
    """Markdown lines: method (n=seeds) | ``value`` | − reference, same seed | verdict.

    The difference column is :meth:`PairedDifference.format` (signed mean ± std of the per-seed
    differences); the reference's own row shows ``—`` there.
    """
    ref = next((s.method for s in summaries if s.paired is None), "reference")
    rows = [
        [
            f"{s.method} (n={s.n})",
            s.format(digits),
            "—" if s.paired is None else s.paired.format(digits),
            "—" if s.paired is None else s.paired.verdict,
        ]
        for s in summaries
    ]
    return markdown_table(["method", value, f"− {ref}, same seed", "verdict"], rows)
