"""The plain equal-weight step, validation and log size at hundreds of sparsely labelled tasks.

Synthetic data at the shape of the issue: ``--tasks`` binary tasks (default 600), 8,600 rows of
2,048 ECFP-like bits (5 % set), 71 % of labels missing, ~15 % positives; MLP 2048-512-512 (ReLU),
one stacked linear head, batch 128, Adam, one thread (``torch.set_num_threads(1)``).

* step: polytask's ``train_step`` (no balancer: the sum of the task losses) on ``JointLoader``
  batches, against a hand-written loop over the same model computing ONE masked BCE over the
  ``[B, K]`` logits (targets pre-stacked ``[B, K]``), and against the per-task path the step used
  before (one masked BCE call per task). Each variant has its own copy of the same initial model;
  the variants alternate step by step; the table gives the median ms per step over ``--reps``
  steps (after warm-up). Batch assembly is timed on its own. All times are the process's CPU
  time (``time.process_time``; one thread, so the work itself), which other jobs on the
  machine disturb far less than wall-clock time.
* validation on 860 rows: the metrics of every task (ROC-AUC, PR-AUC) in one pass against the
  per-task torchmetrics path, after the same prediction.
* logs: bytes per ``train.jsonl`` line of a Trainer run at K = 617 with task names of ToxCast's
  length (~23 characters) and UW weights (full-precision floats), one validation line, and the
  size of ``gramian.safetensors`` (overwritten, never appended).

    python benchmarks/many_tasks_step.py [--tasks 600] [--reps 50] \\
        [--before /path/to/older/checkout/src --before-rev <commit>]

With ``--before``, the plain step, batch building and validation are also timed, in child
processes, under an older source tree and under this one (the API both share).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from polytask._core import write_text
from polytask.balancing import UW, Balancer
from polytask.eval.predict import evaluate_split, predict
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, TensorData
from polytask.train import Trainer, train_step
from polytask.train.gramian_log import GramianAverage

REPO = Path(__file__).resolve().parents[1]
ROWS, BITS, BATCH, VAL_ROWS, LOG_TASKS = 8600, 2048, 128, 860, 617


def _data(k: int, rows: int, seed: int, names: list[str]) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(rows, BITS, generator=g) < 0.05).float()
    y = (torch.rand(rows, k, generator=g) < 0.15).float()
    y[torch.rand(rows, k, generator=g) < 0.71] = math.nan
    return TensorData(x, {n: y[:, j].clone() for j, n in enumerate(names)})


def _model(ts: TaskSet) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(mlp_trunk(BITS, (512, 512)), ts.tasks, 512)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def time_steps(k: int, reps: int) -> dict[str, float]:
    """Median ms per step of the three loops (batches built beforehand), and of building a batch."""
    names = [f"t{j}" for j in range(k)]
    ts, data = TaskSet(Task(n, "binary") for n in names), _data(k, ROWS, 0, names)
    loader = JointLoader(data, BATCH, seed=0)
    batches = [loader.batch(s) for s in range(reps + 5)]
    blocks = [(b[0].inputs, torch.stack([b[0].targets[n] for n in names], 1)) for b in batches]
    dicts = [{n: b[0].targets[n].contiguous() for n in names} for b in batches]
    models = {v: _model(ts) for v in ("polytask", "hand", "per-task")}
    opts = {v: torch.optim.Adam(m.parameters(), 1e-3) for v, m in models.items()}

    def polytask(step: int) -> None:
        train_step(models["polytask"], batches[step], ts, opts["polytask"], step=step)

    def hand(step: int) -> None:
        (x, y), model, opt = blocks[step], models["hand"], opts["hand"]
        opt.zero_grad(set_to_none=True)
        logits = model.heads.linear(model.trunk(x))
        mask = ~torch.isnan(y)
        per = F.binary_cross_entropy_with_logits(
            logits, torch.where(mask, y, 0.0), reduction="none"
        )
        (torch.where(mask, per, 0.0).sum(0) / mask.sum(0).clamp_min(1)).sum().backward()
        opt.step()

    def per_task(step: int) -> None:
        x, targets, model, opt = blocks[step][0], dicts[step], models["per-task"], opts["per-task"]
        opt.zero_grad(set_to_none=True)
        out = model(x, names)
        torch.stack([ts[n].compute_loss(out[n], targets[n]) for n in names]).sum().backward()
        opt.step()

    perm = torch.randperm(ROWS)
    loops: dict[str, Callable[[int], object]] = {
        "polytask": polytask, "hand": hand, "per-task": per_task,
        "batch: JointLoader": loader.batch,
        "batch: per-task dict": lambda s: data.select(perm[s * BATCH : (s + 1) * BATCH]),
    }  # fmt: skip
    times: dict[str, list[float]] = {v: [] for v in loops}
    for step in range(reps + 5):
        for name, fn in loops.items():
            start = time.process_time()
            fn(step)
            if step >= 5:
                times[name].append(time.process_time() - start)
    return {name: _median_ms(t) for name, t in times.items()}


def time_validation(k: int, reps: int) -> dict[str, float]:
    """Median ms of predicting 860 rows, and of scoring them: per task vs in one pass."""
    names = [f"t{j}" for j in range(k)]
    ts, val = TaskSet(Task(n, "binary") for n in names), _data(k, VAL_ROWS, 1, names)
    model = _model(ts)
    out: dict[str, list[float]] = {"predict": [], "per-task metrics": [], "evaluate_split": []}
    for _ in range(reps):
        start = time.process_time()
        preds = predict(model, val, ts.names)
        out["predict"].append(time.process_time() - start)
        start = time.process_time()
        alone = {t.name: t.compute_metrics(preds[t.name], val.targets[t.name]) for t in ts.tasks}
        out["per-task metrics"].append(time.process_time() - start)
        start = time.process_time()
        together = evaluate_split(model, ts, val)
        out["evaluate_split"].append(time.process_time() - start)
    worst = max(
        abs(alone[n][m] - together[n][m])
        for n in names
        for m in ("roc_auc", "pr_auc")
        if not math.isnan(alone[n][m])
    )
    return {**{name: _median_ms(t) for name, t in out.items()}, "max abs diff": worst}


def log_sizes(steps: int) -> dict[str, float]:
    """Bytes per train.jsonl line and per validation at K = 617, and the Gramian file's size."""
    names = [f"ASSAY_{j:03d}_HepG2_24h_up" for j in range(LOG_TASKS)]
    ts = TaskSet(Task(n, "binary") for n in names)
    data, val = _data(LOG_TASKS, 2048, 2, names), _data(LOG_TASKS, VAL_ROWS, 3, names)
    model = _model(ts)
    balancer = Balancer(UW(LOG_TASKS))
    opt = torch.optim.Adam([*model.parameters(), *balancer.parameters()], 1e-3)
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(
            model, ts, JointLoader(data, BATCH), opt, max_steps=steps, balancer=balancer,
            val_data=val, eval_every=steps, out_dir=tmp, progress=False,
        ).fit()  # fmt: skip
        logs = Path(tmp) / "logs"
        lines = (logs / "train.jsonl").read_bytes().splitlines(keepends=True)
        val_bytes = (logs / "val.jsonl").stat().st_size
        avg = GramianAverage(ts.names)
        avg.update(torch.eye(LOG_TASKS), torch.ones(LOG_TASKS), 1)
        gram = avg.write(logs)
        assert gram is not None and json.loads(lines[0])["present"]
        return {
            "train.jsonl bytes / step": statistics.mean(len(x) for x in lines),
            "val.jsonl bytes / validation": float(val_bytes),
            "gramian.safetensors bytes": float(gram.stat().st_size),
        }


