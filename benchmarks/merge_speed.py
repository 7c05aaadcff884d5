"""Merge speed and memory: polytask's streaming executor vs mergekit vs plain read + write.

Builds 8 synthetic fine-tuned checkpoints of a BERT-base-shaped model (fp32 safetensors in
Hugging Face folders with a BertForSequenceClassification config.json) plus their base under a temporary folder,
merges them with task arithmetic, TIES and DARE-TIES using polytask and mergekit, each merge a
separate process under ``/usr/bin/time -v`` (wall time and peak RSS, start-up included), and
times a process that only reads every input tensor and writes one output. Both tools run with
one thread. The temporary folder is removed afterwards. Example::

    python benchmarks/merge_speed.py                      # ~110M parameters, ~440 MB per model
    python benchmarks/merge_speed.py --params 10e6 --no-write   # quick check
    python benchmarks/merge_speed.py --micro                    # in-process, one BERT layer

``--micro`` times only the merge arithmetic: the tensors of one BERT-base encoder layer (7.1M
parameters) and 8 fine-tuned copies in memory, merged in-process with ``polytask.merging.merge``
(the same executor and pipeline as the streamed merge, no file I/O, no start-up), best CPU time
of ``--reps`` runs on one thread. It writes its own section of the results page.

mergekit runs from its own virtual environment (``--mergekit``, default
``/tmp/mk_venv/bin/mergekit-yaml``); without it the mergekit columns are left empty.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _sections
TITLE = "Merge speed and memory"
METHODS = {
    "task_arithmetic": ({"lam": 1.0}, {}, {"normalize": False}),
    "ties": ({"density": 0.2}, {"density": 0.2}, {"normalize": True}),
    "dare_ties": ({"density": 0.5, "seed": 0}, {"density": 0.5}, {"normalize": True}),
}


def bert_shapes(hidden: int, layers: int = 12, vocab: int = 30522) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a Hugging Face BertForSequenceClassification (2 labels).

    (mergekit 0.1.5 cannot merge the bare BertModel layout: its ``bert.json`` architecture has an
    optional aliased ``position_ids`` that crashes its planner with ``list + tuple``.)
    """
    h, f = hidden, 4 * hidden
    shapes: dict[str, tuple[int, ...]] = {
        "bert.embeddings.word_embeddings.weight": (vocab, h),
        "bert.embeddings.position_embeddings.weight": (512, h),
        "bert.embeddings.token_type_embeddings.weight": (2, h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
    }
    for i in range(layers):
        p = f"bert.encoder.layer.{i}."
        for name in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            shapes[p + name + ".weight"] = (h, h)
            shapes[p + name + ".bias"] = (h,)
        shapes[p + "attention.output.LayerNorm.weight"] = (h,)
        shapes[p + "attention.output.LayerNorm.bias"] = (h,)
        shapes[p + "intermediate.dense.weight"] = (f, h)
        shapes[p + "intermediate.dense.bias"] = (f,)
        shapes[p + "output.dense.weight"] = (h, f)
        shapes[p + "output.dense.bias"] = (h,)
        shapes[p + "output.LayerNorm.weight"] = (h,)
        shapes[p + "output.LayerNorm.bias"] = (h,)
    shapes["bert.pooler.dense.weight"] = (h, h)
    shapes["bert.pooler.dense.bias"] = (h,)
    shapes["classifier.weight"] = (2, h)
    shapes["classifier.bias"] = (2,)
    return shapes


def micro(args: argparse.Namespace) -> None:
    """Best CPU seconds of an in-memory merge of one BERT-base encoder layer, per method."""
    import time

    from polytask.config.merge import method_class
    from polytask.merging import merge

    torch.set_num_threads(1)
    layer = {k: v for k, v in bert_shapes(768).items() if ".layer.0." in k}
    gen = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=gen) * 0.02 for k, s in layer.items()}
    models = [
        {k: v + torch.randn(v.shape, generator=gen) * 0.001 for k, v in base.items()}
        for _ in range(args.models)
    ]
    params = count(layer)
    best: dict[str, float] = {}
    for _ in range(args.reps):  # interleaved, so a burst of load hits every method alike
        for kind in args.methods:
            method = method_class(kind)(**METHODS[kind][0])
            start = time.process_time()
            merge(method, base, models)
            best[kind] = min(best.get(kind, math.inf), time.process_time() - start)
    lines = [
        "| method | ms per layer | ns per parameter and model | vs task_arithmetic |",
        "|---|---|---|---|",
    ]
    ta = best.get("task_arithmetic")
    for kind, sec in best.items():
        ratio = f"{sec / ta:.2f}×" if ta else "—"
        ns = sec / (params * args.models) * 1e9
        lines.append(f"| {kind} | {sec * 1e3:.1f} | {ns:.2f} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        from _sections import write_section

        command = f"python benchmarks/merge_speed.py --micro --reps {args.reps}"
        text = (
            f"## Merge arithmetic only (`--micro`)\n\n"
            f"One BERT-base encoder layer ({params / 1e6:.2f}M parameters) and {args.models} "
            "fine-tuned copies in memory, merged in-process by `polytask.merging.merge` (same "
            "executor and pipeline as the streamed merge; no file I/O, no start-up), best CPU "
            f"time of {args.reps} interleaved runs, one thread. Options as above.\n\n"
            f"{table}\n\n```\n{command}\n```\n"
        )
        write_section(REPO / "docs" / "results" / "merge_speed.md", "micro", text, TITLE)


def count(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(torch.Size(s).numel() for s in shapes.values())


def hidden_for(params: float) -> int:
    """The hidden size (a multiple of 12, for 12 heads) giving the parameter count closest to ``params``."""
    return min(range(24, 2048, 12), key=lambda h: abs(count(bert_shapes(h)) - params))


def write_model(folder: Path, state: dict[str, torch.Tensor], hidden: int) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "hidden_size": hidden,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 4 * hidden,
        "vocab_size": 30522,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "num_labels": 2,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def make_checkpoints(root: Path, params: float, n: int) -> tuple[Path, list[Path], int, int]:
    hidden = hidden_for(params)
    shapes = bert_shapes(hidden)
    gen = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=gen) * 0.02 for k, s in shapes.items()}
    write_model(root / "base", base, hidden)
    models = []
    for i in range(n):
        ft = {k: v + torch.randn(v.shape, generator=gen) * 0.001 for k, v in base.items()}
        write_model(root / f"ft{i}", ft, hidden)
        models.append(root / f"ft{i}")
        del ft
    return (
        root / "base",
        models,
        count(shapes),
        (root / "base" / "model.safetensors").stat().st_size,
    )


