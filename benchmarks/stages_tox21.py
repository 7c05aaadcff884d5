"""Tox21 two-stage recipe vs training from scratch on the fine-tuning tasks, 3 seeds.

``examples/stages/tox21_pretrain_finetune.yaml``: multi-task pre-training on 9 Tox21 tasks (Muppet
loss scaling), then fine-tuning of the trunk with fresh heads on SR-ATAD5, SR-HSE and SR-p53.
The baseline trains the same model on those 3 tasks from a fresh trunk with the top-level recipe.
Each seed re-draws the random 80/10/10 split (the same for both stages and the baseline) and the
initialisation. Mean test ROC-AUC over the 3 fine-tuning tasks. Writes ``docs/results/stages.md``.

    python benchmarks/stages_tox21.py [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import torch
import yaml

from polytask._core import write_text
from polytask.jobs.train import run_train

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "stages" / "tox21_pretrain_finetune.yaml"


def _configs(seed: int, quick: bool) -> tuple[dict, dict]:
    staged = yaml.safe_load(EXAMPLE.read_text())
    staged["seed"] = seed
    for section in [staged["data"], *(s["data"] for s in staged["stages"])]:
        section["split"] = dict(section["split"], seed=seed)
    if quick:
        for s in staged["stages"]:
            s["epochs"] = 1
        staged["train"]["epochs"] = 1
    scratch = {k: copy.deepcopy(v) for k, v in staged.items() if k != "stages"}
    scratch["data"] = copy.deepcopy(staged["stages"][-1]["data"])
    return staged, scratch


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "stages_tox21")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 epoch per stage (smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        staged, scratch = _configs(seed, args.quick)
        reports = {}
        for name, cfg in (("scratch", scratch), ("stages", staged)):
            path = args.out / f"{name}{seed}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            reports[name] = run_train(
                path, args.out / f"{name}{seed}", overwrite=True, progress=False
            )
        pre = reports["stages"]["stages"][0]["means"]["test"]["roc_auc"]
        row = (
            seed,
            reports["scratch"]["means"]["test"]["roc_auc"],
            reports["stages"]["means"]["test"]["roc_auc"],
            pre,
        )
        rows.append(row)
        print(
            f"seed {seed}: scratch {row[1]:.4f}  pre-train → fine-tune {row[2]:.4f}  (pre-training tasks {pre:.4f})",
            flush=True,
        )
    command = "python benchmarks/stages_tox21.py --seeds " + " ".join(map(str, args.seeds))
    command += " --quick" if args.quick else ""
    lines = [
        "# Multi-stage recipes",
        "",
        "## Tox21: pre-train on 9 tasks, fine-tune on 3 (mean test ROC-AUC over SR-ATAD5, SR-HSE, SR-p53)",
        "",
        f"Command: `{command}` (recipe: `examples/stages/tox21_pretrain_finetune.yaml`; baseline:",
        "the same model and top-level recipe on the 3 tasks from a fresh trunk; random 80/10/10 split",
        f"re-drawn per seed; {args.threads} thread(s)).",
        "",
        "| seed | from scratch | pre-train → fine-tune | pre-training stage (9 tasks) |",
        "|---|---|---|---|",
        *[f"| {s} | {a:.4f} | {b:.4f} | {p:.4f} |" for s, a, b, p in rows],
        f"| **mean ± std** | **{_ms([r[1] for r in rows])}** | **{_ms([r[2] for r in rows])}** | {_ms([r[3] for r in rows])} |",
        "",
    ]
    write_text(REPO / "docs" / "results" / "stages.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
