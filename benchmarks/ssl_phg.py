"""Tox21 with two modalities (ECFP bits + RDKit 2-D descriptors), PHG-MAE style.

Per seed (the random 80/10/10 split and the initialisation are re-drawn):

1. **single**: a two-encoder model (mean fusion) trained on both modalities, no masking;
2. **PHG-MAE**: the same model trained with whole modalities masked at random per sample
   (``ModalityMaskLoader``, p = 0.35) plus two auxiliary reconstruction tasks (descriptors from
   what is present, ECFP bits from what is present) in the same loop;
3. **mask ensemble** of 2.: mean class probability over 8 random modality masks (the first one
   unmasked);
4. **student**: a < 1M-parameter two-encoder model distilled from 3. on unlabeled inputs (the
   training split's molecules plus the other MoleculeNet tables' molecules, Tox21 molecules
   excluded), no labels; and, for reference, the same small model trained on the labels.

Also: inference with one modality missing. Descriptors are standardised with training-split
statistics only. Writes section ``tox21_phg`` of ``docs/results/ssl.md``.

    python benchmarks/ssl_phg.py [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask._core import seed_everything, write_text
from polytask.eval import SelectionRule, evaluate, format_mean_std, mean_std, seed_scatter
from polytask.models import MultiTaskModel, build_heads
from polytask.models.ensemble import MaskEnsemble
from polytask.models.multimodal import multimodal_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TOX21_TASKS, JointLoader, TensorData, ecfp, load_tox21, random_split
from polytask.tasks.data.descriptors import Standardizer, descriptors
from polytask.tasks.data.unlabeled import read_unlabeled_smiles
from polytask.tasks.ssl.modality_mask import ModalityMaskLoader
from polytask.train import Trainer
from polytask.train.distill import count_parameters, distill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sections import write_section

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "moleculenet"
BITS, P_MASK, N_MASKS = 2048, 0.35, 8
SUP = TaskSet(Task(t, "binary") for t in TOX21_TASKS)
KINDS = {t: "binary" for t in TOX21_TASKS}


def _features(smiles: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return ecfp(smiles, 2, BITS).astype(np.float32), descriptors(smiles, where="tox21")


def _model(widths: dict[str, int], hidden: int, post: int, dropout: float, tasks: TaskSet) -> Any:
    trunk = multimodal_trunk(widths, (hidden,), post=(post,), dropout=dropout)
    return MultiTaskModel(trunk, build_heads(tasks.tasks, trunk.out_dim))


def _mean_auc(model: nn.Module, data: TensorData) -> float:
    scores = evaluate(model, SUP, {"test": data})["test"]
    return statistics.mean(scores[t]["roc_auc"] for t in TOX21_TASKS)


def _train(model: Any, tasks: TaskSet, loader: Any, val: Any, epochs: int, lr: float) -> float:
    steps = epochs * loader.steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + np.cos(np.pi * min(s / steps, 1.0)))
    )
    start = time.perf_counter()
    Trainer(
        model, tasks, loader, opt, max_steps=steps, scheduler=sched, val_data=val,
        selection=SelectionRule.parse("mean:roc_auc", tasks), patience=5, grad_clip=5.0,
        progress=False,
    ).fit()  # fmt: skip
    return time.perf_counter() - start


def run_seed(seed: int, args: argparse.Namespace, feats: dict[str, Any]) -> dict[str, float]:
    x_ecfp, x_desc, labels, unl_ecfp, unl_desc = (
        feats[k] for k in ("ecfp", "desc", "labels", "unl_ecfp", "unl_desc")
    )
    split = random_split(len(x_ecfp), (0.8, 0.1, 0.1), seed)
    std = Standardizer.fit(x_desc[split["train"]])  # training rows only
    inputs = {"ecfp": torch.from_numpy(x_ecfp), "desc": torch.from_numpy(std(x_desc))}
    full = TensorData(inputs, {t: torch.from_numpy(labels[t]) for t in TOX21_TASKS}, "tox21")
    parts = {k: full.select(torch.from_numpy(v)) for k, v in split.items()}
    widths = {"ecfp": BITS, "desc": x_desc.shape[1]}
    rec = TaskSet(
        [
            *SUP.tasks,
            Task("rec_desc", "reconstruction", num_classes=widths["desc"], auxiliary=True),
            Task("rec_ecfp", "reconstruction", num_classes=BITS, auxiliary=True),
        ]
    )
    out: dict[str, float] = {}
    ep, bs = args.epochs, 128

    # 1. single model, both modalities, no masking
    seed_everything(seed)
    single = _model(widths, args.hidden, args.post, 0.3, SUP)
    out["t_single"] = _train(
        single, SUP, JointLoader(parts["train"], bs, seed=seed), parts["val"], ep, 1e-3
    )
    # 2. PHG-MAE style: modality masking + reconstruction of the masked modalities, one loop
    seed_everything(seed)
    phg = _model(widths, args.hidden, args.post, 0.3, rec)
    val, v = parts["val"], parts["val"].inputs
    assert isinstance(v, dict)
    val_map: dict[str, TensorData] = {t: val for t in TOX21_TASKS}
    val_map["rec_desc"] = TensorData({"ecfp": v["ecfp"]}, {"rec_desc": v["desc"]})
    val_map["rec_ecfp"] = TensorData({"desc": v["desc"]}, {"rec_ecfp": v["ecfp"]})
    masked = ModalityMaskLoader(
        JointLoader(parts["train"], bs, seed=seed), ("ecfp", "desc"), P_MASK, seed,
        {"rec_desc": "desc", "rec_ecfp": "ecfp"},
    )  # fmt: skip
    out["t_phg"] = _train(phg, rec, masked, val_map, ep, 1e-3)
    test = parts["test"]
    t_in = test.inputs
    assert isinstance(t_in, dict)
    only = {m: TensorData({m: t_in[m]}, test.targets) for m in ("ecfp", "desc")}
    for name, model in (("single", single), ("phg", phg)):
        out[name] = _mean_auc(model, test)
        for m, d in only.items():
            out[f"{name}_{m}_only"] = _mean_auc(model, d)
    # 3. mask ensemble of the PHG model
    ens = MaskEnsemble(phg, KINDS, n=N_MASKS, p=P_MASK, seed=seed)
    out["ensemble"] = _mean_auc(ens, test)
    # 4. student distilled from the ensemble on unlabeled inputs; and the same small model on labels
    unl = {
        "ecfp": torch.cat([inputs["ecfp"][split["train"]], torch.from_numpy(unl_ecfp)]),
        "desc": torch.cat([inputs["desc"][split["train"]], torch.from_numpy(std(unl_desc))]),
    }
    seed_everything(seed)
    student = _model(widths, args.student, args.student, 0.1, SUP)
    res = distill(
        ens, student, unl, KINDS, steps=args.distill_steps, batch_size=256, lr=1e-3,
        weight_decay=0.01, seed=seed, progress=False, teacher_batch_size=512,
    )  # fmt: skip
    out["student"] = _mean_auc(student, test)
    out["t_student"] = res.seconds
    out["student_params"] = float(res.student_params)
    out["teacher_params"] = float(count_parameters(phg))
    out["unlabeled"] = float(len(unl["ecfp"]))
    seed_everything(seed)
    small = _model(widths, args.student, args.student, 0.1, SUP)
    _train(small, SUP, JointLoader(parts["train"], bs, seed=seed), parts["val"], ep, 1e-3)
    out["small"] = _mean_auc(small, test)
    return out


def _cmp(col: dict[str, list[float]], a: str, b: str) -> tuple[float, bool]:
    """Mean difference a − b and whether it exceeds the seed noise (the larger std)."""
    d = mean_std(col[a])[0] - mean_std(col[b])[0]
    return d, abs(d) > seed_scatter(col[a], col[b])


SEEDS = 3


def _say(d: float, real: bool) -> str:
    if SEEDS < 2:
        return f"{d:+.4f} (one seed: no noise estimate)"
    return f"{d:+.4f} ({'beyond' if real else 'within'} seed noise)"


def _reading(col: dict[str, list[float]], kept: float) -> list[str]:
    lines = []
    d, r = _cmp(col, "phg", "single")
    lines.append(f"- With both modalities, PHG-MAE training vs the single model: {_say(d, r)}.")
    for m, other in (("ecfp", "descriptors"), ("desc", "ECFP")):
        ds, _ = _cmp(col, f"single_{m}_only", "single")
        dp, _ = _cmp(col, f"phg_{m}_only", "phg")
        d, r = _cmp(col, f"phg_{m}_only", f"single_{m}_only")
        lines.append(
            f"- With the {other} missing at inference, the single model changes by {ds:+.4f} and the "
            f"PHG-MAE model by {dp:+.4f}; PHG-MAE vs single there: {_say(d, r)}."
        )
    d, r = _cmp(col, "ensemble", "phg")
    d2, r2 = _cmp(col, "ensemble", "single")
    lines.append(
        f"- The mask ensemble vs its own PHG-MAE model: {_say(d, r)}; vs the single model: {_say(d2, r2)}."
    )
    d, r = _cmp(col, "student", "small")
    d3, r3 = _cmp(col, "student", "single")
    gain = statistics.mean(col["ensemble"]) - statistics.mean(col["single"])
    if gain <= 0:
        keep = (
            f"The ensemble has no gain over the single model to keep (ensemble − single = "
            f"{gain:+.4f}), so the kept fraction ({kept:+.2f}) has no meaning here"
        )
    elif not r2:
        keep = (
            f"It keeps {kept:+.2f} of the ensemble's gain, but that gain is within seed noise, "
            "so the fraction is not a stable number"
        )
    else:
        keep = f"It keeps {kept:+.2f} of the ensemble's gain"
    lines.append(
        f"- The distilled student vs the same small model trained on labels: {_say(d, r)}; "
        f"vs the single (large) model: {_say(d3, r3)}. {keep}."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--post", type=int, default=256)
    parser.add_argument("--student", type=int, default=192)
    parser.add_argument("--distill-steps", type=int, default=1500)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, tiny budgets")
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "ssl_phg")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.distill_steps = [0], 2, 100
        args.hidden, args.post, args.student = 128, 64, 32
        args.out = args.out / "quick"
    global SEEDS
    SEEDS = len(args.seeds)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    smiles, labels = load_tox21()
    if args.quick:
        smiles, labels = smiles[:1500], {k: v[:1500] for k, v in labels.items()}
    x_ecfp, x_desc = _features(smiles)
    tables = [
        p for p in sorted(DATA.glob("*.csv*")) if p.name.split(".")[0] not in ("tox21", "qm8")
    ]
    extra = read_unlabeled_smiles(tables, exclude=load_tox21()[0]).smiles if tables else []
    if args.quick:
        extra = extra[:300]
    unl_ecfp, unl_desc = _features(extra) if extra else (x_ecfp[:0], x_desc[:0])
    feat_s = time.perf_counter() - start
    print(
        f"features ready in {time.perf_counter() - start:.0f} s; {len(extra)} extra unlabeled",
        flush=True,
    )
    feats = {
        "ecfp": x_ecfp,
        "desc": x_desc,
        "labels": labels,
        "unl_ecfp": unl_ecfp,
        "unl_desc": unl_desc,
    }
    rows = []
    recipe = {k: v for k, v in vars(args).items() if k not in ("seeds", "threads", "out")}
    for seed in args.seeds:
        done = args.out / f"seed{seed}.json"
        cached = json.loads(done.read_text()) if done.is_file() else None
        if cached is not None and cached.get("recipe") == recipe:
            r = cached["result"]  # a finished seed of this very recipe (the run was interrupted)
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            r = run_seed(seed, args, feats)
            r["t_seed"], r["cpu_seed"] = time.perf_counter() - t0, time.process_time() - c0
            args.out.mkdir(parents=True, exist_ok=True)
            write_text(done, json.dumps({"recipe": recipe, "result": r}, indent=1))
        rows.append(r)
        print(
            f"seed {seed}: single {r['single']:.4f} phg {r['phg']:.4f} ensemble {r['ensemble']:.4f} "
            f"student {r['student']:.4f} small {r['small']:.4f} "
            f"({time.perf_counter() - start:.0f} s so far)",
            flush=True,
        )
    col = {k: [r[k] for r in rows] for k in rows[0]}
    mean = {k: statistics.mean(v) for k, v in col.items()}
    gain = mean["ensemble"] - mean["single"]
    kept = (mean["student"] - mean["single"]) / gain if gain != 0 else float("nan")
    per_seed_kept = [
        (r["student"] - r["single"]) / (r["ensemble"] - r["single"])
        if r["ensemble"] != r["single"]
        else float("nan")
        for r in rows
    ]
    cmd = "python benchmarks/ssl_phg.py" + (" --quick" if args.quick else "")
    if not args.quick and args.seeds != [0, 1, 2]:
        cmd += " --seeds " + " ".join(map(str, args.seeds))
    lines = [
        "## Tox21, two modalities: PHG-MAE-style masking, mask ensemble, distilled student",
        "",
        f"Command: `{cmd}` ({len(args.seeds)} seed(s); each seed re-draws the random 80/10/10",
        "split and the initialisation; wall time "
        f"{(feat_s + sum(col['t_seed'])) / 60:.1f} min on 2 CPU threads shared with other jobs:",
        f"features {feat_s:.0f} s, seeds {' + '.join(f'{t:.0f}' for t in col['t_seed'])} s). Features are",
        "cached on disk: the first run also computes the descriptors of ~16k molecules (about",
        "7.7 ms each, 2 min on an idle machine; 13 min were measured on the shared one).",
        "",
        f"Inputs: ECFP4 ({BITS} bits) and all {x_desc.shape[1]} RDKit 2-D descriptors of",
        "`rdkit.Chem.Descriptors._descList`, standardised with training-split statistics only",
        "(NaN → 0, clipped to ±6). Teacher-size models: one MLP encoder per modality",
        f"({args.hidden} units), mean fusion, a {args.post}-unit layer, linear heads",
        f"({int(mean['teacher_params']):,} parameters with the reconstruction heads); dropout 0.3;",
        f"AdamW lr 1e-3, cosine, up to {args.epochs} epochs (early stop after 5 without gain), best",
        "epoch on mean validation ROC-AUC.",
        f"PHG-MAE: each modality masked per sample with p = {P_MASK} (at least one kept), plus",
        "auxiliary reconstruction of the masked descriptors and ECFP bits (masked MSE) in the same",
        f"loop. Mask ensemble: mean probability over {N_MASKS} random masks (the first unmasked).",
        f"Student: {args.student}-unit encoders + {args.student}-unit layer,",
        f"{int(mean['student_params']):,} parameters, distilled for {args.distill_steps} steps",
        f"(batch 256, BCE against the ensemble's probabilities) on {int(mean['unlabeled']):,}",
        "unlabeled inputs (training-split molecules + the other MoleculeNet tables' molecules,",
        "every Tox21 molecule excluded), no labels. 'Small, labels' is the student's",
        "architecture trained on the labels with the single model's recipe.",
        "",
        "Mean test ROC-AUC over the 12 tasks:",
        "",
        "| model | both modalities | ECFP only | descriptors only |",
        "|---|---|---|---|",
        f"| single (no masking) | {format_mean_std(col['single'])} | {format_mean_std(col['single_ecfp_only'])} | {format_mean_std(col['single_desc_only'])} |",
        f"| PHG-MAE (masking + reconstruction) | {format_mean_std(col['phg'])} | {format_mean_std(col['phg_ecfp_only'])} | {format_mean_std(col['phg_desc_only'])} |",
        f"| mask ensemble of PHG-MAE ({N_MASKS} masks) | {format_mean_std(col['ensemble'])} | = PHG-MAE (one modality: all masks equal) | = PHG-MAE |",
        f"| distilled student (< 1M params) | {format_mean_std(col['student'])} | | |",
        f"| small model, labels only | {format_mean_std(col['small'])} | | |",
        "",
        "Per seed (both modalities):",
        "",
        "| seed | single | PHG-MAE | ensemble | student | small, labels | kept |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {s} | {r['single']:.4f} | {r['phg']:.4f} | {r['ensemble']:.4f} | {r['student']:.4f} | {r['small']:.4f} | "
            + (f"{k:+.2f} |" if r["ensemble"] > r["single"] else "n/a (no gain) |")
            for s, r, k in zip(args.seeds, rows, per_seed_kept)
        ],
        "",
        f"Ensemble gain over the single model: {gain:+.4f}"
        + (
            f"; the student keeps (student − single) / (ensemble − single) = {kept:+.2f} of it "
            "(from the seed means)."
            if gain > 0
            else " (no gain, so no fraction of it for the student to keep)."
        ),
        f"Wall time per seed: single {statistics.mean(col['t_single']):.0f} s, PHG-MAE "
        f"{statistics.mean(col['t_phg']):.0f} s, distillation {statistics.mean(col['t_student']):.0f} s; "
        f"whole seed {statistics.mean(col['t_seed']):.0f} s wall, "
        f"{statistics.mean(col['cpu_seed']):.0f} s CPU (both threads); features "
        f"(cached after the first run) {feat_s:.0f} s wall.",
        "",
        "Reading (generated from the numbers above; differences are called within noise when",
        "smaller than the larger of the two seed standard deviations):",
        "",
        *_reading(col, kept),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        write_section(
            REPO / "docs" / "results" / "ssl.md", "tox21_phg", text,
            title="Self-supervised auxiliary tasks",
        )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
