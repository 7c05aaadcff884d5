"""Time and memory of every Gramian balancing method's ``weights()`` call, one thread.

The Gramian is the realistic features-mode one of a many-task binary model (one output column
per task, 128 rows, 30 % of the labels present, 512 features with a rank-8 shared part)::

    r = randn(B, K) * (rand(B, K) < 0.3);  a = randn(K, 8) @ randn(8, d) + 0.5 randn(K, d)
    G = ((rᵀr) ∘ (a aᵀ)).double() / B                              # B = 128, d = 512, seed 0

Each (method, K) runs in its own process with one thread for torch and for NumPy's BLAS
(``OMP/MKL/OPENBLAS_NUM_THREADS=1``, ``torch.set_num_threads(1)``): one warm-up call on a small
Gramian, then ``weights()`` on the float64 Gramian, a fresh method instance and
``torch.manual_seed(0)`` per call, best of up to ``--reps`` calls (fewer once the calls have
taken ``--budget`` seconds). *Peak extra* is the process's peak resident memory during the calls
above what it held before them (``VmHWM`` reset through ``/proc/self/clear_refs``). *Exponent* is
``log(t₂₀₀₀ / t₆₀₀) / log(2000 / 600)``, the cost curve's local slope. ``--baseline-src`` times
another checkout's ``src`` (e.g. an older commit from ``git archive``) with the same harness and
adds a before/after table (rows with options, the variants, are not run on it). Example::

    python benchmarks/gramian_solvers.py                         # K = 100, 600, 2000
    python benchmarks/gramian_solvers.py --ks 100 600 --methods MGDA CAGrad --reps 3
    git archive 953d800 src | tar -x -C /tmp/before
    python benchmarks/gramian_solvers.py --baseline-src /tmp/before/src --skip-baseline UPGrad:2000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "results" / "gramian_solvers.md"
TITLE = "Gramian balancing methods: solver time and memory"
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "MGDA": ("MGDA", {}),
    "PCGrad": ("PCGrad", {}),
    "PCGrad order='shared'": ("PCGrad", {"order": "shared"}),
    "GradVac": ("GradVac", {}),
    "GradVac order='shared'": ("GradVac", {"order": "shared"}),
    "CAGrad": ("CAGrad", {}),
    "IMTL-G": ("IMTLG", {}),
    "Nash-MTL": ("NashMTL", {}),
    "Aligned-MTL": ("AlignedMTL", {}),
    "ConFIG": ("ConFIG", {}),
    "FairGrad": ("FairGrad", {}),
    "DualProj": ("DualProj", {}),
    "UPGrad": ("UPGrad", {}),
}


def realistic_gramian(k: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(0)
    b, d = 128, 512
    r = torch.randn(b, k, generator=g) * (torch.rand(b, k, generator=g) < 0.3)
    a = torch.randn(k, 8, generator=g) @ torch.randn(8, d, generator=g)
    a = a + 0.5 * torch.randn(k, d, generator=g)
    return ((r.T @ r) * (a @ a.T)).double() / b


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in the measuring process: times one (method, K)."""
    sys.path.insert(0, spec["src"])
    import torch

    import polytask.balancing as pb
    from polytask.balancing import Statistics

    torch.set_num_threads(1)
    cls, kwargs = getattr(pb, spec["cls"]), spec["kwargs"]

    def call(gram: Any) -> float:
        method = cls(**kwargs)
        torch.manual_seed(0)
        stats = Statistics(losses=torch.ones(gram.shape[0], dtype=torch.float64), gramian=gram)
        start = time.perf_counter()
        method.weights(stats)
        return time.perf_counter() - start

    call(realistic_gramian(20))  # warm-up: library loading, first-call costs
    gram = realistic_gramian(spec["k"])
    Path("/proc/self/clear_refs").write_text("5")
    before = vm_kib("VmRSS")
    times: list[float] = []
    while len(times) < spec["reps"] and sum(times) < spec["budget"]:
        times.append(call(gram))
    peak = vm_kib("VmHWM") - before
    return {"ms": 1e3 * min(times), "calls": len(times), "peak_mib": peak / 1024}


