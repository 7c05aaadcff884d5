"""Fashion-MNIST with 1,000 labels: supervised only vs + rotation vs SLA (+SD) vs + masked patches.

Each seed draws 1,000 labelled training images (100 per class, stratified), leaves the other
59,000 training images unlabelled for the self-supervised objectives, and tests on the official
10,000-image test set. All variants share one small convolutional trunk, the optimiser, the
number of steps and the labelled batch size; they differ only in the objective:

* ``supervised``: cross-entropy on the labelled batch.
* ``+ rotation``: plus an auxiliary 4-way rotation task (Gidaris et al. 2018) on an unlabelled batch.
* ``SLA``: one head over (class × rotation) joint labels on the 4 rotations of each labelled image,
  aggregated over the 4 rotations at test time (Lee et al. 2020); ``SLA single`` is the same model
  read from its un-rotated ``r = 0`` outputs (one forward pass).
* ``SLA+SD``: plus a self-distilled class head, read alone at test time (one forward pass).
* ``+ MAE``: plus an auxiliary masked patch reconstruction task (He et al. 2022) on an unlabelled
  batch (4×4 patches, half of them masked).

Writes section ``fashion`` of ``docs/results/ssl.md``.

    python benchmarks/ssl_fashion.py [--quick] [--seeds 0 1 2] [--steps 600]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sections import write_section
from polytask.eval import evaluate_split, format_mean_std, mean_std, predict
from polytask.models import build_model
from polytask.models.conv import conv_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, TensorData
from polytask.tasks.data.images import load_fashion_mnist
from polytask.tasks.ssl import PretextLoader
from polytask.tasks.ssl.patch_mae import PatchMAE
from polytask.tasks.ssl.rotation import Rotation, all_rotations
from polytask.tasks.ssl.sla import SLALoader, SLATask, sla_aggregate
from polytask.train import Trainer

REPO = Path(__file__).resolve().parents[1]
CLASSES = 10


@dataclass(frozen=True)
class Budget:
    steps: int
    batch: int  # labelled images per step (SLA: each one seen in its 4 rotations)
    unlabeled_batch: int  # images per step for the auxiliary pretexts
    lr: float
    channels: tuple[int, ...]
    width: int
    labels: int
    test_rows: int | None  # None = the whole official test set


FULL = Budget(300, 64, 64, 2e-3, (16, 32, 64), 128, 1000, None)
QUICK = Budget(30, 32, 32, 2e-3, (8, 16), 32, 200, 1000)


def stratified(
    labels: torch.Tensor, per_class: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` rows of each class drawn with ``seed``, and every other row."""
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(CLASSES):
        rows = torch.nonzero(labels == c).flatten()
        picked.append(rows[torch.randperm(len(rows), generator=g)[:per_class]])
    chosen = torch.cat(picked).sort().values
    rest = torch.ones(len(labels), dtype=torch.bool)
    rest[chosen] = False
    return chosen, torch.nonzero(rest).flatten()


@dataclass
class Variant:
    name: str
    tasks: Callable[[], list[Task]]
    loader: Callable[[TensorData, TensorData, Budget, int], object]
    evaluate: Callable[[nn.Module, Task, TensorData], dict[str, float]]


def _plain_loader(labelled: TensorData, _: TensorData, b: Budget, seed: int) -> object:
    return JointLoader(labelled, b.batch, seed=seed)


def _pretext_loader(name: str, pretext: object) -> Callable[..., object]:
    def make(labelled: TensorData, unlabeled: TensorData, b: Budget, seed: int) -> object:
        base = JointLoader(labelled, b.batch, seed=seed)
        return PretextLoader(
            base, {name: pretext}, seed=seed, unlabeled=unlabeled, batch_size=b.unlabeled_batch
        )  # type: ignore[dict-item]

    return make


def _sla_loader(labelled: TensorData, _: TensorData, b: Budget, seed: int) -> object:
    return SLALoader(JointLoader(labelled, b.batch, seed=seed), "label")


def _plain_eval(model: nn.Module, task: Task, test: TensorData) -> dict[str, float]:
    return {"": evaluate_split(model, TaskSet([task]), test, batch_size=500)["label"]["accuracy"]}


def _sla_eval(model: nn.Module, task: Task, test: TensorData) -> dict[str, float]:
    """Aggregated (4 rotations) and single-pass readings from one pass over the 4 rotations."""
    assert isinstance(task, SLATask)
    y = test.targets["label"]
    rotated = TensorData(all_rotations(test.inputs), {"label": y.repeat_interleave(4)})  # type: ignore[arg-type]
    out = predict(model, rotated, ["label"], batch_size=500)["label"]
    agg = sla_aggregate(out[:, : 4 * task.num_classes])
    return {
        "": task.compute_metrics(agg, y)["accuracy"],
        "single": task.compute_metrics(out[0::4], y)["accuracy"],
    }


def _label() -> Task:
    return Task("label", "multiclass", num_classes=CLASSES)


