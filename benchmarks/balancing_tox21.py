"""Tox21: every balancing method vs single-task baselines (test ROC-AUC / PR-AUC, Δm, Δp).

The bundled Tox21 (7,831 molecules, 12 binary tasks, missing labels masked), ECFP4 2048 bits,
random 80/10/10 split re-drawn by each seed (the seed also sets the initialisation). Every
method of ``BALANCING_METHODS`` trains the same MLP with the same recipe; the single-task
baselines (one model per task, same recipe) are trained once per seed. Gradient methods run in
``features`` mode (MGDA-UB: per-task gradients at the shared representation), DB-MTL in
``exact`` (its only mode). Per-run reports are cached under ``.bench/balancing_tox21/``.
Writes ``docs/results/balancing_tox21.md``.

    python benchmarks/balancing_tox21.py [--methods ew upgrad ...] [--seeds 0 1 2]
        [--epochs 10] [--exact upgrad] [--quick]
"""

from __future__ import annotations

import sys
from typing import Any

from _balancing_runs import REPO, parse_args, per_task_table, run_grid, table, write_doc
from polytask.tasks.data import TOX21_TASKS

EPOCHS = 10


def recipe(epochs: int) -> dict[str, Any]:
    return {
        "model": {"trunk": {"kind": "mlp", "hidden": [512, 256], "dropout": 0.2}},
        "train": {
            "epochs": epochs,
            "batch_size": 256,
            "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-2},
            "scheduler": {"name": "constant"},
            "grad_clip": 5.0,
            "selection": "mean:roc_auc",
            "patience": 3,
        },
    }


def main() -> None:
    args = parse_args(__doc__ or "", EPOCHS)

    def make_config(seed: int, balancing: dict[str, Any] | None) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "seed": seed,
            "data": {
                "source": "tox21",
                "featurizer": {"kind": "ecfp", "radius": 2, "bits": 2048},
                "split": {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": seed},
            },
            "tasks": [
                {"name": t, "kind": "binary", "metrics": ["roc_auc", "pr_auc"]} for t in TOX21_TASKS
            ],
            **recipe(args.epochs),
        }
        if balancing is not None:
            cfg["balancing"] = balancing
        return cfg

    grid = run_grid(args, "tox21", make_config, ["roc_auc", "pr_auc"])
    rows = table(grid, {"roc_auc": "test ROC-AUC", "pr_auc": "test PR-AUC"})
    print("\n".join(rows))
    if args.no_write:
        return
    cmd = "python " + " ".join(["benchmarks/balancing_tox21.py", *sys.argv[1:]])
    intro = [
        f"Command: `{cmd}`, one process, `torch.set_num_threads({args.threads})`, on a shared "
        "2-core CPU (other jobs running: wall times are indicative only).",
        "",
        "* Data: the bundled Tox21, 7,831 molecules, 12 binary tasks (missing labels masked), "
        "ECFP4 (Morgan radius 2, 2048 bits). Random 80/10/10 split drawn by each seed "
        f"(seeds {', '.join(map(str, args.seeds))}); the seed also sets the initialisation.",
        f"* Recipe (every run): MLP trunk [512, 256], ReLU, dropout 0.2, one stacked linear head; "
        f"AdamW lr 1e-3, weight decay 1e-2, constant lr, batch 256, {args.epochs} epochs "
        "(25 steps each), gradient clip 5.0; validation every epoch, model selected on mean "
        "validation ROC-AUC, early stop after 3 validations without improvement; BCE loss.",
        "* Baselines: one single-task model per task per seed with the same recipe "
        "(`run_train(..., single_task=True)`).",
        "* Δm = −100/K Σ g over the K = 24 (task, metric) pairs (ROC-AUC and PR-AUC of each task), "
        "g = (M − B)/|B| against the same seed's baselines: lower is better. Δp = LibMTL's "
        "per-task-first average: higher is better. With two metrics per task for every task, "
        "Δp = −Δm.",
        "* Modes: gradient methods (Gramian weightings, GradDrop) and GradNorm in `features` mode "
        "(per-task gradients at the 256-d shared representation, MGDA-UB); DB-MTL in `exact` "
        "(its only mode); rows marked `exact` for other methods are a check of the mode. "
        "`every: 1` and default options for every method.",
        "* s / run: wall seconds of the whole run (training + validations), mean over seeds.",
        "",
        "## Results (test split, mean ± std over seeds; sorted by mean Δm)",
    ]
    tables = [
        *rows,
        "",
        "## Per-task test ROC-AUC (mean over seeds)",
        "",
        *per_task_table(grid, "roc_auc", ["ew", "famo", "nash_mtl", "upgrad"]),
        *NOTES,
    ]
    write_doc(
        REPO / "docs" / "results" / "balancing_tox21.md",
        "Balancing methods on Tox21 (12 binary tasks, ECFP4 MLP)",
        intro,
        grid,
        tables,
    )


