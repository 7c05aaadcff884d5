"""A thin trainer around :func:`train_step`: steps, validation, selection, early stopping,
checkpoints, exact resume, logs and a progress bar. It is the only code that loops over steps.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError, module_device, rng_state, set_rng_state
from polytask.eval import SelectionRule, evaluate_split
from polytask.eval.predict import SplitData
from polytask.models import MultiTaskModel
from polytask.tasks import TaskSet
from polytask.tasks.data import Group
from polytask.train.checkpoint import (
    latest_checkpoint,
    load_weights,
    read_state,
    restore_best_dir,
    write_best,
    write_checkpoint,
)
from polytask.train.distributed import average_gradients, shard, world
from polytask.train.gramian_log import GramianAverage
from polytask.train.logs import RunLog, float32_digits
from polytask.train.progress import progress_bar
from polytask.train.step import BalancerLike, StepOutput, train_step

LOG = logging.getLogger("polytask.train")
VANISHING = 1e-6
"""A shared update below this fraction of the run's largest one is counted as vanishing."""


class Loader(Protocol):
    steps_per_epoch: int

    def batch(self, step: int) -> list[Group]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class StepInfo:
    """What callbacks receive after each optimizer step: rows of ``losses``, ``weights``,
    ``gramian`` and ``present`` (labelled rows in the batch) follow ``task_names``, the tasks
    the batch fed (an absent task's Gramian row is 0)."""

    step: int
    epoch: int
    task_names: tuple[str, ...]
    losses: Tensor
    weights: Tensor | None
    gramian: Tensor | None
    batch: list[Group] | None = None
    present: Tensor | None = None


@dataclass
class FitResult:
    steps: int
    best_step: int | None
    best_score: float | None
    stopped_early: bool
    seconds: float
    zero_update_steps: int = 0
    vanishing_update_steps: int = 0


