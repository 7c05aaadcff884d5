"""Hundreds to thousands of sparsely labelled tasks: every balancing method's step time and peak
RSS, and the test ROC-AUC each reaches on a planted problem; Tox21 at batch 16.

Data: the planted sparse binary problem of ``benchmarks/planted_tasks.py`` (real molecules, ECFP4
2048 bits, ~70 % of labels missing, 1-20 % positives per task, known optimum). Model: MLP
2048-512-512 (ReLU), one stacked linear head, batch 128, AdamW, one thread.

    python benchmarks/many_tasks.py speed [--tasks 100 600 2000] [--methods ...] [--reps 10]
    python benchmarks/many_tasks.py quality [--tasks 600] [--seeds 0 1 2] [--epochs 8]
    python benchmarks/many_tasks.py tox21 [--seeds 0 1 2] [--epochs 3]
    python benchmarks/many_tasks.py write      # docs/results/many_tasks.md from the cached results

``speed`` runs every (K, method) cell in its own process (peak RSS is per process): the plain
step (no balancer: the sum of the losses), a hand-written loop (one masked BCE over the ``[B, K]``
logits of the same model), and every method in ``features`` mode (DB-MTL in ``exact``, its only
mode). Results are cached as JSON under ``.bench/many_tasks/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.build.balancing import build_balancer
from polytask.config.balancing import BALANCING_METHODS, BalancingConfig, method_class

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / ".bench" / "many_tasks"
MOLECULES = 8600  # the size of the public assay table the issue was found on
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _mode(method: str) -> str:
    return "features" if "features" in method_class(method).modes else "exact"


def _setup(k: int) -> tuple[Any, Any, Any]:
    from planted_tasks import PlantSpec, molecules, plant
    from polytask.models import build_model, mlp_trunk
    from polytask.tasks import Task, TaskSet
    from polytask.tasks.data import JointLoader, TensorData

    spec = PlantSpec(tasks=k, seed=0, molecules=MOLECULES)
    cache = OUT / f"planted-k{k}-labels.npz"  # planting K = 2,000 takes ~40 s: once per K
    if not cache.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        planted = plant(spec)
        np.savez(cache, labels=planted.labels, names=np.array(planted.names))
    with np.load(cache, allow_pickle=False) as z:
        labels, names = torch.from_numpy(z["labels"]), [str(n) for n in z["names"]]
    _, x, _ = molecules(spec, OUT.parent / "planted")
    data = TensorData(torch.from_numpy(x).float(), {n: labels[:, j] for j, n in enumerate(names)})
    tasks = TaskSet(Task(n, "binary") for n in names)
    torch.manual_seed(0)
    model = build_model(mlp_trunk(2048, (512, 512)), tasks.tasks, 512)
    return model, tasks, JointLoader(data, batch_size=128, seed=0)


def _hand_step(model: Any, batch: Any, opt: torch.optim.Optimizer) -> None:
    (group,) = batch
    opt.zero_grad(set_to_none=True)
    logits = model.heads.linear(model.trunk(group.inputs))
    y = torch.stack([group.targets[n] for n in model.heads.names], dim=1)
    mask = ~torch.isnan(y)
    per = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.nan_to_num(y), reduction="none"
    )
    ((per * mask).sum(0) / mask.sum(0).clamp_min(1)).sum().backward()
    opt.step()


def _stepper(k: int, method: str, model: Any, tasks: Any) -> Any:
    """One training step of ``method`` on its own copy of the model and optimizer."""
    from polytask.train import train_step

    model = copy.deepcopy(model)
    bal = None
    if method not in ("plain", "hand"):
        bal = build_balancer(BalancingConfig(method=method, mode=_mode(method)), n_tasks=k)
    params = list(model.parameters()) + (list(bal.parameters()) if bal is not None else [])
    opt = torch.optim.AdamW(params, lr=1e-3)

    def run(batch: Any, step: int) -> None:
        if method == "hand":
            _hand_step(model, batch, opt)
        else:
            train_step(model, batch, tasks, opt, balancer=bal, grad_clip=5.0, step=step)

    return run


def cell(k: int, method: str, reps: int, warm: int) -> dict[str, Any]:
    """Median ms per train step of ``method`` (``plain``, ``hand`` or a balancing method) and of
    the plain step, the two interleaved step by step in this process (so a load on the machine
    hits both alike; the ratio is the reading)."""
    torch.set_num_threads(1)
    model, tasks, loader = _setup(k)
    steppers = {name: _stepper(k, name, model, tasks) for name in dict.fromkeys(["plain", method])}
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for step in range(warm + reps):
        batch = loader.batch(step)
        for name, run in steppers.items():
            t0 = time.process_time()  # CPU time of this one-thread process: a load elsewhere
            run(batch, step)  # on the machine does not count against it
            if step >= warm:
                times[name].append(1000 * (time.process_time() - t0))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ms, plain = statistics.median(times[method]), statistics.median(times["plain"])
    return {"k": k, "method": method, "ms": ms, "plain_ms": plain, "ratio": ms / plain,
            "times": times[method], "rss_mb": rss}  # fmt: skip


def speed(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for k in args.tasks:
        for method in ["plain", "hand", *args.methods]:
            path = OUT / f"speed-k{k}-{method}.json"
            if path.exists() and not args.again:
                print(path.read_text().strip()[:200], flush=True)
                continue
            cmd = [sys.executable, __file__, "cell", "--k", str(k), "--method", method,
                   "--reps", str(args.reps), "--warm", str(args.warm)]  # fmt: skip
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                line = res.stdout.strip().splitlines()[-1] if res.returncode == 0 else ""
                result = json.loads(line) if line else {"k": k, "method": method,
                          "error": (res.stderr.strip().splitlines() or ["?"])[-1][:200]}  # fmt: skip
            except subprocess.TimeoutExpired:
                result = {"k": k, "method": method, "error": f"over {args.timeout} s"}
            path.write_text(json.dumps(result) + "\n")
            print({k2: v for k2, v in result.items() if k2 != "times"}, flush=True)


def _train(cfg: dict[str, Any], out: Path, timeout: int) -> dict[str, Any]:
    """One ``polytask train`` run in its own process (cached: a finished run is read back)."""
    import yaml

    cfg_path = out.parent / f"{out.name}.yaml"
    text = yaml.safe_dump(cfg, sort_keys=True)
    report = out / "report.json"
    if report.is_file() and cfg_path.is_file() and cfg_path.read_text() == text:
        return json.loads(report.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(text)
    cmd = [str(Path(sys.executable).parent / "polytask"), "train", str(cfg_path), "--out", str(out),
           "--overwrite", "--no-progress"]  # fmt: skip
    env_threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    import os

    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **env_threads})  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout} s"}
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(report.read_text())


def _recipe(epochs: int, batch: int, lr: float = 1e-3, patience: int = 3) -> dict[str, Any]:
    return {
        "model": {"trunk": {"kind": "mlp", "hidden": [512, 512], "dropout": 0.2}},
        "train": {"epochs": epochs, "batch_size": batch,
                  "optimizer": {"name": "adamw", "lr": lr, "weight_decay": 1e-2},
                  "scheduler": {"name": "constant"}, "grad_clip": 5.0,
                  "selection": "mean:roc_auc", "patience": patience},
    }  # fmt: skip


def _planted_table(k: int) -> Path:
    from planted_tasks import main as plant_main

    path = OUT / f"planted-k{k}.csv"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        plant_main(["--tasks", str(k), "--seed", "0", "--molecules", str(MOLECULES),
                    "--out", str(path)])  # fmt: skip
    return path


def quality(args: argparse.Namespace) -> None:
    for k in args.tasks:
        table = _planted_table(k)
        for seed in args.seeds:
            for method in args.methods:
                cfg: dict[str, Any] = {
                    "seed": seed,
                    "data": {"source": "table", "path": str(table), "input": "smiles",
                             "featurizer": {"kind": "ecfp", "radius": 2, "bits": 2048},
                             "split": {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": 0},
                             "label_columns": {"select": "all", "kind": "binary",
                                               "metrics": ["roc_auc"]}},
                    **_recipe(args.epochs, 128, lr=3e-3, patience=5),
                    "balancing": _balancing(method),
                }  # fmt: skip
                rep = _train(cfg, OUT / f"quality-k{k}" / f"seed{seed}" / method, args.timeout)
                _say(f"k{k} seed {seed} {method}", rep)


def _balancing(spec: str) -> dict[str, Any]:
    """``method`` or ``method:option=value,...`` (a variant, e.g. ``famo:loss_ema=0.9``)."""
    method, _, opts = spec.partition(":")
    cfg: dict[str, Any] = {"method": method, "mode": _mode(method)}
    if opts:
        cfg["options"] = {k: float(v) for k, v in (o.split("=") for o in opts.split(","))}
    return cfg


def tox21(args: argparse.Namespace) -> None:
    for seed in args.seeds:
        for method in args.methods:
            cfg: dict[str, Any] = {
                "seed": seed,
                "data": {"source": "tox21", "featurizer": {"kind": "ecfp", "radius": 2, "bits": 2048},
                         "split": {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": seed}},
                **_recipe(args.epochs, 16),
                "balancing": _balancing(method),
            }  # fmt: skip
            rep = _train(cfg, OUT / "tox21-b16" / f"seed{seed}" / method, args.timeout)
            _say(f"tox21 b16 seed {seed} {method}", rep)


def _say(what: str, rep: dict[str, Any]) -> None:
    if "error" in rep:
        print(f"{what}: {rep['error']}", flush=True)
        return
    training = rep.get("training", {})
    print(f"{what}: test roc_auc {rep['means']['test']['roc_auc']:.4f}  "
          f"zero-update steps {training.get('zero_update_steps')}  {rep.get('seconds', 0):.0f} s",
          flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--tasks", type=int, nargs="+", default=[100, 600, 2000])
    sp.add_argument("--methods", nargs="+", default=list(BALANCING_METHODS))
    sp.add_argument("--reps", type=int, default=10)
    sp.add_argument("--warm", type=int, default=3)
    sp.add_argument("--timeout", type=int, default=900)
    sp.add_argument("--again", action="store_true", help="re-measure cached cells")
    c = sub.add_parser("cell")
    c.add_argument("--k", type=int, required=True)
    c.add_argument("--method", required=True)
    c.add_argument("--reps", type=int, default=10)
    c.add_argument("--warm", type=int, default=3)
    for name, k_default, epochs in (("quality", [600], 12), ("tox21", None, 2)):
        q = sub.add_parser(name)
        if k_default is not None:
            q.add_argument("--tasks", type=int, nargs="+", default=k_default)
        q.add_argument("--methods", nargs="+", default=list(BALANCING_METHODS))
        q.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        q.add_argument("--epochs", type=int, default=epochs)
        q.add_argument("--timeout", type=int, default=1800)
    sub.add_parser("write")
    args = parser.parse_args()
    if args.what == "quality":
        quality(args)
    elif args.what == "tox21":
        tox21(args)
    elif args.what == "write":
        from _many_tasks_doc import write

        write(OUT, REPO / "docs" / "results" / "many_tasks.md")
    elif args.what == "cell":
        print(json.dumps(cell(args.k, args.method, args.reps, args.warm)))
    elif args.what == "speed":
        speed(args)


if __name__ == "__main__":
    main()
