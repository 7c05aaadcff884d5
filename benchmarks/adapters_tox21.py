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
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

from moe_tox21 import _ms, _verdict
from polytask._core import write_text
from polytask.build.data import prepare_data
from polytask.build.model import make_model
from polytask.config.load import load_config
from polytask.config.schema import TrainConfig
from polytask.jobs.train import run_train
from polytask.models import AdapterTrunk, MultiTaskModel
from polytask.tasks.data import TensorData

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "adapters_tox21.yaml"
BASE, ADAPTERS, WIDE = "shared-bottom MLP", "adapters", "shared-bottom MLP, parameter-matched"
SMALL, BASE_NO_BN, NO_BN = "adapters, bottleneck 8", "shared-bottom MLP, no BN", "adapters, no BN"
WIDE_HIDDEN = [768, 384]
#: (adapters variant, the shared-bottom model it is paired with)
PAIRS = [(ADAPTERS, BASE), (ADAPTERS, WIDE), (SMALL, BASE), (NO_BN, BASE_NO_BN)]


def _configs(seed: int, out: Path, ablation: bool) -> dict[str, Path]:
    base = yaml.safe_load(EXAMPLE.read_text())
    ad = dict(base, seed=seed)
    ad["data"] = dict(base["data"], split=dict(base["data"]["split"], seed=seed))
    t = ad["model"]["trunk"]
    common = {"kind": "mlp", "dropout": t["dropout"], "batch_norm": t["batch_norm"]}
    mlp = dict(ad, model={"trunk": {**common, "hidden": t["hidden"]}})
    wide = dict(ad, model={"trunk": {**common, "hidden": WIDE_HIDDEN}})
    runs = [(BASE, "mlp", mlp), (ADAPTERS, "adapters", ad), (WIDE, "wide", wide)]
    if ablation:
        no_bn = {"trunk": {**common, "hidden": t["hidden"], "batch_norm": False}}
        runs += [
            (SMALL, "adapters_r8", dict(ad, model={"trunk": {**t, "bottleneck": 8}})),
            (BASE_NO_BN, "mlp_nobn", dict(ad, model=no_bn)),
            (NO_BN, "adapters_nobn", dict(ad, model={"trunk": {**t, "batch_norm": False}})),
        ]
    paths = {}
    for name, stem, cfg in runs:
        path = out / f"{stem}_seed{seed}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        paths[name] = path
    return paths


def _load(config_path: Path, run: Path | None) -> tuple[MultiTaskModel, Any]:
    config = load_config(TrainConfig, config_path)
    prepared = prepare_data(config, config_path.parent)
    model = make_model(config, prepared.taskset, prepared.in_dim)
    if run is not None:
        model.load_state_dict(load_file(str(run / "checkpoints" / "best" / "model.safetensors")))
    return model, prepared


def _counts(model: MultiTaskModel, num_tasks: int) -> dict[str, int]:
    """Shared parameters and task-specific parameters per task (adapters, norms, head)."""
    shared = sum(p.numel() for p in model.shared_parameters())
    task = sum(p.numel() for p in model.task_parameters())
    return {"shared": shared, "per_task": task // num_tasks, "total": shared + task}


@torch.no_grad()
def _adapter_size(config_path: Path, run: Path) -> list[float]:
    """Per layer, mean over tasks of ``‖adapter(a) − a‖ / ‖a‖`` on the test molecules."""
    model, prepared = _load(config_path, run)
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
    args.out.mkdir(parents=True, exist_ok=True)
    auc: dict[str, list[float]] = {}
    secs: dict[str, list[float]] = {}
    steps: dict[str, list[int]] = {}
    counts: dict[str, dict[str, int]] = {}
    per_task: dict[str, dict[str, list[float]]] = {}
    sizes: list[list[float]] = []
    for seed in args.seeds:
        for name, path in _configs(seed, args.out, args.ablation).items():
            run = args.out / path.stem
            report = run_train(path, run, overwrite=True, progress=False)
            auc.setdefault(name, []).append(report["means"]["test"]["roc_auc"])
            secs.setdefault(name, []).append(report["training"]["seconds"])
            steps.setdefault(name, []).append(report["training"]["steps"])
            for task, m in report["metrics"]["test"].items():
                per_task.setdefault(task, {}).setdefault(name, []).append(m["roc_auc"])
            if name not in counts:
                model, prepared = _load(path, None)
                counts[name] = _counts(model, len(prepared.taskset))
            if name == ADAPTERS:
                sizes.append(_adapter_size(path, run))
            print(f"seed {seed} {name}: test ROC-AUC {auc[name][-1]:.4f}", flush=True)
    names = list(auc)
    pairs = [(a, b) for a, b in PAIRS if a in auc and b in auc]
    diffs = {(a, b): [y - x for x, y in zip(auc[b], auc[a])] for a, b in pairs}
    ex = yaml.safe_load(EXAMPLE.read_text())
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
            f"{counts[n]['total']:,} | **{_ms(auc[n])}** | "
            f"{', '.join(f'{v:.4f}' for v in auc[n])} | {statistics.mean(steps[n]):.0f} | "
            f"{statistics.mean(secs[n]):.0f} |"
            for n in names
        ],
        "",
        *[
            f"Paired difference {a} − {b} (same split and seed): "
            f"{', '.join(f'{d:+.4f}' for d in diffs[a, b])} → {_ms(diffs[a, b])} "
            f"({sum(d > 0 for d in diffs[a, b])} of {len(diffs[a, b])} seeds in favour of "
            f"adapters). {_verdict(diffs[a, b], a, b)}\n"
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
