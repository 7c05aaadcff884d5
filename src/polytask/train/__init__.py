"""Training: the step, the trainer, checkpoints and logs. The only layer that loops over steps."""

from polytask.train.checkpoint import latest_checkpoint, load_weights, save_weights
from polytask.train.distill import DistillResult, count_parameters, distill, soft_loss
from polytask.train.step import StepOutput, compute_losses, train_step
from polytask.train.task_losses import StepLosses
from polytask.train.trainer import FitResult, StepInfo, Trainer

__all__ = [
    "DistillResult",
    "FitResult",
    "StepInfo",
    "StepLosses",
    "StepOutput",
    "Trainer",
    "compute_losses",
    "count_parameters",
    "distill",
    "latest_checkpoint",
    "load_weights",
    "save_weights",
    "soft_loss",
    "train_step",
]
