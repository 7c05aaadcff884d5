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
from safetensors.torch import load_file

from polytask._core import write_text
from polytask.build.data import prepare_data
from polytask.build.model import make_model
from polytask.config.load import load_config
from polytask.config.schema import TrainConfig
from polytask.jobs.train import run_train
from polytask.models import MoEHeads
from polytask.tasks.data import TensorData

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "moe_tox21.yaml"
SHARED_BOTTOM = [512, 256]


def _configs(seed: int, out: Path) -> dict[str, Path]:
    base = yaml.safe_load(EXAMPLE.read_text())
    moe = dict(base, seed=seed)
    moe["data"] = dict(base["data"], split=dict(base["data"]["split"], seed=seed))
    t = moe["model"]["trunk"]
    trunk = {"kind": "mlp", "hidden": SHARED_BOTTOM}
    trunk.update(dropout=t["dropout"], batch_norm=t["batch_norm"])
    mlp = dict(moe, model={"trunk": trunk})
    paths = {}
    for name, stem, cfg in (("shared-bottom MLP", "mlp", mlp), ("MMoE", "moe", moe)):
        path = out / f"{stem}_seed{seed}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        paths[name] = path
    return paths


def _gate_stats(config_path: Path, run: Path) -> dict[str, Any]:
    """Gate weights of the selected MMoE on the test split."""
    config = load_config(TrainConfig, config_path)
    prepared = prepare_data(config, config_path.parent)
    model = make_model(config, prepared.taskset, prepared.in_dim)
    model.load_state_dict(load_file(str(run / "checkpoints" / "best" / "model.safetensors")))
    model.eval()
    test = prepared.splits["test"]
    assert isinstance(test, TensorData) and isinstance(model.heads, MoEHeads)
    with torch.no_grad():
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


def _params(config_path: Path) -> int:
    config = load_config(TrainConfig, config_path)
    prepared = prepare_data(config, config_path.parent)
    return sum(
        p.numel() for p in make_model(config, prepared.taskset, prepared.in_dim).parameters()
    )


def _ms(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _verdict(diffs: list[float], ours: str = "MMoE", theirs: str = "the shared-bottom MLP") -> str:
    """Which model wins: the paired mean difference (``ours − theirs``) against twice its
    standard error."""
    if len(diffs) < 2:
        return "One seed: no verdict."
    mean, sem = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    if abs(mean) <= 2 * sem:
        return (
            f"|mean| {abs(mean):.4f} ≤ 2 standard errors ({2 * sem:.4f}): within the seed "
            "scatter, neither model wins at this budget."
        )
    winner = ours if mean > 0 else theirs
    return f"|mean| {abs(mean):.4f} > 2 standard errors ({2 * sem:.4f}): {winner} wins."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "moe_tox21")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    auc: dict[str, list[float]] = {}
    secs: dict[str, list[float]] = {}
    params: dict[str, int] = {}
    per_task: dict[str, dict[str, list[float]]] = {}
    gates: list[dict[str, Any]] = []
    for seed in args.seeds:
        for name, path in _configs(seed, args.out).items():
            run = args.out / f"{path.stem}"
            report = run_train(path, run, overwrite=True, progress=False)
            auc.setdefault(name, []).append(report["means"]["test"]["roc_auc"])
            secs.setdefault(name, []).append(report["training"]["seconds"])
            for task, m in report["metrics"]["test"].items():
                per_task.setdefault(task, {}).setdefault(name, []).append(m["roc_auc"])
            if name == "MMoE":
                gates.append(_gate_stats(path, run))
                params[name] = gates[-1]["params"]
            else:
                params.setdefault(name, _params(path))
            print(f"seed {seed} {name}: test ROC-AUC {auc[name][-1]:.4f}", flush=True)
    names = list(auc)
    diffs = [b - a for a, b in zip(auc[names[0]], auc[names[1]])]
    ex = yaml.safe_load(EXAMPLE.read_text())
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
            f"| {n} | {params[n]:,} | **{_ms(auc[n])}** | {', '.join(f'{v:.4f}' for v in auc[n])} "
            f"| {statistics.mean(secs[n]):.0f} |"
            for n in names
        ],
        "",
        f"Paired difference MMoE − shared-bottom (same split and seed): {_ms(diffs)} "
        f"({sum(d > 0 for d in diffs)} of {len(diffs)} seeds in favour of MMoE). {_verdict(diffs)}",
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
