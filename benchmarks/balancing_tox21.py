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

from _balancing_runs import REPO, parse_args, per_task_table, recipe, run_grid, table, write_doc
from polytask.tasks.data import TOX21_TASKS

EPOCHS = 10


def main() -> None:
    args = parse_args(__doc__ or "", EPOCHS)
    config: dict[str, Any] = {
        "seed": 0,  # each seed sets the seed and the split seed
        "data": {
            "source": "tox21",
            "featurizer": {"kind": "ecfp", "radius": 2, "bits": 2048},
            "split": {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": 0},
        },
        "tasks": [
            {"name": t, "kind": "binary", "metrics": ["roc_auc", "pr_auc"]} for t in TOX21_TASKS
        ],
        **recipe(args.epochs, "mean:roc_auc"),
    }
    grid = run_grid(args, "tox21", config, ["roc_auc", "pr_auc"])
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
    "The runs were trained by the commands below (seeds 0 and 1 several at once, one thread "
    "each, while other jobs loaded the machine; seed 2 on a quieter machine: wall times are "
    "indicative, not a timing benchmark, and differ ~5× between seeds); the table was then "
    "written from the cached reports by the command at the top (`--cached-only` trains "
    "nothing).",
    "",
    "```",
    "python benchmarks/balancing_tox21.py --epochs 10 --exact upgrad   # seed 0 features runs; "
    "stopped there (cached runs are reused)",
    "python benchmarks/balancing_tox21.py --epochs 10 --seeds 1 --methods <all but db_mtl> "
    "--no-write",
    "python benchmarks/balancing_tox21.py --epochs 10 --seeds 1 --methods db_mtl --no-write",
    "python benchmarks/balancing_tox21.py --epochs 10 --seeds 0 1 --methods upgrad nash_mtl "
    "--exact upgrad nash_mtl --no-write",
    "python benchmarks/balancing_tox21.py --epochs 10 --seeds 2 --methods <all> --no-write",
    "python benchmarks/balancing_tox21.py --epochs 10 --seeds 2 --methods upgrad nash_mtl "
    "--exact upgrad nash_mtl --no-write",
    "```",
    "",
    "## Reading",
    "",
    "* Every method beats the single-task baselines here (Δm −4 to −10 on average). That is "
    "mostly the baselines' weakness, not balancing: with this short recipe a single-task ECFP "
    "MLP on a task with 3–5 % positives is poor (see NR-PPAR-gamma, NR-ER-LBD, NR-Aromatase in "
    "the per-task table), and sharing the trunk fixes most of it.",
    "* The differences between methods are NOT resolved by this budget. Mean test ROC-AUC spans "
    "0.800–0.806; the ranking is driven by PR-AUC, and PR-AUC depends on which validation the "
    "selection keeps. On seed 2 the runs split into two groups by where early stopping landed: "
    "those that kept step 125 (of 200) have PR-AUC ≈ 0.39–0.41 and Δm ≈ −2 to −6, those that "
    "kept step 200 (of 250) have PR-AUC ≈ 0.43–0.45 and Δm ≈ −11 to −15. FAMO, Nash-MTL, "
    "FairGrad, GradVac, PCGrad, UW, DualProj and GradNorm fell in the first group on seed 2 and "
    "so average behind EW, although FAMO, Nash-MTL, FairGrad, GradVac and PCGrad beat EW on "
    "seeds 0 and 1. Read 'Δm − EW, same seed' with its std: most stds are larger than the means.",
    "* Robust over the three seeds (see the generated list below): Aligned-MTL, MGDA, ConFIG, "
    "IMTL-G and CAGrad beat EW on every seed; RLW, GradDrop, GradNorm, DualProj and UPGrad "
    "(`features`) lose to EW on every seed. These are small effects (0.5–2 points of Δm).",
    "* UW, DWA and IMTL-L track EW closely where they keep the same checkpoint: under Adam a "
    "common scale on the loss barely changes the update, and their weights stay close to "
    "uniform over 125–250 steps.",
    "* `exact` vs `features` (check rows for UPGrad and Nash-MTL): `exact` uses per-task "
    "gradients of all 1.2 M trunk parameters instead of the 256-d representation. On seeds 0 "
    "and 1 both did better in `exact` (UPGrad Δm −6.47 vs −5.32, Nash-MTL −7.37 vs −6.93); on "
    "seed 2 UPGrad `exact` kept step 125 and fell far behind its `features` run (−3.96 vs "
    "−11.31) while Nash-MTL was level (−6.25 vs −5.98). No consistent effect of the mode at "
    "this budget. `exact` costs about 2–10× the wall time of `features` here.",
    "* DB-MTL runs in `exact` only and costs 8–15× EW per run here (a [12, 1.2 M] Jacobian and "
    "its EMA every step).",
    "* Published shape (FAMO paper, QM9, graph networks: Nash-MTL and FAMO best Δm, EW worst): "
    "not reproduced. Nash-MTL and FAMO are in the middle and, averaged over three seeds, "
    "behind EW; EW sits mid-table, not last. Different data (Tox21, binary, sparse labels), "
    "model (ECFP MLP), a short budget, and differences within selection noise.",
]

if __name__ == "__main__":
    main()
