"""A thin trainer around :func:`train_step`: steps, validation, selection, early stopping,
checkpoints, exact resume, logs and a progress bar. It is the only code that loops over steps.
"""

from __future__ import annotations

import copy
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
from polytask.train.logs import RunLog
from polytask.train.progress import progress_bar
from polytask.train.step import BalancerLike, train_step


class Loader(Protocol):
    steps_per_epoch: int

    def batch(self, step: int) -> list[Group]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class StepInfo:
    """What callbacks receive after each optimizer step."""

    step: int
    epoch: int
    task_names: tuple[str, ...]
    losses: Tensor
    weights: Tensor | None
    gramian: Tensor | None
    batch: list[Group] | None = None


@dataclass
class FitResult:
    steps: int
    best_step: int | None
    best_score: float | None
    stopped_early: bool
    seconds: float


class Trainer:
    """Train ``model`` on ``taskset`` with batches from ``loader`` for ``max_steps`` steps.

    Validation runs every ``eval_every`` steps (and at the end); the ``selection`` rule picks the
    best step, whose weights are loaded back into the model when ``fit`` returns. Early stopping
    ends training after ``patience`` validations without improvement. With ``out_dir`` set,
    checkpoints are written every ``checkpoint_every`` steps (default: at each validation) and
    ``fit(resume=True)`` continues bit-exactly from the latest one.
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
    ) -> None:
        if max_steps < 1:
            raise PolytaskError(f"max_steps must be >= 1, got {max_steps}")
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
        finally:
            if log is not None:
                log.close()
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        return FitResult(
            self.step, self.best_step, self.best_score, stopped_early, time.perf_counter() - start
        )

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
        if log is not None:
            record: dict[str, Any] = {
                "step": self.step,
                "epoch": epoch,
                "loss": out.total,
                "losses": out.losses,
            }
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            record["grad_norm"] = out.grad_norm
            if out.weights is not None:
                record["weights"] = out.weights
            record.update(out.extra)
            log.write("train", record)
        if self.callbacks:
            names = tuple(n for n in self.taskset.names if n in out.losses)
            info = StepInfo(
                self.step, epoch, names, torch.tensor([out.losses[n] for n in names]),
                torch.tensor(out.weights) if out.weights is not None else None, out.gramian, batch,
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