#: run in a child process against a source tree (``PYTHONPATH``): the public API both the tree
#: before this change and this one share (train_step, JointLoader, evaluate_split)
_VERSUS = """
import json, math, statistics, sys, time
import torch
from polytask.eval import evaluate_split
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, TensorData
from polytask.train import train_step
torch.set_num_threads(1)
k, reps = int(sys.argv[1]), int(sys.argv[2])
def data(rows, seed, names):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(rows, 2048, generator=g) < 0.05).float()
    y = (torch.rand(rows, k, generator=g) < 0.15).float()
    y[torch.rand(rows, k, generator=g) < 0.71] = math.nan
    return TensorData(x, {n: y[:, j].clone() for j, n in enumerate(names)})
names = [f"t{j}" for j in range(k)]
ts, d = TaskSet(Task(n, "binary") for n in names), data(8600, 0, names)
torch.manual_seed(0)
model = build_model(mlp_trunk(2048, (512, 512)), ts.tasks, 512)
opt = torch.optim.Adam(model.parameters(), 1e-3)
loader = JointLoader(d, 128, seed=0)
def med(fn, n, skip=0):
    out = []
    for i in range(n):
        a = time.process_time(); fn(i); out.append(time.process_time() - a)
    return statistics.median(out[skip:]) * 1e3
batches = [loader.batch(i) for i in range(reps + 5)]
step = med(lambda i: train_step(model, batches[i], ts, opt, step=i), reps + 5, 5)
val = data(860, 1, names)
print(json.dumps({"train_step": step, "JointLoader.batch": med(loader.batch, reps),
                  "evaluate_split": med(lambda i: evaluate_split(model, ts, val), 5)}))
"""


