"""Step-time overhead of every balancing method, as a ratio to the plain summed-loss step.

Trunk-dominated MLP (1024 → 512 → 512 → 512, ReLU), batch 256, heads as ONE stacked
``nn.Linear(512, K)`` producing ``[B, K]``, per-task MSE losses, SGD, one thread. A step is
zero_grad + forward + backward variant + optimizer step; the median over ``--reps`` timed steps
is divided by the median of plain steps timed alternately with it (same machine load). Columns
(``--modes``): polytask ``features`` mode, polytask ``exact`` mode, torchjd 0.18's autojac path
(``mtl_backward`` + ``jac_to_grad``) with the same method, and LibMTL 1.1.5's weighting of the same
name, run by ``_libmtl_runner.py`` under the Python of a separate environment holding LibMTL
(``--libmtl-python``; how to build it is in that file). Example::

    python benchmarks/balancing_overhead.py                 # K = 2, 8, 40, all methods
    python benchmarks/balancing_overhead.py --ks 8 --methods mgda upgrad --reps 5
    python benchmarks/balancing_overhead.py --modes libmtl --libmtl-python /tmp/libmtl_venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _libmtl_runner import LIBMTL, Net, paired_ratio  # noqa: E402
from _sections import write_section  # noqa: E402
from polytask._core import resolve_device  # noqa: E402
from polytask.balancing import Balancer  # noqa: E402
from polytask.build.balancing import build_method  # noqa: E402
from polytask.config.balancing import BALANCING_METHODS, method_class  # noqa: E402

MODES = ("features", "exact", "torchjd", "libmtl")
SIZE = {"batch": 256, "hidden": 512}  # --batch / --hidden (LibMTL: the defaults only)
LIBMTL_VENV = Path("/tmp/libmtl_venv/bin/python")
LIBMTL_PROSE = (
    "`libmtl`: LibMTL 1.1.5 (PyPI) weighting of the same name, timed the same way in its own"
    " environment by `benchmarks/_libmtl_runner.py` (same network, seeds and batch). It"
    " calls the weighting's own `backward(losses, **defaults)` on a model that subclasses the"
    " weighting as LibMTL's `Trainer` builds it, with `rep_grad=False` (one backward per task,"
    " gradients of all shared parameters flattened; GradDrop, which LibMTL allows only on"
    " feature gradients, uses `rep_grad=True`). LibMTL's `Trainer` is not used: it hard-codes"
    " `cuda:0` and calls Python 2's `.next()`. In-process workarounds: a stand-in"
    " `torchvision.models.utils` (for `load_state_dict_from_url`) before import, scipy"
    " installed by hand, gradients zeroed with `set_to_none=False` (its `_reset_grad` writes"
    " into `.grad`), `epoch = 2` so that GradNorm and DWA take their adaptive paths. Its `IMTL`"
    " (row `imtl_g`) is the IMTL-L + IMTL-G hybrid; its CAGrad hard-codes 3 tasks (n/a at"
    " other K); `—`: not in LibMTL 1.1.5. Its ratios are to the same plain step timed in that"
    " process (torch 2.13.0 in both), which runs alone before the polytask cells."
)

# polytask name → torchjd aggregator factory (K given)
TORCHJD: dict[str, Callable[[int], Any]] = {
    "mgda": lambda k: _tja().MGDA(),
    "pcgrad": lambda k: _tja().PCGrad(),
    "gradvac": lambda k: _tja().GradVac(),
    "graddrop": lambda k: _tja().GradDrop(),
    "cagrad": lambda k: _tja().CAGrad(c=0.4),
    "imtl_g": lambda k: _tja().IMTLG(),
    "nash_mtl": lambda k: _tja().NashMTL(n_tasks=k),
    "aligned_mtl": lambda k: _tja().AlignedMTL(),
    "upgrad": lambda k: _tja().UPGrad(),
    "dualproj": lambda k: _tja().DualProj(),
    "config": lambda k: _tja().ConFIG(),
    "fairgrad": lambda k: _tja().FairGrad(alpha=1.0),
}


def _tja() -> Any:
    import torchjd.aggregation as tja

    return tja


def median_ms(step: Callable[[], None], warmup: int, reps: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def make_step(
    kind: str, k: int, method: str | None, declare: bool = True, device: str = "cpu"
) -> Callable[[], None]:
    torch.manual_seed(0)
    net = Net(k, hidden=SIZE["hidden"]).to(device)
    b = SIZE["batch"]
    x, y = torch.randn(b, 1024).to(device), torch.randn(b, k).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4)
    shared = list(net.trunk.parameters())
    if kind == "plain":

        def backward(losses: Tensor, z: Tensor) -> None:
            losses.sum().backward()

    elif kind in ("features", "exact"):
        assert method is not None
        bal = Balancer(build_method(method, {}, n_tasks=k), mode=kind).to(device)
        opt.add_param_group({"params": list(bal.parameters())}) if list(bal.parameters()) else None
        # task i reads column i of the stacked head, as the trainer declares for LinearHeads
        columns = list(range(k)) if kind == "features" and declare else None

        def backward(losses: Tensor, z: Tensor) -> None:
            bal.backward(losses, shared, features=z, columns=columns)

    else:
        from torchjd.autojac import jac_to_grad, mtl_backward

        assert method is not None
        agg = TORCHJD[method](k)

        def backward(losses: Tensor, z: Tensor) -> None:
            # torchjd wants one graph node per loss: per-column losses, as its users write them
            out = net.heads(z)
            per_task = [((out[:, i] - y[:, i]) ** 2).mean() for i in range(k)]
            mtl_backward(per_task, features=z, retain_graph=True)
            jac_to_grad(shared, agg)

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else None

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if kind == "torchjd":
            z = net.trunk(x)
            backward(z, z)
        else:
            losses, z = net.losses(x, y)
            backward(losses, z)
        opt.step()
        if sync is not None:
            sync()  # the step is timed to its end on the GPU

    return step


def run_libmtl(
    python: str | None, ks: list[int], methods: list[str], reps: int
) -> tuple[dict[tuple[str, int], str], str]:
    """Cells of the LibMTL column from ``_libmtl_runner.py`` run under ``python`` (a separate
    process, run alone so that it does not share the cores with the polytask timings), and a
    sentence for the table's prose when nothing could be run."""
    wanted = [m for m in methods if m in LIBMTL]
    if python is None:
        return {}, f"not run: no LibMTL environment ({LIBMTL_VENV} missing, see --libmtl-python)"
    if not wanted:
        return {}, ""
    runner = Path(__file__).resolve().parent / "_libmtl_runner.py"
    cmd = [python, str(runner), "--ks", *map(str, ks), "--methods", *wanted, "--reps", str(reps)]
    cells: dict[tuple[str, int], str] = {}
    with tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        except OSError as exc:
            return cells, f"not run: cannot start `{python}` ({exc})"
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("{"):
                print(line, end="")
                continue
            row = json.loads(line)
            ratio, key = row["ratio"], (row["method"], row["K"])
            cell = "n/a" if "note" in row else "failed" if ratio is None else f"{ratio:.2f}×"
            cells[key] = cell
            print(f"LibMTL {row['libmtl']} K={row['K']}: {cell} {row.get('error', '')}", flush=True)
        proc.wait()
        err.seek(0)
        lines = err.read().strip().splitlines()
    if proc.returncode != 0:
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        return cells, f"not run: `{python}` could not run the LibMTL runner ({last})"
    return cells, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 8, 40])
    ap.add_argument("--methods", nargs="+", default=list(BALANCING_METHODS))
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument(
        "--libmtl-python",
        default=str(LIBMTL_VENV) if LIBMTL_VENV.exists() else None,
        help="Python of an environment holding LibMTL 1.1.5 (see _libmtl_runner.py)",
    )
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--out", help="default: docs/results/balancing_overhead[_gpu].md")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (LibMTL: cpu only)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=512, help="width of the trunk's 3 layers")
    ap.add_argument(
        "--undeclared",
        action="store_true",
        help="`features` mode without the head's column ownership (per-task statistic measured)",
    )
    args = ap.parse_args()
    dev = str(resolve_device(args.device))
    gpu = dev.startswith("cuda")
    SIZE.update(batch=args.batch, hidden=args.hidden)
    default_size = (args.batch, args.hidden) == (256, 512)
    modes = [
        m for m in MODES if m in args.modes and not (m == "libmtl" and (gpu or not default_size))
    ]
    suffix = "_gpu" if gpu else ""
    out = Path(args.out or REPO / "docs" / "results" / f"balancing_overhead{suffix}.md")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    libmtl: dict[tuple[str, int], str] = {}
    libmtl_why = ""
    if "libmtl" in modes:
        libmtl, libmtl_why = run_libmtl(args.libmtl_python, args.ks, args.methods, args.reps)
    rows: list[list[str]] = []
    base: dict[int, float] = {}
    for k in args.ks:
        base[k] = median_ms(make_step("plain", k, None, device=dev), args.warmup, args.reps)
        print(f"K={k}: plain summed-loss step {base[k]:.1f} ms", flush=True)
    plains = {k: make_step("plain", k, None, device=dev) for k in args.ks}
    h2h: list[list[str]] = []
    for name in args.methods:
        cls = method_class(name)
        cells = [name, ",".join(sorted(cls.needs))]
        for k in args.ks:
            for kind in modes:
                if kind == "features" and "features" not in cls.modes:
                    cells.append("n/a")
                    continue
                if (kind == "torchjd" and name not in TORCHJD) or (
                    kind == "libmtl" and name not in LIBMTL
                ):
                    cells.append("—")
                    continue
                if kind == "libmtl":
                    cells.append(libmtl.get((name, k), "not run"))
                    continue
                cheap = kind == "features" or cls.needs <= {"losses", "grad_norms"}
                reps = args.reps if cheap or k < 40 else max(3, args.reps // 3)
                step = make_step(kind, k, name, declare=not args.undeclared, device=dev)
                cells.append(_ratio(plains[k], step, reps, "×"))
        rows.append(cells)
        print(" | ".join(cells), flush=True)
        if {"exact", "torchjd"} <= set(modes) and name in TORCHJD:
            h2h.append(head_to_head(name, args.ks, args.reps, dev))
            print(" | ".join(h2h[-1]), flush=True)
    head = ["method", "needs"] + [f"K={k} {c}" for k in args.ks for c in modes]
    lines = [
        "# Balancing overhead: step time relative to the plain summed-loss step",
        "",
        "Command: `python benchmarks/balancing_overhead.py "
        + " ".join(sys.argv[1:])
        + "`".replace("` ", "`"),
        "",
        f"Trunk 1024→{args.hidden}→{args.hidden}→{args.hidden} (ReLU), batch {args.batch}, one"
        f" stacked `nn.Linear({args.hidden}, K)` head, per-task"
        " MSE, SGD, `torch.set_num_threads(1)`, "
        + (
            f"{torch.cuda.get_device_name(dev)} (each step timed to a CUDA synchronize)"
            if gpu
            else "CPU"
        )
        + ". Median step (zero_grad + forward + backward"
        " + optimizer step) divided by the median of plain steps timed alternately with it."
        " `features`/`exact`: polytask `Balancer` modes"
        + (
            " (`features` without `columns=`: the per-task statistic is measured by a batched"
            " backward)"
            if args.undeclared
            else " (`features` is given the head's column ownership, `columns=`, task i reading"
            " column i, as the trainer declares it for stacked linear heads)"
        )
        + "; `torchjd`: torchjd 0.18 `mtl_backward` +"
        " `jac_to_grad` with the same method (full Jacobian of the shared parameters). Loss"
        " weightings ignore the mode (they back-propagate the weighted sum), so their two columns"
        " measure the same thing.",
        "",
        *(
            [LIBMTL_PROSE + (f" LibMTL column {libmtl_why}." if libmtl_why else ""), ""]
            if "libmtl" in modes
            else []
        ),
        "Plain step: " + ", ".join(f"K={k} {base[k]:.1f} ms" for k in args.ks),
        "",
        "Targets: `features` ≤ 1.3× at K = 40 for every Gramian method; loss weightings ≤ 1.05×;"
        " `exact` no slower than torchjd's autojac on the same method."
        + (
            ""
            if gpu
            else " The machine is shared (2 cores, other jobs running), so single cells scatter"
            " by about ±10%: compare rows, not the second decimal."
        ),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]
    if h2h:
        lines += [
            "**`exact` against torchjd, head to head:** the two steps timed alternately with"
            " each other (not each against the plain step), median of polytask `exact` over"
            " median of torchjd; below 1 means polytask is faster.",
            "",
            "| method | " + " | ".join(f"K={k} exact ÷ torchjd" for k in args.ks) + " |",
            "|" + "---|" * (len(args.ks) + 1),
            *("| " + " | ".join(r) + " |" for r in h2h),
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        title = lines[0].removeprefix("# ")
        section = "table" if default_size else f"table-batch{args.batch}-hidden{args.hidden}"
        write_section(out, section, "\n".join(lines[2:]), title=title)


def head_to_head(name: str, ks: list[int], reps: int, device: str = "cpu") -> list[str]:
    """``exact`` step time over torchjd's on the same method, the two timed alternately."""
    cells = [name]
    for k in ks:
        n = reps if k < 40 else max(3, reps // 3)
        jd = make_step("torchjd", k, name, device=device)
        ex = make_step("exact", k, name, device=device)
        cells.append(_ratio(jd, ex, n))
    return cells


def _ratio(base: Callable[[], None], step: Callable[[], None], reps: int, unit: str = "") -> str:
    """``paired_ratio`` as a cell, or the error that stopped a step (e.g. a GPU solver)."""
    try:
        return f"{paired_ratio(base, step, 2, reps):.2f}{unit}"
    except Exception as exc:  # reported in the table instead of ending the run
        print(f"  failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", flush=True)
        return f"failed ({type(exc).__name__})"


if __name__ == "__main__":
    main()