def worker(kind: str, out: str, base: str, models: list[str]) -> None:
    """Run inside the timed subprocess: one polytask merge, or read everything + write once."""
    torch.set_num_threads(1)
    if kind == "readwrite":
        from polytask.merging.io import ShardedWriter, open_checkpoint, output_folder

        readers = [open_checkpoint(p) for p in (base, *models)]
        entries = [(k, readers[0].shape(k), readers[0].dtype(k)) for k in readers[0]]
        with output_folder(out) as tmp:
            writer = ShardedWriter(tmp, entries)
            for key, _, _ in entries:
                tensors = [r.get(key) for r in readers]
                writer.write(key, tensors[0])
                del tensors
            writer.close()
        return
    from polytask.config.merge import method_class
    from polytask.merging import merge_checkpoints

    method = method_class(kind)(**METHODS[kind][0])
    merge_checkpoints(method, base, models, out)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of ``cmd`` under /usr/bin/time -v."""
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{res.stderr[-3000:]}")
    wall = re.search(
        r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", res.stderr
    )
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    assert wall and rss, res.stderr[-2000:]
    seconds = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    return seconds, int(rss.group(1)) / 1024


def mergekit_config(method: str, base: Path, models: list[Path], path: Path) -> None:
    import yaml

    _, per_model, params = METHODS[method]
    config = {
        "merge_method": method,
        "base_model": str(base),
        "models": [{"model": str(m), "parameters": {"weight": 1.0, **per_model}} for m in models],
        "parameters": params,
        "dtype": "float32",
    }
    path.write_text(yaml.safe_dump(config))


def compare(a: Path, b: Path) -> tuple[float, int]:
    """Largest absolute difference and number of entries differing by more than 1e-6."""
    from polytask.merging import open_checkpoint

    ra, rb = open_checkpoint(a), open_checkpoint(b)
    worst, count = 0.0, 0
    for k in ra:
        if ra.dtype(k).is_floating_point:
            diff = (ra.get(k) - rb.get(k)).abs()
            worst = max(worst, float(diff.max()))
            count += int(torch.count_nonzero(diff > 1e-6))
    return worst, count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--params", type=float, default=110e6, help="approximate parameters per model"
    )
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--mergekit", default="/tmp/mk_venv/bin/mergekit-yaml")
    parser.add_argument(
        "--workdir", default=None, help="parent folder for the temporary checkpoints"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; do not write docs/results"
    )
    parser.add_argument("--micro", action="store_true", help="time one layer in memory only")
    parser.add_argument("--reps", type=int, default=5, help="runs per method with --micro")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.micro:
        micro(args)
        return
    if args.worker:
        kind, out, base, *models = args.worker
        worker(kind, out, base, models)
        return
    if not Path("/usr/bin/time").exists():
        sys.exit("needs /usr/bin/time (apt-get install -y time)")
    have_mergekit = Path(args.mergekit).exists()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    root = Path(tempfile.mkdtemp(prefix="merge_speed_", dir=args.workdir))
    try:
        base, models, params, ckpt_bytes = make_checkpoints(root, args.params, args.models)
        ckpt_mb = ckpt_bytes / 2**20
        me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        rw_s, rw_mb = timed([*me, "readwrite", str(root / "rw"), str(base), *map(str, models)], env)
        rows = []
        for method in args.methods:
            pt_s, pt_mb = timed(
                [*me, method, str(root / f"pt_{method}"), str(base), *map(str, models)], env
            )
            mk_s = mk_mb = diff = None
            if have_mergekit:
                cfg = root / f"{method}.yaml"
                mergekit_config(method, base, models, cfg)
                cmd = [
                    args.mergekit,
                    str(cfg),
                    str(root / f"mk_{method}"),
                    "--random-seed",
                    "0",
                    "--no-copy-tokenizer",
                    "--quiet",
                    "-j",
                    "1",
                ]
                mk_s, mk_mb = timed(cmd, env)
                if method != "dare_ties":
                    diff = compare(root / f"pt_{method}", root / f"mk_{method}")
                shutil.rmtree(root / f"mk_{method}")
            shutil.rmtree(root / f"pt_{method}")
            rows.append((method, pt_s, mk_s, rw_s, pt_mb, mk_mb, ckpt_mb, diff))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(rows, args, params, ckpt_mb, rw_mb)


def report(
    rows: list[tuple], args: argparse.Namespace, params: int, ckpt_mb: float, rw_mb: float
) -> None:
    def f(x: float | None, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    lines = [
        "| method | polytask s | mergekit s | speed-up | read+write s | polytask / read+write | "
        "polytask peak RSS MB | mergekit peak RSS MB | polytask RSS / checkpoint | vs mergekit: max abs diff, entries > 1e-6 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, pt_s, mk_s, rw_s, pt_mb, mk_mb, ck, diff in rows:
        lines.append(
            f"| {method} | {pt_s:.1f} | {f(mk_s, '.1f')} | {f(mk_s and mk_s / pt_s, '.1f')}× | {rw_s:.1f} | "
            f"{pt_s / rw_s:.2f}× | {pt_mb:.0f} | {f(mk_mb, '.0f')} | {pt_mb / ck:.2f}× | "
            f"{'—' if diff is None else f'{diff[0]:.1e}, {diff[1]} of {params * 1e-6:.0f}M'} |"
        )
    table = "\n".join(lines)
    command = "python benchmarks/merge_speed.py" + (
        f" --params {args.params:g}" if args.params != 110e6 else ""
    )
    text = (
        "# Merge speed and memory\n\n"
        "## Whole benchmark\n\n"
        f"{args.models} fine-tuned checkpoints + base of a BERT-base-shaped model, {params / 1e6:.1f}M fp32 "
        f"parameters ({ckpt_mb:.0f} MiB per checkpoint), merged by polytask "
        "and by mergekit 0.1.5 (`mergekit-yaml CONFIG OUT --random-seed 0 --no-copy-tokenizer --quiet -j 1`), "
        "each run as its own process under `/usr/bin/time -v` (wall time and peak RSS include interpreter "
        "and torch start-up), one thread (`OMP_NUM_THREADS=1`). *read+write* is a process that reads "
        f"every tensor of all {args.models + 1} inputs and writes one output (peak RSS {rw_mb:.0f} MB). "
        "TIES density 0.2, DARE-TIES density 0.5, weights 1, λ = 1; mergekit TIES/DARE-TIES with "
        "`normalize: true` (disjoint mean), task arithmetic with `normalize: false`. The last column "
        "compares the two outputs tensor by tensor (DARE-TIES masks are random in both tools, so not "
        "compared); TIES entries differ only where magnitudes tie at the top-k threshold (polytask keeps "
        "every tied entry, mergekit's argsort keeps an arbitrary k).\n\n"
        f"{table}\n\nCommand (2-core shared CPU machine, Python 3.11, torch 2.13.0 CPU):\n\n"
        f"```\n{command}\n```\n"
    )
    print(table)
    if not args.no_write:
        from _sections import write_section

        out = REPO / "docs" / "results" / "merge_speed.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_section(out, "full", text.removeprefix("# Merge speed and memory\n\n"), TITLE)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
