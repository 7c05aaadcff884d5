"""LibMTL 1.1.5's weightings on the overhead benchmark's network, as step-time ratios.

Run with the Python of a separate environment that holds LibMTL (``balancing_overhead.py`` calls
it as a subprocess); this file never imports polytask, so that environment needs only::

    python -m venv /tmp/libmtl_venv
    /tmp/libmtl_venv/bin/pip install torch==2.13.0            # first, pinned
    /tmp/libmtl_venv/bin/pip install --no-deps LibMTL==1.1.5  # its torchvision pin pulls CUDA torch
    /tmp/libmtl_venv/bin/pip install numpy scipy              # scipy is used but undeclared
    /tmp/libmtl_venv/bin/python benchmarks/_libmtl_runner.py --ks 2 8 --methods mgda pcgrad

It prints one JSON object per (method, K) on stdout: ``{"method", "libmtl", "K", "ratio",
"note"}`` with ``ratio`` null when the method cannot run at that K (``note`` says why) or failed
(``error`` holds the exception). ``Net`` and ``paired_ratio`` live here and are imported by
``balancing_overhead.py``, so both processes time the same network with the same protocol.

LibMTL is driven without its ``Trainer`` (whose ``__init__`` hard-codes ``cuda:0`` and whose loader
loop calls Python 2's ``.next()``). As the ``Trainer`` does, the model is a subclass of the
weighting class; it exposes what ``AbsWeighting`` reads: ``get_share_params`` (the trunk),
``zero_grad_share_params``, ``task_num``, ``task_name``, ``device`` (CPU), ``rep_grad``, ``rep`` /
``rep_tasks``, ``epoch`` and ``train_loss_buffer``. Workarounds, all in-process (nothing in
site-packages is edited):

* ``LibMTL.model.resnet`` imports ``torchvision.models.utils.load_state_dict_from_url``, gone from
  torchvision (and torchvision is not installed): a stand-in module providing
  ``torch.hub.load_state_dict_from_url`` is put in ``sys.modules`` before the import.
* torch ≥ 2 zeroes gradients to ``None``; LibMTL's ``_reset_grad`` then writes ``param.grad.data``
  on ``None``. Gradients are zeroed with ``set_to_none=False`` (optimizer and
  ``zero_grad_share_params``).
* ``epoch = 2`` and a ``train_loss_buffer`` of ones, so that GradNorm takes its gradient path
  (at epoch 0 it is EW) and DWA its loss-ratio path.

Every other line is LibMTL's: ``rep_grad=False`` (its default: per-task gradients of the shared
parameters, one ``backward`` per task into ``.grad`` copied to a flat vector), except GradDrop,
which LibMTL only allows with ``rep_grad=True`` (each task's head reads its own detached copy of
the features, via LibMTL's ``AbsArchitecture._prepare_rep``; the combined feature gradients are
back-propagated once per task, as LibMTL does for a single-output encoder). Hyperparameters are
LibMTL's ``config.py`` defaults.

polytask name → LibMTL 1.1.5 class (every polytask method that the PyPI release also has):

=========  ===========  ===================================================================
polytask   LibMTL       differences
=========  ===========  ===================================================================
ew         EW           none (sum of the losses)
uw         UW           none
dwa        DWA          T = 2
rlw        RLW          dist = Normal (softmax of a standard normal draw), as polytask
gls        GLS          none
gradnorm   GradNorm     alpha = 1.5; norms of the gradients w.r.t. ALL shared parameters (K
                        backward passes), where polytask uses the last shared layer
mgda       MGDA         mgda_gn = none; Frank-Wolfe min-norm solver in Python
pcgrad     PCGrad       none
gradvac    GradVac      beta = 0.5
graddrop   GradDrop     leak = 0; on feature gradients (``rep_grad=True``), as the paper does
cagrad     CAGrad       calpha = 0.5, rescale = 1; hard-codes 3 tasks (``reshape(1, 3)``):
                        only K = 3 runs, other K are reported n/a
imtl_g     IMTL         LibMTL's IMTL is the IMTL-L + IMTL-G hybrid (learned loss scales
                        ``e^s L - s`` AND the closed-form gradient weights); timed on the
                        ``imtl_g`` row since its gradient half sets the cost
=========  ===========  ===================================================================

Not in LibMTL 1.1.5 (PyPI): IMTL-L alone, FAMO, DB-MTL, Nash-MTL, Aligned-MTL, UPGrad, DualProj,
ConFIG, FairGrad (the GitHub version of LibMTL has some of them; PyPI's has not).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

# polytask name → (LibMTL class, kwargs to backward, rep_grad, a loss weighting, only at this K)
LIBMTL: dict[str, tuple[str, dict[str, Any], bool, bool, int | None]] = {
    "ew": ("EW", {}, False, True, None),
    "uw": ("UW", {}, False, True, None),
    "dwa": ("DWA", {"T": 2.0}, False, True, None),
    "rlw": ("RLW", {"dist": "Normal"}, False, True, None),
    "gls": ("GLS", {}, False, True, None),
    "gradnorm": ("GradNorm", {"alpha": 1.5}, False, False, None),
    "mgda": ("MGDA", {"mgda_gn": "none"}, False, False, None),
    "pcgrad": ("PCGrad", {}, False, False, None),
    "gradvac": ("GradVac", {"beta": 0.5}, False, False, None),
    "graddrop": ("GradDrop", {"leak": 0.0}, True, False, None),
    "cagrad": ("CAGrad", {"calpha": 0.5, "rescale": 1}, False, False, 3),
    "imtl_g": ("IMTL", {}, False, False, None),
}


class Net(nn.Module):
    """Trunk 1024 → 512 → 512 → 512 (ReLU) and ONE stacked ``nn.Linear(512, K)`` head."""

    def __init__(self, k: int, d_in: int = 1024, hidden: int = 512) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )  # fmt: skip
        self.heads = nn.Linear(hidden, k)

    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        z = self.trunk(x)
        return ((self.heads(z) - y) ** 2).mean(0), z


def paired_ratio(
    plain: Callable[[], None], step: Callable[[], None], warmup: int, reps: int
) -> float:
    """Median of ``step`` over median of ``plain``, timed alternately so that both see the same
    machine load (this machine is shared; drift would otherwise dominate small overheads)."""
    for _ in range(warmup):
        plain()
        step()
    tp, ts = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        plain()
        t1 = time.perf_counter()
        step()
        t2 = time.perf_counter()
        tp.append(t1 - t0)
        ts.append(t2 - t1)
    return statistics.median(ts) / statistics.median(tp)


def seeded(k: int) -> tuple[Net, Tensor, Tensor]:
    """The network and batch of ``balancing_overhead.make_step``: seed 0, then Net, x, y."""
    torch.manual_seed(0)
    net = Net(k)
    return net, torch.randn(256, 1024), torch.randn(256, k)


def plain_step(k: int) -> Callable[[], None]:
    net, x, y = seeded(k)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        losses, _ = net.losses(x, y)
        losses.sum().backward()
        opt.step()

    return step


def import_libmtl() -> Any:
    """``import LibMTL.weighting`` with the torchvision stand-in (see the module docstring)."""
    try:
        import torchvision.models.utils  # noqa: F401
    except ImportError:
        import torch.hub

        stand_in = types.ModuleType("torchvision.models.utils")
        stand_in.load_state_dict_from_url = torch.hub.load_state_dict_from_url  # type: ignore[attr-defined]
        try:
            import torchvision.models as tv_models
        except ImportError:
            tv_models = types.ModuleType("torchvision.models")
            sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
            sys.modules["torchvision.models"] = tv_models
        tv_models.utils = stand_in
        sys.modules["torchvision.models.utils"] = stand_in
    import LibMTL.weighting

    return LibMTL.weighting


def libmtl_step(weighting: Any, k: int, name: str) -> Callable[[], None]:
    import numpy as np
    from LibMTL.architecture.abstract_arch import AbsArchitecture

    cls_name, kwargs, rep_grad, _, _ = LIBMTL[name]
    random.seed(0)
    np.random.seed(0)
    net, x, y = seeded(k)

    class Model(getattr(weighting, cls_name)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.task_num, self.task_name = k, [f"task{i}" for i in range(k)]
            self.device, self.rep_grad = torch.device("cpu"), rep_grad
            self.epoch, self.train_loss_buffer = 2, np.ones((k, 3))
            if rep_grad:
                self.rep: dict[str, Tensor] = {}
                self.rep_tasks: dict[str, Tensor] = {}
            self.init_param()

        def get_share_params(self) -> Any:
            return self.net.trunk.parameters()

        def zero_grad_share_params(self) -> None:
            self.net.trunk.zero_grad(set_to_none=False)

        def task_losses(self) -> Tensor:
            z = self.net.trunk(x)
            if not rep_grad:
                return ((self.net.heads(z) - y) ** 2).mean(0)
            w, b, out = self.net.heads.weight, self.net.heads.bias, []
            for i, task in enumerate(self.task_name):
                zi = AbsArchitecture._prepare_rep(self, z, task, False)
                out.append(((zi @ w[i] + b[i] - y[:, i]) ** 2).mean())
            return torch.stack(out)

    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=False)
        model.backward(model.task_losses(), **kwargs)
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 8, 40])
    ap.add_argument("--methods", nargs="+", default=list(LIBMTL))
    ap.add_argument("--reps", type=int, default=21)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    weighting = import_libmtl()
    plains = {k: plain_step(k) for k in args.ks}
    for name in args.methods:
        if name not in LIBMTL:
            continue
        cls_name, _, _, cheap, only_k = LIBMTL[name]
        for k in args.ks:
            row: dict[str, Any] = {"method": name, "libmtl": cls_name, "K": k, "ratio": None}
            if only_k is not None and k != only_k:
                row["note"] = f"LibMTL's {cls_name} runs only with K = {only_k}"
            else:
                # the same repetition rule as balancing_overhead.py (fewer steps for slow cells)
                reps = args.reps if cheap or k < 40 else max(3, args.reps // 3)
                try:
                    row["ratio"] = paired_ratio(plains[k], libmtl_step(weighting, k, name), 2, reps)
                except Exception as exc:  # report and go on with the other cells
                    row["error"] = f"{type(exc).__name__}: {exc}"
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
