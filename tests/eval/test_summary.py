"""polytask.eval.summary: pinned, hand-computed values and the output of the benchmark copies."""

from __future__ import annotations

import math
import random
import statistics

import pytest

import polytask.eval
from polytask._core import PolytaskError
from polytask.eval import summary
from polytask.eval.summary import (
    MethodSummary,
    PairedDifference,
    format_mean_std,
    markdown_row,
    markdown_table,
    mean_std,
    paired_difference,
    runs_from_records,
    seed_scatter,
    summarise_runs,
    summary_table,
)

# d = (0.03, 0.02, 0.02): mean 0.07 / 3, deviations (+1/150, -1/300, -1/300),
# s² = (4/90000 + 2/90000) / 2 = 1/30000, s = 0.0057735, SE = s / √3 = 1/300.
VALUES = {0: 0.83, 1: 0.84, 2: 0.86}
REFERENCE = {0: 0.80, 1: 0.82, 2: 0.84}


def test_public_names_are_exported() -> None:
    for name in summary.__all__:
        assert getattr(polytask.eval, name) is getattr(summary, name)
        assert name in polytask.eval.__all__


# --- mean ± std ----------------------------------------------------------------------------


def test_mean_std_is_sample_std() -> None:
    mean, std = mean_std([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82, abs=1e-15)
    assert std == pytest.approx(0.02, abs=1e-15)  # √((0.02² + 0 + 0.02²) / 2)
    mean, std = mean_std([1, 2, 3, 4])
    assert (mean, std) == (2.5, pytest.approx(math.sqrt(5 / 3)))  # ddof = 1, not √(5/4)


def test_format_mean_std() -> None:
    assert format_mean_std([0.80, 0.82, 0.84]) == "0.8200 ± 0.0200"
    assert format_mean_std([1, 2, 3, 4], 2) == "2.50 ± 1.29"
    assert format_mean_std([1, 2, 3, 4], 0) == "2 ± 1"  # 2.5 rounds half to even
    assert format_mean_std([-1.5, 0.5], 2, signed=True) == "-0.50 ± 1.41"
    assert format_mean_std([1.5, 0.5], 2, signed=True) == "+1.00 ± 0.71"
    with pytest.raises(PolytaskError, match="digits"):
        format_mean_std([1.0], -1)


def test_one_value_has_no_std() -> None:
    mean, std = mean_std([0.8221])
    assert mean == 0.8221 and math.isnan(std)
    assert format_mean_std([0.8221]) == "0.8221"
    assert format_mean_std([0.8221], zero_std=True) == "0.8221 ± 0.0000"
    assert format_mean_std([0.125], 2, signed=True) == "+0.12"
    assert format_mean_std([0.125], 2, signed=True, zero_std=True) == "+0.12 ± 0.00"
    assert format_mean_std([-0.0]) == "-0.0000"  # the value as given, like f"{-0.0:.4f}"


def test_constant_values_have_zero_std() -> None:
    assert mean_std([0.7, 0.7, 0.7]) == (0.7, 0.0)
    assert format_mean_std([0.7, 0.7, 0.7]) == "0.7000 ± 0.0000"


def test_empty_input() -> None:
    with pytest.raises(PolytaskError, match="at least one value"):
        mean_std([])
    with pytest.raises(PolytaskError, match="at least one value"):
        format_mean_std([])
    assert format_mean_std([], empty="—") == "—"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(PolytaskError, match=r"non-finite value \(.*\) at position 1"):
        mean_std([0.8, bad, 0.9])
    with pytest.raises(PolytaskError, match="non-finite"):
        format_mean_std([0.8, bad], empty="—")
    with pytest.raises(PolytaskError, match="non-finite"):
        paired_difference([0.8, 0.9], [bad, 0.9])
    with pytest.raises(PolytaskError, match="non-finite"):
        summarise_runs({"EW": {0: 0.8}, "X": {0: bad}}, "EW")


def test_seed_scatter() -> None:
    # stds: 0.02 and √(0.005 / 1) = 0.0707107; the single value has none
    assert seed_scatter([0.80, 0.82, 0.84], [0.5, 0.6], [0.9]) == pytest.approx(0.0707107)
    assert seed_scatter([0.9], [0.5]) == 0.0
    assert seed_scatter() == 0.0


# --- paired differences --------------------------------------------------------------------


def test_paired_difference_hand_computed() -> None:
    d = paired_difference(VALUES, REFERENCE)
    assert d.differences == pytest.approx((0.03, 0.02, 0.02))
    assert d.seeds == (0, 1, 2) and d.n == 3
    assert d.mean == pytest.approx(0.07 / 3)
    assert d.std == pytest.approx(math.sqrt(1 / 30000))
    assert d.se == pytest.approx(1 / 300)
    assert d.threshold == pytest.approx(2 / 300)
    assert (d.verdict, d.wins, d.losses) == ("better", 3, 0)
    assert d.format() == "+0.0233 ± 0.0058"  # ± the std of the differences, not the SE
    assert d.format(2, signed=False) == "0.02 ± 0.01"


def test_direction_lower_is_better() -> None:
    d = paired_difference(VALUES, REFERENCE, higher_is_better=False)
    assert (d.verdict, d.wins, d.losses) == ("worse", 0, 3)
    d = paired_difference(REFERENCE, VALUES, higher_is_better=False)
    assert d.mean == pytest.approx(-0.07 / 3)
    assert (d.verdict, d.wins, d.losses) == ("better", 3, 0)


def test_within_noise() -> None:
    # d = (+0.01, -0.01): mean 0, s = 0.0141421, SE = 0.01
    d = paired_difference([0.81, 0.83], [0.80, 0.84])
    assert d.mean == pytest.approx(0.0, abs=1e-15)
    assert d.se == pytest.approx(0.01)
    assert (d.verdict, d.wins, d.losses) == ("within noise", 1, 1)
    # d = (0.02, 0.0, 0.01): mean 0.01, s = 0.01, SE = 0.0057735, 2 SE = 0.011547 > 0.01
    d = PairedDifference((0.02, 0.0, 0.01))
    assert d.se == pytest.approx(0.01 / math.sqrt(3))
    assert (d.verdict, d.wins, d.losses) == ("within noise", 2, 0)


def test_constant_differences_do_not_divide_by_zero() -> None:
    d = PairedDifference((0.1, 0.1, 0.1))
    assert (d.std, d.se, d.verdict) == (0.0, 0.0, "better")
    d = PairedDifference((-0.1, -0.1), higher_is_better=True)
    assert (d.se, d.verdict) == (0.0, "worse")
    d = paired_difference([0.8, 0.8, 0.8], [0.8, 0.8, 0.8])
    assert (d.mean, d.se, d.verdict, d.wins, d.losses) == (0.0, 0.0, "within noise", 0, 0)


def test_one_seed_gives_no_verdict() -> None:
    d = paired_difference({3: 0.83}, {3: 0.80})
    assert d.n == 1 and d.seeds == (3,)
    assert d.mean == pytest.approx(0.03)
    assert math.isnan(d.std) and math.isnan(d.se)
    assert d.verdict == "no verdict"
    assert d.format() == "+0.0300"


def test_differing_seed_sets_use_the_shared_seeds() -> None:
    d = paired_difference({0: 0.9, 1: 0.83, 2: 0.84, 3: 0.1}, {1: 0.80, 2: 0.82, 5: 0.7})
    assert d.seeds == (1, 2)
    assert d.differences == pytest.approx((0.03, 0.02))
    assert d.se == pytest.approx(0.005)  # s = √(2 · 0.005² / 1), SE = s / √2


def test_paired_difference_refusals() -> None:
    with pytest.raises(PolytaskError, match=r"no shared seeds: values have seeds \[0, 1\]"):
        paired_difference({0: 0.8, 1: 0.9}, {2: 0.8})
    with pytest.raises(PolytaskError, match="differ in length"):
        paired_difference([0.8, 0.9], [0.8])
    with pytest.raises(PolytaskError, match="mapping with a mapping"):
        paired_difference({0: 0.8}, [0.8])
    with pytest.raises(PolytaskError, match="at least one seed"):
        paired_difference([], [])
    with pytest.raises(PolytaskError, match="at least one seed"):
        paired_difference({}, {0: 0.8})
    with pytest.raises(PolytaskError, match="2 seeds for 1 differences"):
        PairedDifference((0.1,), (0, 1))


# --- many methods over seeds ---------------------------------------------------------------


def test_summarise_runs() -> None:
    runs = {"EW": REFERENCE, "MGDA": {**VALUES, 3: 0.90}}
    ew, mgda = summarise_runs(runs, "EW")
    assert isinstance(ew, MethodSummary) and ew.paired is None
    assert (ew.method, ew.n, ew.seeds) == ("EW", 3, (0, 1, 2))
    assert (ew.mean, ew.std) == (pytest.approx(0.82), pytest.approx(0.02))
    assert (mgda.n, mgda.seeds) == (4, (0, 1, 2, 3))
    assert mgda.mean == pytest.approx(3.43 / 4)  # all 4 of its seeds
    assert mgda.paired is not None and mgda.paired.seeds == (0, 1, 2)  # only the shared ones
    assert mgda.paired.mean == pytest.approx(0.07 / 3)
    assert mgda.paired.verdict == "better"
    assert mgda.format() == "0.8575 ± 0.0310"
    lower = summarise_runs(runs, "EW", higher_is_better=False)[1].paired
    assert lower is not None and lower.verdict == "worse"


def test_summarise_runs_refusals() -> None:
    with pytest.raises(PolytaskError, match="no runs"):
        summarise_runs({}, "EW")
    with pytest.raises(PolytaskError, match=r"reference method 'EW' is not among \['X'\]"):
        summarise_runs({"X": {0: 0.8}}, "EW")
    with pytest.raises(PolytaskError, match="method 'X' has no runs"):
        summarise_runs({"EW": {0: 0.8}, "X": {}}, "EW")
    with pytest.raises(PolytaskError, match="method 'X' against 'EW': no shared seeds") as err:
        summarise_runs({"EW": {0: 0.8}, "X": {1: 0.8}}, "EW")
    assert "\n" not in str(err.value)


def test_runs_from_records() -> None:
    runs = runs_from_records([("EW", 1, 0.82), ("X", 0, 0.7), ("EW", 0, 0.80)])
    assert runs == {"EW": {1: 0.82, 0: 0.80}, "X": {0: 0.7}}
    assert list(runs["EW"]) == [1, 0]
    with pytest.raises(PolytaskError, match="method 'EW' has seed 0 twice"):
        runs_from_records([("EW", 0, 0.8), ("EW", 0, 0.9)])


def test_summary_table() -> None:
    rows = summarise_runs({"EW": REFERENCE, "MGDA": VALUES, "one": {2: 0.85}}, "EW")
    assert summary_table(rows, value="test ROC-AUC") == [
        "| method | test ROC-AUC | − EW, same seed | verdict |",
        "|---|---|---|---|",
        "| EW (n=3) | 0.8200 ± 0.0200 | — | — |",
        "| MGDA (n=3) | 0.8433 ± 0.0153 | +0.0233 ± 0.0058 | better |",
        "| one (n=1) | 0.8500 | +0.0100 | no verdict |",
    ]


# --- markdown ------------------------------------------------------------------------------


def test_markdown_table_matches_the_results_pages() -> None:
    lines = markdown_table(["seed", "a", "b"], [["0", "0.8288", ""], ["1", "0.8227", "x"]])
    assert lines == [
        "| seed | a | b |",
        "|---|---|---|",
        "| 0 | 0.8288 |  |",
        "| 1 | 0.8227 | x |",
    ]
    assert markdown_table(["a"], []) == ["| a |", "|---|"]


def test_markdown_table_align() -> None:
    lines = markdown_table(["a", "b", "c", "d"], [], align=["", "left", "right", "center"])
    assert lines[1] == "|---|:---|---:|:---:|"
    with pytest.raises(PolytaskError, match="align"):
        markdown_table(["a", "b"], [], align=["right"])
    with pytest.raises(PolytaskError, match="align"):
        markdown_table(["a"], [], align=["r"])


def test_markdown_cells() -> None:
    assert markdown_row(["|F|", r"\|G\|"]) == r"| \|F\| | \|G\| |"
    with pytest.raises(PolytaskError, match="row 1 has 1 cells, the header 2"):
        markdown_table(["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(PolytaskError, match="line break"):
        markdown_row(["a\nb"])
    with pytest.raises(PolytaskError, match="must be text, got float"):
        markdown_row([0.5])  # type: ignore[list-item]
    with pytest.raises(PolytaskError, match="at least one column"):
        markdown_table([], [])


# --- the same output as the benchmark copies -----------------------------------------------
# Verbatim copies of the helpers in benchmarks/ (the library must reproduce them to the digit).


def _ms_balancing(values: list[float], digits: int = 4) -> str:  # _balancing_runs._ms
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _pm_balancing(values: list[float]) -> str:  # _balancing_runs._pm
    if len(values) == 1:
        return f"{values[0]:+.2f}"
    return f"{statistics.mean(values):+.2f} ± {statistics.stdev(values):.2f}"


def _pm_merge(values: list[float], fmt: str) -> str:  # tox21_merge._pm
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{format(statistics.mean(values), fmt)} ± {format(std, fmt.replace('+', ''))}"


def _verdict_moe(diffs: list[float]) -> str:  # moe_tox21._verdict, reduced to its outcome
    if len(diffs) < 2:
        return "no verdict"
    mean, sem = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    if abs(mean) <= 2 * sem:
        return "within noise"
    return "better" if mean > 0 else "worse"


def _cmp_phg(a: list[float], b: list[float]) -> tuple[float, bool]:  # ssl_phg._cmp
    d = statistics.mean(a) - statistics.mean(b)
    noise = max((statistics.stdev(x) if len(x) > 1 else 0.0) for x in (a, b))
    return d, abs(d) > noise


def test_reproduces_the_benchmark_copies() -> None:
    rng = random.Random(0)
    for _ in range(1000):
        n = rng.randint(1, 6)
        scale = rng.choice([1e-3, 1.0, 100.0])
        xs = [round(rng.gauss(0.8, 0.05) * scale, rng.randint(2, 6)) for _ in range(n)]
        ys = [round(x + rng.gauss(0.0, 0.01) * scale, 4) for x in xs]
        assert format_mean_std(xs, empty="—") == _ms_balancing(xs)
        assert format_mean_std(xs, 2) == _ms_balancing(xs, 2)
        assert format_mean_std(xs, 2, signed=True) == _pm_balancing(xs)
        assert format_mean_std(xs, 2, signed=True, zero_std=True) == _pm_merge(xs, "+.2f")
        assert format_mean_std(xs, zero_std=True) == _pm_merge(xs, ".4f")
        d = paired_difference(ys, xs)
        diffs = [y - x for x, y in zip(xs, ys)]
        assert d.verdict == _verdict_moe(diffs)
        assert d.format(signed=False) == _ms_balancing(diffs)
        if n > 1:
            assert 2 * d.se == 2 * statistics.stdev(diffs) / math.sqrt(n)
        diff, beyond = _cmp_phg(ys, xs)
        assert diff == mean_std(ys)[0] - mean_std(xs)[0]
        assert beyond == (abs(diff) > seed_scatter(ys, xs))
    assert format_mean_std([], empty="—") == _ms_balancing([])


def test_mean_rank_by_hand_with_ties_and_directions() -> None:
    scores = {
        "A": {"t1": 0.9, "t2": 1.0, "t3": 5.0},
        "B": {"t1": 0.9, "t2": 2.0, "t3": 3.0},
        "C": {"t1": 0.5, "t2": 3.0, "t3": 3.0},
    }
    # t1 (higher): A, B tie for ranks 1-2 -> 1.5 each, C 3; t2 (lower is better): A 1, B 2,
    # C 3; t3 (higher): A 1, B and C tie for 2-3 -> 2.5 each
    ranks = summary.mean_rank(scores, {"t1": True, "t2": False, "t3": True})
    assert ranks == pytest.approx({"A": 3.5 / 3, "B": 6 / 3, "C": 8.5 / 3})
    assert sum(ranks.values()) == pytest.approx(1 + 2 + 3)  # ranks 1..M on every task
    assert summary.mean_rank(scores, higher_is_better=False)["C"] == pytest.approx(
        (1 + 3 + 1.5) / 3
    )
    with pytest.raises(PolytaskError, match="method 'B' has tasks"):
        summary.mean_rank({"A": {"t1": 1.0}, "B": {"t2": 1.0}})
    with pytest.raises(PolytaskError):
        summary.mean_rank({"A": {"t1": math.nan}})


def test_mean_rank_line_averages_seeds_and_keeps_shared_tasks() -> None:
    runs = {
        "ew": [{"a": {"auc": 0.5}, "b": {"auc": 0.70}}, {"a": {"auc": 1.0}, "b": {"auc": 0.70}}],
        "famo": [{"a": {"auc": 0.75}, "b": {"auc": 0.75}, "c": {"auc": 0.9}}],
        "mgda": [{"a": {"auc": math.nan}, "b": {"auc": 0.60}}],  # NaN left out: a is not shared
    }
    # on b only: famo 0.75 (1), ew 0.70 (2), mgda 0.60 (3)
    assert summary.mean_rank_line(runs, "auc") == (
        "mean rank over 1 task (auc, mean over seeds; 1 = best): ew 2.00, famo 1.00, mgda 3.00"
    )
    two = {k: v for k, v in runs.items() if k != "mgda"}  # a: ew's mean 0.75 ties famo's
    assert summary.mean_rank_line(two, "auc").endswith("ew 1.75, famo 1.25")
    assert summary.mean_rank_line({"ew": runs["ew"]}, "auc") == ""
