"""Tox21: shared-bottom MLP vs per-task residual adapters at the same shared width, 3 seeds.

All models train with the recipe of ``examples/adapters_tox21.yaml`` (ECFP4 2,048 bits, AdamW,
cosine schedule, dropout 0.4, batch norm, model selected on mean validation ROC-AUC, early
stopping). Compared:

* shared-bottom MLP ``[512, 256]`` (the trunk the adapters are inserted into);
* adapters: the same shared ``[512, 256]`` layers, a bottleneck-32 adapter and a batch norm per
  task after each layer (``examples/adapters_tox21.yaml``);
* a parameter-matched shared-bottom MLP ``[768, 384]`` (about the adapters model's total size), to
  tell apart "task-specific capacity" from "more parameters".

Each seed re-draws the random 80/10/10 split and the initialisation; differences are paired per
seed. For every adapters run the size of the learnt adapters is read from the selected model
(``‖U σ(D a) + e‖ / ‖a‖`` on the test molecules, per layer: how far each task's features moved
from the shared trunk's). Writes ``docs/results/adapters.md``.

    python benchmarks/adapters_tox21.py [--seeds 0 1 2] [--out .bench/adapters_tox21] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from moe_tox21 import verdict_text
from polytask._core import write_text
from polytask.eval import format_mean_std, paired_difference
from polytask.jobs.run_folder import RunFolder
from polytask.jobs.sweep import run_sweep
from polytask.models import AdapterTrunk, MultiTaskModel
from polytask.tasks.data import TensorData

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "adapters_tox21.yaml"
BASE, ADAPTERS, WIDE = "shared-bottom MLP", "adapters", "shared-bottom MLP, parameter-matched"
SMALL, BASE_NO_BN, NO_BN = "adapters, bottleneck 8", "shared-bottom MLP, no BN", "adapters, no BN"
WIDE_HIDDEN = [768, 384]
#: (adapters variant, the shared-bottom model it is paired with)
PAIRS = [(ADAPTERS, BASE), (ADAPTERS, WIDE), (SMALL, BASE), (NO_BN, BASE_NO_BN)]


def _variants(example: dict[str, Any], ablation: bool) -> dict[str, dict[str, object]]:
    """name → the overrides of the example config (the adapters model is the example)."""
    t = example["model"]["trunk"]
    common = {"kind": "mlp", "dropout": t["dropout"], "batch_norm": t["batch_norm"]}
    runs: dict[str, dict[str, object]] = {
        BASE: {"model": {"trunk": {**common, "hidden": t["hidden"]}}},
        ADAPTERS: {},
        WIDE: {"model": {"trunk": {**common, "hidden": WIDE_HIDDEN}}},
    }
    if ablation:
        no_bn = {"trunk": {**common, "hidden": t["hidden"], "batch_norm": False}}
        runs[SMALL] = {"model": {"trunk": {**t, "bottleneck": 8}}}
        runs[BASE_NO_BN] = {"model": no_bn}
        runs[NO_BN] = {"model": {"trunk": {**t, "batch_norm": False}}}
    return runs


def _load(run: RunFolder) -> tuple[MultiTaskModel, Any]:
    config, prepared = run.prepare()
    return run.load_model(config, prepared), prepared


def _counts(model: MultiTaskModel, num_tasks: int) -> dict[str, int]:
    """Shared parameters and task-specific parameters per task (adapters, norms, head)."""
    shared = sum(p.numel() for p in model.shared_parameters())
    task = sum(p.numel() for p in model.task_parameters())
    return {"shared": shared, "per_task": task // num_tasks, "total": shared + task}


@torch.no_grad()
def _adapter_size(run: RunFolder) -> list[float]:
    """Per layer, mean over tasks of ``‖adapter(a) − a‖ / ‖a‖`` on the test molecules."""
    model, prepared = _load(run)
    model.eval()
    trunk = model.trunk
    test = prepared.splits["test"]
    assert isinstance(trunk, AdapterTrunk) and isinstance(test, TensorData)
    h, sizes = test.inputs, []
    for i, (linear, adapter) in enumerate(zip(trunk.layers, trunk.adapters)):
        z = linear(h)
        if i == 0:
            z = z.unsqueeze(0).expand(trunk.num_tasks, *z.shape)
        a = trunk.act(trunk.norms[i](z) if len(trunk.norms) else z)
        h = adapter(a)
        ratio = (h - a).norm(dim=(1, 2)) / a.norm(dim=(1, 2)).clamp_min(1e-12)
        sizes.append(float(ratio.mean()))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "adapters_tox21")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--ablation", action="store_true", help="also bottleneck 8, and both models without BN"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ex = yaml.safe_load(EXAMPLE.read_text())
    variants = _variants(ex, args.ablation)
    result = run_sweep(ex, args.out, seeds=args.seeds, points=list(variants.values()),
                       base_dir=EXAMPLE.parent, baselines=False)  # fmt: skip
    auc: dict[str, list[float]] = {}
    secs: dict[str, list[float]] = {}
    steps: dict[str, list[int]] = {}
    counts: dict[str, dict[str, int]] = {}
    per_task: dict[str, dict[str, list[float]]] = {}
    sizes: list[list[float]] = []
    for seed, (name, point) in itertools.product(args.seeds, variants.items()):
        cell = result.cell(point, seed)
        assert cell is not None
        report, training = cell.report, cell.report.training or {}
        auc.setdefault(name, []).append(report.means["test"]["roc_auc"])
        secs.setdefault(name, []).append(training["seconds"])
        steps.setdefault(name, []).append(training["steps"])
        for task, m in report.metrics["test"].items():
            per_task.setdefault(task, {}).setdefault(name, []).append(m["roc_auc"])
        if name not in counts:
            model, prepared = _load(cell.folder)
            counts[name] = _counts(model, len(prepared.taskset))
        if name == ADAPTERS:
            sizes.append(_adapter_size(cell.folder))
        print(f"seed {seed} {name}: test ROC-AUC {auc[name][-1]:.4f}", flush=True)
    names = list(auc)
    pairs = [(a, b) for a, b in PAIRS if a in auc and b in auc]
    diffs = {(a, b): paired_difference(auc[a], auc[b]) for a, b in pairs}
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Tox21: shared-bottom MLP vs per-task residual adapters",
        "",
        f"Command: `python benchmarks/adapters_tox21.py --seeds {seeds} --threads "
        f"{args.threads}{' --ablation' if args.ablation else ''}` (recipe: `examples/adapters_tox21.yaml`, ECFP4 2,048 bits, "
        f"{ex['train']['epochs']} epochs max, early stopping patience {ex['train']['patience']}, "
        "model selected on mean validation ROC-AUC; random 80/10/10 split re-drawn per seed; "
        "plain summed loss, no balancing).",
        "",
        f"- {BASE}: trunk `mlp {ex['model']['trunk']['hidden']}`, dropout and batch norm as "
        "below, linear heads.",
        f"- {ADAPTERS}: trunk `{ex['model']['trunk']}` (the same shared layers, one adapter and "
        "one batch norm per task after each layer), linear heads on each task's features.",
        f"- {WIDE}: trunk `mlp {WIDE_HIDDEN}`, about the adapters model's total size.",
        *(
            [
                f"- {SMALL}: the adapters trunk with bottleneck 8.",
                f"- {BASE_NO_BN} / {NO_BN}: the first two without batch norm (the adapters "
                "model then has no per-task norm).",
            ]
            if args.ablation
            else []
        ),
        "",
        "| model | shared params | task params per task | total | mean test ROC-AUC (12 tasks), "
        "mean ± std over seeds | per seed | steps run (mean) | train s (mean) |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {n} | {counts[n]['shared']:,} | {counts[n]['per_task']:,} | "
            f"{counts[n]['total']:,} | **{format_mean_std(auc[n])}** | "
            f"{', '.join(f'{v:.4f}' for v in auc[n])} | {statistics.mean(steps[n]):.0f} | "
            f"{statistics.mean(secs[n]):.0f} |"
            for n in names
        ],
        "",
        *[
            f"Paired difference {a} − {b} (same split and seed): "
            f"{', '.join(f'{d:+.4f}' for d in diffs[a, b].differences)} → "
            f"{format_mean_std(diffs[a, b].differences)} ({diffs[a, b].wins} of "
            f"{diffs[a, b].n} seeds in favour of adapters). {verdict_text(diffs[a, b], a, b)}\n"
            for a, b in pairs
        ],
        "Train seconds are wall time of one run on a shared 2-core machine with one thread, not a "
        "speed claim. Shared params are what `MultiTaskModel.shared_parameters()` returns (what "
        "gradient balancing aggregates); task params are adapters, per-task batch norms and the "
        "head.",
        "",
        "Size of the learnt adapters on the test molecules, `‖U σ(D a) + e‖ / ‖a‖` averaged over "
        "tasks (0 = every task still uses the shared features):",
        "",
        "| seed | " + " | ".join(f"layer {i + 1}" for i in range(len(sizes[0]))) + " |",
        "|---|" + "---|" * len(sizes[0]),
        *[
            f"| {s} | " + " | ".join(f"{v:.3f}" for v in row) + " |"
            for s, row in zip(args.seeds, sizes)
        ],
        "",
        "Per task (mean test ROC-AUC over seeds):",
        "",
        f"| task | {' | '.join(names[:3])} |",
        "|---|" + "---|" * 3,
        *[
            f"| {t} | " + " | ".join(f"{statistics.mean(v[n]):.4f}" for n in names[:3]) + " |"
            for t, v in per_task.items()
        ],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_text(REPO / "docs" / "results" / "adapters.md", text)


if __name__ == "__main__":
    sys.exit(main())
