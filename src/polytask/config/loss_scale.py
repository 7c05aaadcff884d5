"""Muppet's loss scaling: each classification task's loss divided by the log of its class count.

Aghajanyan et al., "Muppet: Massive Multi-task Representations with Pre-Finetuning" (EMNLP
2021), Sec. 3.2 "Loss scaling": with tasks of different output spaces trained in one
heterogeneous batch, the cross-entropy of a ``C``-class task is scaled by ``1 / log(C)``, so
tasks with many classes (whose loss at chance is ``log C``) do not dominate:

    L_total = Σ_k w_k · L_k / log(C_k).

``C`` per task kind: ``binary`` → 2; ``multiclass`` → ``num_classes``; ``multilabel`` → 2 (each
label is a binary cross-entropy, averaged); ``regression`` and every other kind (reconstruction,
contrastive) → no scaling (factor 1): their losses are not cross-entropies over classes.

Applied by the config layer as a change of the static task weight (``w_k ← w_k / log C_k``).
"""

from __future__ import annotations

import math

__all__ = ["log_classes_factor"]


def log_classes_factor(kind: str, num_classes: int) -> float:
    """The factor ``1 / log(C)`` of a task (natural log), 1.0 where no scaling applies.

    >>> round(log_classes_factor("binary", 1), 6), round(log_classes_factor("multiclass", 10), 6)
    (1.442695, 0.434294)
    >>> log_classes_factor("regression", 1)
    1.0
    """
    classes = {"binary": 2, "multilabel": 2, "multiclass": num_classes}.get(kind)
    if classes is None or classes < 2:
        return 1.0
    return 1.0 / math.log(classes)
