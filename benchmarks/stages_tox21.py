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
from pathlib import Path

import torch
import yaml

from polytask._core import write_text
from polytask.eval import format_mean_std
from polytask.jobs.sweep import run_sweep

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "stages" / "tox21_pretrain_finetune.yaml"


def _variants(quick: bool) -> tuple[dict, dict[str, dict[str, object]]]:
    """The staged config and name → its overrides: ``scratch`` drops the stages and trains on
    the last stage's data (each seed then sets the split seed of every data section)."""
    staged = yaml.safe_load(EXAMPLE.read_text())
    if quick:
        for s in staged["stages"]:
            s["epochs"] = 1
        staged["train"]["epochs"] = 1
    scratch = {"stages": None, "data": copy.deepcopy(staged["stages"][-1]["data"])}
    return staged, {"scratch": scratch, "stages": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "stages_tox21")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 epoch per stage (smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    staged, variants = _variants(args.quick)
    result = run_sweep(staged, args.out, seeds=args.seeds, points=list(variants.values()),
                       base_dir=EXAMPLE.parent, baselines=False)  # fmt: skip
    rows = []
    for seed in args.seeds:
        scratch, stages = (result.cell(p, seed) for p in variants.values())
        assert scratch is not None and stages is not None and stages.report.stages
        pre = stages.report.stages[0]["means"]["test"]["roc_auc"]
        row = (seed, scratch.value("roc_auc"), stages.value("roc_auc"), pre)
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
        f"| **mean ± std** | **{format_mean_std([r[1] for r in rows])}** | **{format_mean_std([r[2] for r in rows])}** | {format_mean_std([r[3] for r in rows])} |",
        "",
    ]
    write_text(REPO / "docs" / "results" / "stages.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
