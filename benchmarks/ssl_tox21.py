"""Tox21 with self-supervised auxiliary tasks, at 10% and 100% of the training labels.

Variants (same trunk, budget and selection rule; 3 seeds, each re-drawing split and init):

* ``supervised``: the 12 Tox21 tasks only.
* ``+ masked recon``: plus masked-bit reconstruction on every training molecule (``auxiliary:``).
* ``+ contrastive``: plus InfoNCE between two bit-dropout views of every training molecule.
* ``pre-train → fine-tune``: the trunk is first trained on unlabeled molecules (every SMILES in
  ``shared/data/moleculenet`` minus the Tox21 val/test molecules of that seed) with masked
  reconstruction + contrastive, then fine-tuned on the labelled Tox21 rows with fresh heads.

Label drop: for the 10% setting, 90% of the training rows lose all their labels (NaN, seeded);
their inputs stay, so the self-supervised tasks still see every training molecule. Validation
labels are kept whole (the selection rule is mean validation ROC-AUC over the 12 tasks, auxiliary
tasks excluded). Writes the ``tox21_aux`` section of ``docs/results/ssl.md``.

    python benchmarks/ssl_tox21.py [--quick] [--seeds 0 1 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask._core import seed_everything
from polytask.build.data import PreparedData, prepare_data
from polytask.build.loaders import make_loader
from polytask.build.model import make_model
from polytask.build.optim import make_optimizer
from polytask.config.load import validate
from polytask.config.schema import TrainConfig
from polytask.eval import SelectionRule, evaluate, format_mean_std, paired_difference
from polytask.eval.report import metric_means
from polytask.tasks.data import TensorData, ecfp, load_tox21, random_split
from polytask.tasks.data.unlabeled import canonical, qm9_smiles, read_unlabeled_smiles
from polytask.train import Trainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks._sections import write_section  # noqa: E402

MOLECULENET = REPO.parent / "shared" / "data" / "moleculenet"
BITS = 2048
RECON = {"name": "recon", "pretext": "masked_features", "mask_ratio": 0.15, "weight": 0.5}
VIEWS = {
    "name": "views", "pretext": "contrastive", "dim": 64, "temperature": 0.2, "weight": 0.5,
    "augment": [{"kind": "bit_dropout", "p": 0.2}],
}  # fmt: skip
VARIANTS = ("supervised", "+ masked recon", "+ contrastive", "pre-train → fine-tune")


def base_config(seed: int, aux: list[dict[str, Any]] | None) -> TrainConfig:
    cfg = {
        "seed": seed,
        "data": {
            "source": "tox21",
            "featurizer": {"kind": "ecfp", "radius": 2, "bits": BITS},
            "split": {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": seed},
        },
        "model": {"trunk": {"hidden": [512, 256], "dropout": 0.3}},
        "train": {
            "steps": 1, "batch_size": 128, "grad_clip": 5.0,
            "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
        },
        "auxiliary": aux,
    }  # fmt: skip
    return validate(TrainConfig, cfg, "ssl_tox21")


def drop_labels(prepared: PreparedData, fraction: float, seed: int) -> PreparedData:
    """Keep the labels of ``fraction`` of the training rows (seeded); NaN for the others."""
    train = prepared.splits["train"]
    assert isinstance(train, TensorData)
    if fraction >= 1.0:
        return prepared
    n = len(train)
    g = torch.Generator().manual_seed(10_000 + seed)
    drop = torch.randperm(n, generator=g)[round(fraction * n) :]
    targets = {}
    for k, y in train.targets.items():
        y = y.clone()
        y[drop] = float("nan")
        targets[k] = y
    splits = dict(prepared.splits)
    splits["train"] = TensorData(train.inputs, targets, train.name)
    return replace(prepared, splits=splits)


def fit(
    config: TrainConfig, prepared: PreparedData, steps: int, eval_every: int, trunk: Any = None
) -> dict[str, Any]:
    seed_everything(config.seed, True)
    taskset = prepared.taskset
    model = make_model(config, taskset, prepared.in_dim)
    if trunk is not None:
        model.load_state_dict(trunk, strict=False)
    optimizer = make_optimizer(config, list(model.parameters()))
    loader = make_loader(config, prepared, taskset)
    rule = SelectionRule.parse("mean:roc_auc", taskset)
    trainer = Trainer(
        model, taskset, loader, optimizer, max_steps=steps, val_data=prepared.splits["val"],
        selection=rule, eval_every=eval_every, grad_clip=config.train.grad_clip, progress=False,
    )  # fmt: skip
    trainer.fit()
    test = evaluate(model, taskset, {"test": prepared.splits["test"]})["test"]
    aux = {t.name: test[t.name] for t in taskset.tasks if t.auxiliary}
    return {"roc_auc": metric_means(taskset, test)["roc_auc"], "aux": aux}


class _NoBatches:
    """A base loader with nothing in it: the pretexts draw from the unlabeled stream alone."""

    steps_per_epoch = 1

    def batch(self, step: int) -> list[Any]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Any) -> None:
        return None


def unlabeled_pool(qm9: bool = False) -> tuple[list[str], np.ndarray]:
    found = read_unlabeled_smiles([MOLECULENET], extra=qm9_smiles() if qm9 else ())
    return found.smiles, ecfp(found.smiles, 2, BITS, where="moleculenet").astype(np.float32)


def pretrain(seed: int, pool: tuple[list[str], np.ndarray], steps: int) -> dict[str, Any]:
    """Trunk trained on unlabeled molecules (minus this seed's Tox21 val/test molecules)."""
    from polytask.build.ssl import build_auxiliary
    from polytask.models import build_model, mlp_trunk
    from polytask.tasks import TaskSet
    from polytask.tasks.ssl import PretextLoader

    smiles = load_tox21()[0]
    split = random_split(len(smiles), (0.8, 0.1, 0.1), seed)
    held = {canonical(smiles[i]) for k in ("val", "test") for i in split[k]}
    keep = [i for i, s in enumerate(pool[0]) if s not in held]
    data = TensorData(torch.from_numpy(pool[1][keep]), {}, "unlabeled")
    config = base_config(seed, [RECON, VIEWS])
    tasks, pretexts = build_auxiliary(list(config.auxiliary or []), data.inputs, "pretrain")
    taskset = TaskSet(tasks)
    seed_everything(seed, True)
    t = config.model.trunk
    model = build_model(mlp_trunk(BITS, t.hidden, t.dropout), taskset.tasks, t.hidden[-1])
    optimizer = make_optimizer(config, list(model.parameters()))
    loader = PretextLoader(_NoBatches(), pretexts, seed=seed, unlabeled=data, batch_size=256)
    Trainer(model, taskset, loader, optimizer, max_steps=steps, grad_clip=5.0, progress=False).fit()
    return {
        "trunk": {k: v for k, v in model.state_dict().items() if k.startswith("trunk.")},
        "molecules": len(keep),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, tiny budgets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "ssl.md")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--qm9", action="store_true", help="add QM9's SMILES (qm9pack) to the pool")
    parser.add_argument("--section", default="tox21_aux", help="results section to write")
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v in args.variants]
    torch.set_num_threads(args.threads)
    seeds = args.seeds[:1] if args.quick else args.seeds
    steps = 20 if args.quick else args.steps
    pre_steps = 20 if args.quick else args.pretrain_steps
    eval_every = 10 if args.quick else 49  # Tox21's training split is 49 batches of 128
    start = time.perf_counter()
    pool = unlabeled_pool(args.qm9)
    print(f"unlabeled pool: {len(pool[0])} molecules ({time.perf_counter() - start:.0f} s)")
    scores: dict[tuple[float, str], list[float]] = {}
    aux: dict[tuple[float, str], list[dict[str, Any]]] = {}
    pool_sizes = []
    for seed in seeds:
        t0 = time.perf_counter()
        pre = pretrain(seed, pool, pre_steps)
        pool_sizes.append(pre["molecules"])
        print(f"seed {seed}: pre-trained on {pre['molecules']} molecules "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        for fraction in args.fractions:
            for variant in variants:
                t0 = time.perf_counter()
                extra = {"+ masked recon": [RECON], "+ contrastive": [VIEWS]}.get(variant)
                config = base_config(seed, extra)
                prepared = drop_labels(prepare_data(config, REPO), fraction, seed)
                trunk = pre["trunk"] if variant.startswith("pre-train") else None
                out = fit(config, prepared, steps, eval_every, trunk)
                scores.setdefault((fraction, variant), []).append(out["roc_auc"])
                aux.setdefault((fraction, variant), []).append(out["aux"])
                print(f"seed {seed} labels {fraction:.0%} {variant}: test ROC-AUC "
                      f"{out['roc_auc']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    total = time.perf_counter() - start
    lines = [
        f"## Tox21: auxiliary self-supervised tasks and unlabeled pre-training (`{args.section}`)",
        "",
        "Mean test ROC-AUC over the 12 Tox21 tasks, mean ± std over seeds "
        f"{', '.join(map(str, seeds))} (each seed re-draws the random 80/10/10 split, the label "
        "drop and the initialisation).",
        "",
        "| training labels | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for fraction in args.fractions:
        row = [format_mean_std(scores[(fraction, v)], empty="—") for v in variants]
        lines.append(f"| {fraction:.0%} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Paired difference to `supervised` (same seed, split and label drop), per seed and mean:",
        "",
        "| training labels | " + " | ".join(variants[1:]) + " |",
        "|---|" + "---|" * (len(variants) - 1),
    ]
    for fraction in args.fractions if variants[0] == VARIANTS[0] else ():
        ref = scores[(fraction, VARIANTS[0])]
        cells = []
        for v in variants[1:]:
            d = paired_difference(scores[(fraction, v)], ref)
            cells.append(" / ".join(f"{x:+.4f}" for x in d.differences) + f" (mean {d.mean:+.4f})")
        lines.append(f"| {fraction:.0%} | " + " | ".join(cells) + " |")
    lines += ["", "Self-supervised test metrics of the auxiliary tasks (first seed):", ""]
    for (fraction, variant), per in aux.items():
        if per and per[0]:
            vals = "; ".join(
                f"{name} " + ", ".join(f"{m} {v:.3f}" for m, v in ms.items())
                for name, ms in per[0].items()
            )
            lines.append(f"- {fraction:.0%} labels, {variant}: {vals}")
    cmd = "python benchmarks/ssl_tox21.py" + (" --quick" if args.quick else "")
    if not args.quick and (args.steps, args.pretrain_steps) != (300, 400):
        cmd += f" --steps {args.steps} --pretrain-steps {args.pretrain_steps}"
    if variants != list(VARIANTS):
        cmd += " --variants " + " ".join(f"'{v}'" for v in variants)
    if args.qm9:
        cmd += " --qm9"
    if args.section != "tox21_aux":
        cmd += f" --section {args.section}"
    pool_text = "every SMILES column of `shared/data/moleculenet`" + (
        " plus QM9's SMILES (`qm9pack`)" if args.qm9 else ""
    )
    lines += [
        "",
        f"Setup: ECFP4 {BITS} bits; trunk MLP 512-256 (dropout 0.3), linear heads; AdamW lr 1e-3, "
        f"weight decay 0.01, batch 128, {steps} steps per run (≈ {steps / 49:.0f} epochs of the "
        "full training split), validation every 49 steps, checkpoint with the best mean "
        "validation ROC-AUC (auxiliary tasks excluded). Label drop: the labels of a seeded "
        "(1 − fraction) of the training rows are set to NaN; validation and test labels are "
        "whole. Auxiliary tasks: masked-bit reconstruction (15% of the bits of each molecule "
        "set to 0, MSE on those bits, weight 0.5); contrastive: two views with 20% bit dropout, "
        "InfoNCE with τ = 0.2 on a 64-d projection, weight 0.5. Pre-training: both objectives "
        f"on {pre_steps} steps of 256 unlabeled molecules from {pool_text} "
        f"(canonical, deduplicated; {min(pool_sizes)}–"
        f"{max(pool_sizes)} molecules after removing that seed's Tox21 val/test molecules), "
        "with the Python API (`PretextLoader` on an unlabeled stream); fine-tuning loads the "
        "trunk only, heads fresh, same recipe as `supervised`.",
        "",
        f"Command: `{cmd}` (1 thread; {total / 60:.1f} min on this 2-core CPU shared with "
        "other jobs).",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:  # a smoke run does not overwrite the results page
        write_section(args.out, args.section, text, title="Self-supervised auxiliary tasks")


if __name__ == "__main__":
    main()
