"""Tox21: shared-bottom MLP vs multi-gate mixture-of-experts (MMoE), about the same size, 3 seeds.

Both models train with the recipe of ``examples/moe_tox21.yaml`` (ECFP4 2,048 bits, AdamW,
cosine schedule, model selected on mean validation ROC-AUC); the shared-bottom model swaps the
trunk for an MLP ``[512, 256]`` with the same dropout and batch norm. Each seed re-draws the
random 80/10/10 split and the initialisation. For every MMoE run the gates of the selected model
are read on the test molecules (``MoEHeads.gates``): mean gate weight per expert per task, the
normalised gate entropy (1 = uniform over the experts, 0 = one expert), and how far apart the
tasks' gates are (total-variation distance, averaged over task pairs). Writes
``docs/results/moe.md``.

    python benchmarks/moe_tox21.py [--seeds 0 1 2] [--out .bench/moe_tox21] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from polytask._core import write_text
from polytask.eval import PairedDifference, format_mean_std, paired_difference
from polytask.jobs.run_folder import RunFolder
from polytask.jobs.sweep import run_sweep
from polytask.models import MoEHeads
from polytask.tasks.data import TensorData

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "moe_tox21.yaml"
SHARED_BOTTOM = [512, 256]


def _variants(example: dict[str, Any]) -> dict[str, dict[str, object]]:
    """name → the overrides of the example config (MMoE is the example itself)."""
    t = example["model"]["trunk"]
    trunk = {"kind": "mlp", "hidden": SHARED_BOTTOM}
    trunk.update(dropout=t["dropout"], batch_norm=t["batch_norm"])
    return {"shared-bottom MLP": {"model": {"trunk": trunk}}, "MMoE": {}}


@torch.no_grad()
def _gate_stats(run: RunFolder) -> dict[str, Any]:
    """Gate weights of the selected MMoE on the test split."""
    config, prepared = run.prepare()
    model = run.load_model(config, prepared)
    model.eval()
    test = prepared.splits["test"]
    assert isinstance(test, TensorData) and isinstance(model.heads, MoEHeads)
    g = model.heads.gates(model.forward_features(test.inputs)).double()  # [N, K, n]
    n = g.shape[-1]
    mean = g.mean(0)  # [K, n]
    entropy = float(-(g * g.clamp_min(1e-12).log()).sum(-1).mean() / math.log(n)) if n > 1 else 0.0
    pairs = list(itertools.combinations(range(g.shape[1]), 2))
    tv_mean = statistics.mean(0.5 * float((mean[a] - mean[b]).abs().sum()) for a, b in pairs)
    tv_sample = statistics.mean(
        0.5 * float((g[:, a] - g[:, b]).abs().sum(-1).mean()) for a, b in pairs
    )
    return {
        "names": model.heads.names,
        "mean": mean,
        "entropy": entropy,
        "tv_mean": tv_mean,
        "tv_sample": tv_sample,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _params(run: RunFolder) -> int:
    config, prepared = run.prepare()
    return sum(p.numel() for p in run.load_model(config, prepared).parameters())


def verdict_text(d: PairedDifference, ours: str = "MMoE", theirs: str = "the shared-bottom MLP") -> str:  # fmt: skip
    """Which model wins: the paired mean difference (``ours − theirs``) against twice its
    standard error (:attr:`PairedDifference.verdict`)."""
    if d.verdict == "no verdict":
        return "One seed: no verdict."
    if d.verdict == "within noise":
        return (
            f"|mean| {abs(d.mean):.4f} ≤ 2 standard errors ({d.threshold:.4f}): within the seed "
            "scatter, neither model wins at this budget."
        )
    winner = ours if d.verdict == "better" else theirs
    return f"|mean| {abs(d.mean):.4f} > 2 standard errors ({d.threshold:.4f}): {winner} wins."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "moe_tox21")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ex = yaml.safe_load(EXAMPLE.read_text())
    variants = _variants(ex)
    result = run_sweep(ex, args.out, seeds=args.seeds, points=list(variants.values()),
                       base_dir=EXAMPLE.parent, baselines=False)  # fmt: skip
    auc: dict[str, list[float]] = {}
    secs: dict[str, list[float]] = {}
    params: dict[str, int] = {}
    per_task: dict[str, dict[str, list[float]]] = {}
    gates: list[dict[str, Any]] = []
    for seed, (name, point) in itertools.product(args.seeds, variants.items()):
        cell = result.cell(point, seed)
        assert cell is not None
        report = cell.report
        auc.setdefault(name, []).append(report.means["test"]["roc_auc"])
        secs.setdefault(name, []).append((report.training or {})["seconds"])
        for task, m in report.metrics["test"].items():
            per_task.setdefault(task, {}).setdefault(name, []).append(m["roc_auc"])
        if name == "MMoE":
            gates.append(_gate_stats(cell.folder))
            params[name] = gates[-1]["params"]
        else:
            params.setdefault(name, _params(cell.folder))
        print(f"seed {seed} {name}: test ROC-AUC {auc[name][-1]:.4f}", flush=True)
    names = list(auc)
    diff = paired_difference(auc[names[1]], auc[names[0]])  # MMoE − shared-bottom
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Tox21: shared-bottom MLP vs multi-gate mixture-of-experts (MMoE)",
        "",
        f"Command: `python benchmarks/moe_tox21.py --seeds {seeds} --threads {args.threads}` "
        "(recipe: `examples/moe_tox21.yaml`, ECFP4 2,048 bits, "
        f"{ex['train']['epochs']} epochs max, early stopping patience {ex['train']['patience']}, "
        "model selected on mean validation ROC-AUC; random 80/10/10 split re-drawn per seed).",
        "",
        f"- shared-bottom MLP: trunk `mlp {SHARED_BOTTOM}`, linear heads.",
        f"- MMoE: trunk `{ex['model']['trunk']}`, per-task softmax gate + linear tower.",
        "",
        "| model | parameters | mean test ROC-AUC (12 tasks), mean ± std over seeds | per seed | train s (mean) |",
        "|---|---|---|---|---|",
        *[
            f"| {n} | {params[n]:,} | **{format_mean_std(auc[n])}** | {', '.join(f'{v:.4f}' for v in auc[n])} "
            f"| {statistics.mean(secs[n]):.0f} |"
            for n in names
        ],
        "",
        f"Paired difference MMoE − shared-bottom (same split and seed): "
        f"{format_mean_std(diff.differences)} ({diff.wins} of {diff.n} seeds in favour of MMoE). "
        f"{verdict_text(diff)}",
        "",
        "Train seconds are wall time on a shared 2-core machine with one thread, not a speed claim.",
        "",
        "Per task (mean test ROC-AUC over seeds):",
        "",
        f"| task | {' | '.join(names)} |",
        "|---|" + "---|" * len(names),
        *[
            f"| {t} | " + " | ".join(f"{statistics.mean(v[n]):.4f}" for n in names) + " |"
            for t, v in per_task.items()
        ],
        "",
        "## Gate usage (MMoE, test molecules)",
        "",
        "Normalised gate entropy (1 = uniform over the experts, 0 = one expert per molecule); task "
        "separation = total-variation distance between two tasks' gates, averaged over task pairs, "
        "of the mean gates and per molecule.",
        "",
        "| seed | gate entropy | TV of mean gates | TV per molecule |",
        "|---|---|---|---|",
        *[
            f"| {s} | {g['entropy']:.3f} | {g['tv_mean']:.3f} | {g['tv_sample']:.3f} |"
            for s, g in zip(args.seeds, gates)
        ],
        "",
        f"Mean gate weight per expert per task (seed {args.seeds[0]}; expert numbering is "
        "arbitrary, so seeds are not averaged):",
        "",
        "| task | " + " | ".join(f"E{i + 1}" for i in range(gates[0]["mean"].shape[1])) + " |",
        "|---|" + "---|" * gates[0]["mean"].shape[1],
        *[
            f"| {t} | " + " | ".join(f"{float(v):.3f}" for v in row) + " |"
            for t, row in zip(gates[0]["names"], gates[0]["mean"])
        ],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_text(REPO / "docs" / "results" / "moe.md", text)


if __name__ == "__main__":
    sys.exit(main())