def measure(name: str, k: int, src: str, args: argparse.Namespace) -> dict[str, Any] | None:
    cls, kwargs = METHODS[name]
    spec = {"cls": cls, "kwargs": kwargs, "k": k, "src": src}
    spec |= {"reps": args.reps, "budget": args.budget}
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        print(f"  {name} K={k}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    res = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {name:24s} K={k:5d} {res['ms']:10.1f} ms  ({res['calls']} calls)", flush=True)
    return dict(res)


def run_all(
    src: str, args: argparse.Namespace, skip: set[str], options: bool = True
) -> dict[tuple[str, int], Any]:
    """Every (method, K) on ``src``; ``options=False`` leaves out the rows with options (the
    variants an older checkout does not have)."""
    out: dict[tuple[str, int], Any] = {}
    for k in args.ks:
        for name in args.methods:
            if f"{name}:{k}" in skip or (not options and METHODS[name][1]):
                out[(name, k)] = None
                continue
            out[(name, k)] = measure(name, k, src, args)
    return out


def fmt_ms(res: dict[str, Any] | None) -> str:
    if res is None:
        return "—"
    ms = res["ms"]
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def exponent(res: dict[tuple[str, int], Any], name: str, k0: int, k1: int) -> str:
    a, b = res.get((name, k0)), res.get((name, k1))
    if a is None or b is None or a["ms"] <= 0:
        return "—"
    return f"{math.log(b['ms'] / a['ms']) / math.log(k1 / k0):.2f}"


def table(res: dict[tuple[str, int], Any], args: argparse.Namespace) -> str:
    ks, kmax = args.ks, max(args.ks)
    head = [f"K = {k} (ms)" for k in ks] + [f"peak extra MiB, K = {kmax}"]
    slope = len(ks) >= 2
    if slope:
        head.append(f"exponent {ks[-2]}→{ks[-1]}")
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name in args.methods:
        cells = [fmt_ms(res.get((name, k))) for k in ks]
        top = res.get((name, kmax))
        cells.append("—" if top is None else f"{top['peak_mib']:.0f}")
        if slope:
            cells.append(exponent(res, name, ks[-2], ks[-1]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(
    now: dict[tuple[str, int], Any], old: dict[tuple[str, int], Any], args: argparse.Namespace
) -> str:
    head = [f"K = {k}: before → after (ms), speed-up" for k in args.ks]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name in args.methods:
        cells = []
        for k in args.ks:
            a, b = old.get((name, k)), now.get((name, k))
            ratio = f"{a['ms'] / b['ms']:.1f}×" if a is not None and b is not None else "—"
            cells.append(f"{fmt_ms(a)} → {fmt_ms(b)}, {ratio}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", type=int, nargs="+", default=[100, 600, 2000])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--reps", type=int, default=5, help="calls per (method, K), best kept")
    p.add_argument("--budget", type=float, default=10.0, help="stop repeating after this (s)")
    p.add_argument("--timeout", type=float, default=3600.0, help="per (method, K) process (s)")
    p.add_argument("--baseline-src", default=None, help="another checkout's src to compare")
    p.add_argument("--skip-baseline", nargs="*", default=[], help="METHOD:K not run on it")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args()


def command_line() -> str:
    return "python benchmarks/gramian_solvers.py " + " ".join(sys.argv[1:])


def main() -> None:
    args = parse()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _sections import write_section

    print("current src:", flush=True)
    now = run_all(str(REPO / "src"), args, set())
    import torch

    where = f"{os.cpu_count()} cores, Python {platform.python_version()}"
    where += f", torch {torch.__version__}, one thread, load average at the end "
    where += ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = f"Command ({where}):\n\n```\n{command_line().strip()}\n```\n\n" + table(now, args)
    old = None
    if args.baseline_src is not None:
        print(f"baseline src {args.baseline_src}:", flush=True)
        old = run_all(args.baseline_src, args, set(args.skip_baseline), options=False)
        text += "\n\nBefore (`--baseline-src`) and after, best call each:\n\n"
        text += comparison(now, old, args)
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(REPO / "src"))
        write_section(OUT, "table", text, title=TITLE)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