NOTES = [
    "",
    "## How the numbers were produced",
    "",
    "Seeds 0 and 1 only: a third seed did not fit the time available on the shared CPU. The "
    "runs were trained by the commands below (several at once, one thread each, while other "
    "jobs loaded the machine: wall times are indicative, not a timing benchmark); the table was "
    "then written from the cached reports by the command at the top (`--cached-only` trains "
    "nothing).",
    "",
    "```",
    "python benchmarks/balancing_tox21.py --epochs 10 --exact upgrad   # seed 0 features runs; stopped "
    "there (cached runs are reused)",
    "python benchmarks/balancing_tox21.py --epochs 10 --seeds 1 --methods <all but db_mtl> "
    "--no-write",
    "python benchmarks/balancing_tox21.py --epochs 10 --seeds 1 --methods db_mtl --no-write",
    "python benchmarks/balancing_tox21.py --epochs 10 --seeds 0 1 --methods upgrad nash_mtl "
    "--exact upgrad nash_mtl --no-write",
    "```",
    "",
    "## Reading",
    "",
    "* Every method beats the single-task baselines here, by 4–7 points of Δm on average. That "
    "is mostly the baselines' weakness, not balancing: with this short recipe a single-task "
    "ECFP MLP on a task with 3–5 % positives is poor (see NR-PPAR-gamma, NR-ER-LBD, "
    "NR-Aromatase in the per-task table), and sharing the trunk fixes most of it.",
    "* The std of Δm over seeds (3–5 points) is mostly the baselines changing with the split; "
    "the column 'Δm − EW, same seed' compares each method with EW on the same split and is the "
    "one to read. Differences between methods are small: mean test ROC-AUC spans 0.795–0.802, "
    "and the ranking is driven mostly by PR-AUC.",
    "* Methods that lose to EW on both seeds (positive 'Δm − EW, same seed'): RLW, GradDrop, "
    "GradNorm, and UPGrad and DualProj in `features` mode (by 0.1–0.4 points); GLS loses on "
    "average, one seed each way. The best group (DB-MTL, Nash-MTL, Aligned-MTL, FairGrad, "
    "MGDA, GradVac, FAMO) gains 1.2–2.3 points over EW on the same split.",
    "* UW, DWA and IMTL-L land within a few tenths of EW: under Adam a common scale on the loss "
    "barely changes the update, and their weights stay close to uniform over 175–250 steps.",
    "* `exact` vs `features` (check rows for UPGrad and Nash-MTL, both seeds): `exact` uses "
    "per-task gradients of all 1.2 M trunk parameters instead of the 256-d representation. "
    "Both methods do better in `exact` on both seeds (UPGrad: Δm −6.47 vs −5.32, from behind "
    "EW to ahead of it; Nash-MTL: −7.37 vs −6.93), at about 2–3× the wall time on this "
    "machine. So the `features` approximation costs UPGrad its place here.",
    "* DB-MTL runs in `exact` only and costs 8–15× EW per run here (a [12, 1.2 M] Jacobian and "
    "its EMA every step).",
    "* Published shape (FAMO paper, QM9, graph networks: Nash-MTL and FAMO best Δm, EW worst): "
    "not reproduced. Nash-MTL and FAMO beat EW on the same seeds but are not the best, and EW "
    "sits in the lower-middle of the ranking, not last. Different data (Tox21, binary, sparse "
    "labels), model (ECFP MLP) and a short budget; two seeds.",
]

if __name__ == "__main__":
    main()