class Trainer:
    """Train ``model`` on ``taskset`` with batches from ``loader`` for ``max_steps`` steps.

    Validation runs every ``eval_every`` steps (and at the end); the ``selection`` rule picks the
    best step, whose weights are loaded back into the model when ``fit`` returns. Early stopping
    ends training after ``patience`` validations without improvement. With ``out_dir`` set,
    checkpoints are written every ``checkpoint_every`` steps (default: at each validation) and
    ``fit(resume=True)`` continues bit-exactly from the latest one.

    Steps whose shared update is exactly zero while a present task has a positive loss are
    counted in ``zero_update_steps`` (flagged in their log record, warned about once); steps
    whose shared update is below ``VANISHING`` (1e-6) times the largest one so far — a method that
    has stopped training the shared layers without zeroing them, e.g. all the weight on a task
    whose batch loss is ~0 — or, with a Gramian method, below ``VANISHING`` times the
    equal-weight update (``update_ratio``), in ``vanishing_update_steps``, likewise. When the
    balancer computes Gramians, their running average goes to ``logs/gramian.safetensors`` every
    ``gramian_log_every`` steps (0: never; see :mod:`polytask.train.gramian_log`).
    """

    def __init__(
        self,
        model: MultiTaskModel,
        taskset: TaskSet,
        loader: Loader,
        optimizer: torch.optim.Optimizer,
        *,
        max_steps: int,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        balancer: BalancerLike | None = None,
        val_data: SplitData | None = None,
        selection: SelectionRule | None = None,
        eval_every: int | None = None,
        patience: int | None = None,
        grad_clip: float | None = None,
        out_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        config_hash: str = "",
        callbacks: Sequence[Any] = (),
        progress: bool = True,
        eval_batch_size: int = 1024,
        gramian_log_every: int = 50,
    ) -> None:
        if max_steps < 1:
            raise PolytaskError(f"max_steps must be >= 1, got {max_steps}")
        if gramian_log_every < 0:
            raise PolytaskError(f"gramian_log_every must be >= 0, got {gramian_log_every}")
        self.model, self.taskset, self.loader, self.optimizer = model, taskset, loader, optimizer
        self.scheduler, self.balancer, self.val_data = scheduler, balancer, val_data
        self.max_steps = max_steps
        self.selection = selection
        self.eval_every = eval_every or loader.steps_per_epoch
        self.patience, self.grad_clip = patience, grad_clip
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_every = checkpoint_every or self.eval_every
        self.config_hash, self.callbacks = config_hash, list(callbacks)
        self.progress, self.eval_batch_size = progress, eval_batch_size
        self.rank, self.world_size = world()
        self.writes = self.rank == 0  # under torchrun only rank 0 writes files
        self.step = 0
        self.best_score: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self._best_state: dict[str, Tensor] | None = None
        self.zero_update_steps = 0
        self.vanishing_update_steps, self.largest_update = 0, 0.0
        self.gramians, self.gramian_log_every = GramianAverage(taskset.names), gramian_log_every

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "balancer": self.balancer.state_dict()
            if isinstance(self.balancer, nn.Module)
            else None,
            "loader": self.loader.state_dict(),
            "rng": rng_state(),
            "best_score": self.best_score,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "config_hash": self.config_hash,
            "zero_update_steps": self.zero_update_steps,
            "vanishing_update_steps": self.vanishing_update_steps,
            "largest_update": self.largest_update,
            "gramian_average": self.gramians.state_dict(),
        }

    def _resume(self, ckpt_root: Path) -> None:
        path = latest_checkpoint(ckpt_root)
        if path is None:
            raise PolytaskError(f"{ckpt_root}: no complete checkpoint to resume from")
        state = read_state(path)
        if state.get("config_hash") != self.config_hash:
            raise PolytaskError(
                f"{path}: the checkpoint was written with a different config (hash {state.get('config_hash')!r}, "
                f"now {self.config_hash!r}); resume with the original config or start a new --out folder"
            )
        load_weights(self.model, path / "model.safetensors")
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if isinstance(self.balancer, nn.Module) and state["balancer"] is not None:
            self.balancer.load_state_dict(state["balancer"])
        self.loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.best_score, self.best_step = state["best_score"], state["best_step"]
        self.bad_evals = int(state["bad_evals"])
        self.zero_update_steps = int(state.get("zero_update_steps", 0))
        self.vanishing_update_steps = int(state.get("vanishing_update_steps", 0))
        self.largest_update = float(state.get("largest_update", 0.0))
        if "gramian_average" in state:
            self.gramians.load_state_dict(state["gramian_average"], module_device(self.model))
        restore_best_dir(ckpt_root)
        if self.best_step is not None and (ckpt_root / "best" / "model.safetensors").is_file():
            snapshot = copy.deepcopy(self.model)
            load_weights(snapshot, ckpt_root / "best" / "model.safetensors")
            self._best_state = {k: v.clone() for k, v in snapshot.state_dict().items()}

    # ---- loop --------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        start = time.perf_counter()
        ckpt_root = self.out_dir / "checkpoints" if self.out_dir is not None else None
        if resume:
            if ckpt_root is None:
                raise PolytaskError("resume needs an output folder")
            self._resume(ckpt_root)
        log = (
            RunLog(self.out_dir / "logs", self.step if resume else None)
            if self.out_dir is not None and self.writes
            else None
        )
        stopped_early = False
        try:
            with progress_bar(self.max_steps, self.step, enabled=self.progress) as bar:
                while self.step < self.max_steps and not stopped_early:
                    self._one_step(log)
                    bar.advance(self.step)
                    last = self.step == self.max_steps
                    if self.val_data is not None and (self.step % self.eval_every == 0 or last):
                        stopped_early = self._validate(log, ckpt_root)
                        bar.note(self.best_score)
                    if (
                        ckpt_root is not None
                        and self.writes
                        and (self.step % self.checkpoint_every == 0 or last or stopped_early)
                    ):
                        self._checkpoint(ckpt_root)
            if log is not None and self.gramian_log_every:
                self.gramians.write(log.folder)  # the average at the end of training
        finally:
            if log is not None:
                log.close()
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        return FitResult(
            self.step, self.best_step, self.best_score, stopped_early,
            time.perf_counter() - start, self.zero_update_steps, self.vanishing_update_steps,
        )  # fmt: skip

    def _one_step(self, log: RunLog | None) -> None:
        batch = self.loader.batch(self.step)
        if self.world_size > 1:
            batch = shard(batch, self.rank, self.world_size)
        device = module_device(self.model)
        batch = [g.to(device) for g in batch]  # callbacks see the batch the step used
        out = train_step(
            self.model, batch, self.taskset, self.optimizer,
            balancer=self.balancer, grad_clip=self.grad_clip, scheduler=self.scheduler, step=self.step,
            after_backward=average_gradients if self.world_size > 1 else None,
        )  # fmt: skip
        self.step += 1
        epoch = (self.step - 1) // self.loader.steps_per_epoch
        self._statistics(out, log)
        if log is not None:
            log.write("train", self._record(out, epoch))
        if self.callbacks:
            self._call_back(out, batch, epoch)

    def _statistics(self, out: StepOutput, log: RunLog | None) -> None:
        """Count a zero shared update (warned about once) and average the step's Gramian."""
        if out.zero_update:
            self.zero_update_steps += 1
            if self.zero_update_steps == 1:
                LOG.warning(
                    "step %d: the shared parameters got an exactly zero update although a present "
                    "task has a positive loss (a dead or frozen trunk, or every task weighted 0?); "
                    "later such steps are counted (zero_update_steps), not warned about",
                    self.step,
                )
        self._vanishing(out)
        if out.gramian is not None and self.gramian_log_every:
            present = torch.tensor(out.present, device=out.gramian.device)
            self.gramians.update(out.gramian, present, self.step)
        if log is not None and self.gramian_log_every and self.step % self.gramian_log_every == 0:
            self.gramians.write(log.folder)

    def _vanishing(self, out: StepOutput) -> None:
        """Count a shared update that fell below ``VANISHING`` times the largest so far."""
        norm, ratio = out.shared_grad_norm, out.extra.get("update_ratio")
        out.vanishing_update = 0.0 < norm < VANISHING * self.largest_update or (
            isinstance(ratio, float) and norm > 0.0 and ratio < VANISHING
        )
        self.largest_update = max(self.largest_update, norm)
        if not out.vanishing_update:
            return
        self.vanishing_update_steps += 1
        if self.vanishing_update_steps == 1:
            LOG.warning(
                "step %d: the shared update (norm %.3g) is under %g of the largest so far (%.3g): "
                "the balancing method has all but stopped training the shared layers; later such "
                "steps are counted (vanishing_update_steps), not warned about",
                self.step, norm, VANISHING, self.largest_update,
            )  # fmt: skip

    def _record(self, out: StepOutput, epoch: int) -> dict[str, Any]:
        """One ``train.jsonl`` line: O(K) numbers (losses, weights, present counts)."""
        record: dict[str, Any] = {"step": self.step, "epoch": epoch, "loss": out.total}
        record["losses"] = dict(zip(out.losses, float32_digits(out.losses.values())))
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["grad_norm"] = out.grad_norm
        record["shared_grad_norm"] = out.shared_grad_norm
        record["zero_update"] = out.zero_update
        record["vanishing_update"] = out.vanishing_update
        record["present"] = out.present
        if out.weights is not None:
            record["weights"] = float32_digits(out.weights)
        record.update(out.extra)
        return record

    def _call_back(self, out: StepOutput, batch: list[Group], epoch: int) -> None:
        names = tuple(out.losses)  # the tasks the batch fed, in task-set order
        rows = [self.taskset.index(n) for n in names]
        everything = len(rows) == len(self.taskset)
        gramian, weights = out.gramian, out.weights
        if gramian is not None and not everything:
            index = torch.tensor(rows, device=gramian.device)
            gramian = gramian[index][:, index]
        info = StepInfo(
            self.step, epoch, names, torch.tensor(list(out.losses.values())),
            None if weights is None else torch.tensor([weights[k] for k in rows]), gramian, batch,
            torch.tensor([out.present[k] for k in rows]),
        )  # fmt: skip
        for cb in self.callbacks:
            if hasattr(cb, "on_step"):
                cb.on_step(info)
            if hasattr(cb, "on_epoch_end") and self.step % self.loader.steps_per_epoch == 0:
                cb.on_epoch_end(epoch)

    def _validate(self, log: RunLog | None, ckpt_root: Path | None) -> bool:
        assert self.val_data is not None
        metrics = evaluate_split(
            self.model, self.taskset, self.val_data, self.eval_batch_size, "val"
        )
        score = self.selection.score(metrics) if self.selection is not None else math.nan
        improved = self.selection is None or self.selection.better(score, self.best_score)
        if improved:
            self.best_score = None if self.selection is None else score
            self.best_step, self.bad_evals = self.step, 0
            self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if ckpt_root is not None and self.writes:
                write_best(ckpt_root, self.model, {"step": self.step, "score": score})
        else:
            self.bad_evals += 1
        if log is not None:
            log.write(
                "val",
                {
                    "step": self.step,
                    "score": score,
                    "best_step": self.best_step,
                    "metrics": metrics,
                },
            )
        return self.patience is not None and self.bad_evals >= self.patience

    def _checkpoint(self, ckpt_root: Path) -> None:
        meta = {
            "step": self.step,
            "best_step": self.best_step,
            "best_score": self.best_score,
            "config_hash": self.config_hash,
        }
        write_checkpoint(ckpt_root, self.step, self.model, self.state_dict(), meta)