def versus(before: Path, k: int, reps: int) -> dict[str, dict[str, float]]:
    """The shared-API timings under the source tree ``before`` and under this one (two rounds,
    alternating; the median of each)."""
    import subprocess

    trees = {"before": before.resolve(), "now": REPO / "src"}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(2):
        for name, src in trees.items():
            done = subprocess.run(
                [sys.executable, "-c", _VERSUS, str(k), str(reps)],
                env={**os.environ, "PYTHONPATH": str(src)}, check=True, capture_output=True,
                text=True,
            )  # fmt: skip
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }


def _table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"| {a} | {b} |" for a, b in rows)


def _versus_section(before: Path, rev: str, k: int, reps: int) -> str:
    both = versus(before, k, reps)
    rows = "\n".join(
        f"| {key} | {both['before'][key]:.2f} | {both['now'][key]:.2f} | "
        f"{both['before'][key] / both['now'][key]:.1f}x |"
        for key in both["now"]
    )
    return f"""
## Before and after (K = {k}; median ms; the same script under each source tree)

| what | before ({rev}) | now | speed-up |
|---|---|---|---|
{rows}

`train_step`: the plain step (no balancer) on a prepared batch; `JointLoader.batch`: building one
batch; `evaluate_split`: prediction and metrics on 860 rows. Each tree ran twice, alternating.
`--before` was the `src/` of `git worktree add <dir> {rev}`.
"""


def report(args: argparse.Namespace, command: str) -> str:
    step = time_steps(args.tasks, args.reps)
    val = time_validation(args.tasks, max(args.reps // 10, 3))
    logs = log_sizes(50)
    ratio = step["polytask"] / step["hand"]
    thousand = 1000 * logs["train.jsonl bytes / step"] + 15 * logs["val.jsonl bytes / validation"]
    thousand = (thousand + logs["gramian.safetensors bytes"]) / 1e6
    fmt = {"max abs diff": "{:.1e}"}
    text = f"""# Many sparse tasks: the train step, validation and logs

Command: `{command}` (CPU, one thread, CPU time; on a 2-core VM that other jobs shared, so the
absolute times still vary from run to run; the ratios come from variants run alternately).

{__doc__.split(chr(10) + chr(10))[1]}

## Step (K = {args.tasks}, batch {BATCH}; median ms per step over {args.reps} steps)

| loop | ms / step |
|---|---|
{_table([(n, f"{v:.2f}") for n, v in step.items()])}

polytask / hand-written: **{ratio:.2f}x** (target ≤ 1.3x); the per-task path / hand-written:
{step["per-task"] / step["hand"]:.2f}x. The polytask step also does what the hand loop skips: the
finiteness check of the losses, the labelled-row counts, and the gradient norms of all and of
the shared parameters. Batches are built before a step is timed; building one is timed on its own (`batch:` rows: the loader's one-table selection, and a per-task dict as
`TensorData.select` builds it).

## Validation (K = {args.tasks}, {VAL_ROWS} rows; median ms)

| part | ms |
|---|---|
{_table([(n, fmt.get(n, "{:.2f}").format(v)) for n, v in val.items()])}

`evaluate_split` = prediction + every task's ROC-AUC and PR-AUC in one pass; the per-task path
was the same prediction + `per-task metrics` (torchmetrics, one call per task and metric).
`max abs diff`: the largest difference between the two over all defined values.

## Logs (K = {LOG_TASKS}, UW weights, task names of 23 characters)

| file | bytes |
|---|---|
{_table([(n, f"{v:,.0f}") for n, v in logs.items()])}

A 1,000-step run with a validation every 68 steps (15; one epoch of 8,600 rows at batch 128)
writes about **{thousand:.1f} MB** of logs: 1,000 `train.jsonl` lines, 15 `val.jsonl` lines and
one `gramian.safetensors` (rewritten in place every `train.gramian_log_every` steps, when the
method computes a Gramian). Without a balancer a line has no weights.
"""
    if args.before is not None:
        text += _versus_section(args.before, args.before_rev, args.tasks, min(args.reps, 30))
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--before", type=Path, help="src/ of a checkout to compare against")
    parser.add_argument("--before-rev", default="before", help="what --before is, for the table")
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "results" / "many_tasks_step.md"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command = " ".join(["python", "benchmarks/many_tasks_step.py", *(argv or sys.argv[1:])])
    text = report(args, command)
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