VARIANTS = [
    Variant("supervised", lambda: [_label()], _plain_loader, _plain_eval),
    Variant(
        "+ rotation",
        lambda: [_label(), Task("rotation", "multiclass", num_classes=4, auxiliary=True)],
        _pretext_loader("rotation", Rotation()),
        _plain_eval,
    ),
    Variant("SLA", lambda: [SLATask("label", num_classes=CLASSES)], _sla_loader, _sla_eval),
    Variant(
        "SLA+SD",
        lambda: [SLATask("label", num_classes=CLASSES, self_distill=True)],
        _sla_loader,
        _sla_eval,
    ),
    Variant(
        "+ MAE",
        lambda: [_label(), Task("mae", "reconstruction", num_classes=28 * 28, auxiliary=True)],
        _pretext_loader("mae", PatchMAE(patch=4, mask_ratio=0.5, mask_value=0.5)),
        _plain_eval,
    ),
]


def run(
    variant: Variant, train: TensorData, test: TensorData, b: Budget, seed: int
) -> dict[str, float]:
    chosen, rest = stratified(train.targets["label"], b.labels // CLASSES, seed)
    labelled = train.select(chosen)
    unlabeled = TensorData(train.inputs[rest], {}, "unlabeled")  # type: ignore[index]
    torch.manual_seed(seed)
    tasks = variant.tasks()
    trunk = conv_trunk(1, b.channels, b.width)
    model = build_model(trunk, tasks, trunk.out_dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=b.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, b.steps)
    loader = variant.loader(labelled, unlabeled, b, seed)
    trainer = Trainer(
        model, TaskSet(tasks), loader, optimizer,  # type: ignore[arg-type]
        max_steps=b.steps, scheduler=scheduler, progress=False,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    out = {"train_s": seconds}
    for suffix, acc in variant.evaluate(model, tasks[0], test).items():
        out[f"{variant.name} {suffix}".strip()] = acc
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny budget, no results file"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--variants", nargs="+", default=[v.name for v in VARIANTS])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=None, help="Fashion-MNIST folder (default: Debian's)")
    parser.add_argument("--section", default="fashion", help="section key in docs/results/ssl.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b = QUICK if args.quick else FULL
    if args.steps is not None:
        b = Budget(args.steps, *list(b.__dict__.values())[1:])
    seeds = args.seeds[:1] if args.quick else args.seeds
    begin, cpu = time.perf_counter(), time.process_time()
    train = load_fashion_mnist("train", root=args.root)
    test = load_fashion_mnist("test", root=args.root)
    if b.test_rows is not None:
        test = test.select(torch.arange(b.test_rows))
    results: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for v in VARIANTS:
        if v.name not in args.variants:
            continue
        for seed in seeds:
            out = run(v, train, test, b, seed)
            seconds.setdefault(v.name, []).append(out.pop("train_s"))
            print(f"{v.name:>18}  seed {seed}  train seconds {seconds[v.name][-1]:.1f}")
            for k, acc in out.items():
                results.setdefault(k, []).append(acc)
                print(f"{k:>18}  seed {seed}  test accuracy {acc:.4f}", flush=True)
    total, cpu = time.perf_counter() - begin, time.process_time() - cpu
    table = render(results, seconds, b, seeds, (total, cpu), sys.argv[1:])
    print(table)
    if not args.quick:
        write_section(REPO / "docs" / "results" / "ssl.md", args.section, table,
                      title="Self-supervised auxiliary tasks")  # fmt: skip


SHOWN = {
    "SLA": "SLA, aggregated over the 4 rotations",
    "SLA single": "SLA, one pass (r = 0 outputs)",
    "SLA+SD": "SLA+SD, aggregated over the 4 rotations",
    "SLA+SD single": "SLA+SD, one pass (SD head)",
}


def render(
    results: dict[str, list[float]],
    seconds: dict[str, list[float]],
    b: Budget,
    seeds: list[int],
    total: tuple[float, float],
    argv: list[str],
) -> str:
    base = mean_std(results["supervised"])[0] if "supervised" in results else None
    lines = [
        f"## Fashion-MNIST, {b.labels:,} labelled images, {b.steps} steps",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/ssl_fashion.py', *argv])}`",
        "",
        f"Budget per run: {b.steps} steps, {b.batch} labelled images per step, "
        f"{b.unlabeled_batch} unlabelled images per step for an auxiliary pretext, AdamW "
        f"(lr {b.lr}, weight decay 1e-4, cosine schedule), conv trunk channels "
        f"{list(b.channels)} → {b.width} features, 1 CPU thread; seeds {seeds}; "
        f"{b.labels} labelled images (stratified), test = "
        f"{'the official 10,000-image test set' if b.test_rows is None else f'{b.test_rows} test images'}. "
        f"Whole benchmark: {total[0] / 60:.1f} min wall clock, {total[1] / 60:.1f} min of "
        "process CPU time.",
        "",
        "| variant | test accuracy (mean ± std) | Δ vs supervised | train s / run |",
        "|---|---|---|---|",
    ]
    for name, values in results.items():
        delta = "" if base is None else f"{mean_std(values)[0] - base:+.4f}"
        key = name.split(" single")[0]
        secs = statistics.fmean(seconds.get(key, [0.0]))
        lines.append(
            f"| {SHOWN.get(name, name)} | {format_mean_std(values, zero_std=True)} | {delta} | {secs:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
