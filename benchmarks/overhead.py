"""Trainer step throughput against a hand-written PyTorch loop (same model, data, optimizer).

Both run the Tox21 multi-task MLP (ECFP4 2048 bits → 1024 → 512 → 12 stacked heads, batch 128,
AdamW, dropout 0.5) for the same number of steps on the same batches. The hand loop indexes a
shuffled permutation, computes the 12 masked BCE losses, sums them, and steps. The Trainer runs
with no validation and no output folder ("bare") and with JSONL logging to a folder ("logged").
Each variant is timed ``--repeats`` times, interleaved; the median is reported.

    python benchmarks/overhead.py [--steps 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from polytask._core import write_text
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, TensorData, ecfp, load_tox21
from polytask.train import Trainer

REPO = Path(__file__).resolve().parents[1]


def _setup(seed: int) -> tuple:
    torch.manual_seed(seed)
    smiles, labels = load_tox21()
    data = TensorData(
        torch.from_numpy(ecfp(smiles)).float(), {t: torch.from_numpy(v) for t, v in labels.items()}
    )
    tasks = TaskSet(Task(t, "binary") for t in labels)
    model = build_model(mlp_trunk(2048, (1024, 512), dropout=0.5), tasks.tasks, 512)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return data, tasks, model, opt


def hand_loop(steps: int) -> float:
    data, tasks, model, opt = _setup(0)
    x, ys = data.inputs, data.targets
    assert isinstance(x, torch.Tensor)
    names = tasks.names
    y = torch.stack([ys[n] for n in names], dim=1)
    n = len(data)
    perm = torch.randperm(n)
    start = time.perf_counter()
    for step in range(steps):
        pos = (step * 128) % n
        idx = perm[pos : pos + 128]
        out = model(x[idx])
        target = y[idx]
        loss = sum(
            torch.nn.functional.binary_cross_entropy_with_logits(
                out[t][~torch.isnan(target[:, k])], target[:, k][~torch.isnan(target[:, k])]
            )
            for k, t in enumerate(names)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()
    return (time.perf_counter() - start) / steps


def trainer_loop(steps: int, logged: bool) -> float:
    data, tasks, model, opt = _setup(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            model,
            tasks,
            JointLoader(data, 128),
            opt,
            max_steps=steps,
            progress=False,
            out_dir=tmp if logged else None,
            checkpoint_every=10**9,
        )
        start = time.perf_counter()
        trainer.fit()
        return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {
        "hand-written loop": [],
        "Trainer (bare)": [],
        "Trainer (logged)": [],
    }
    for _ in range(args.repeats):
        times["hand-written loop"].append(hand_loop(args.steps))
        times["Trainer (bare)"].append(trainer_loop(args.steps, logged=False))
        times["Trainer (logged)"].append(trainer_loop(args.steps, logged=True))
    ref = statistics.median(times["hand-written loop"])
    lines = [
        "# Trainer overhead against a hand-written loop",
        "",
        f"Command: `python benchmarks/overhead.py --steps {args.steps} --repeats {args.repeats} --threads {args.threads}`",
        "",
        "Tox21 MLP (2048 → 1024 → 512 → 12 heads), batch 128, AdamW, CPU. Median ms per step over the repeats.",
        "",
        "| loop | ms / step (median) | ratio to hand-written | runs (ms) |",
        "|---|---|---|---|",
    ]
    for name, t in times.items():
        med = statistics.median(t)
        lines.append(
            f"| {name} | {1000 * med:.2f} | {med / ref:.3f} | {', '.join(f'{1000 * v:.2f}' for v in t)} |"
        )
    lines += ["", "Target: ≤ 1.05 (≤ 5% overhead).", ""]
    text = "\n".join(lines)
    print(text)
    write_text(REPO / "docs" / "results" / "overhead.md", text)


if __name__ == "__main__":
    sys.exit(main())
