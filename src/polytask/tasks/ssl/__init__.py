"""Self-supervised tasks: pretexts that make (inputs, target) pairs from unlabeled inputs.

A pretext feeds an ordinary :class:`~polytask.tasks.Task` (kinds ``reconstruction`` and
``contrastive``); :class:`PretextLoader` adds its groups to any batch stream. Augmentations live
in :mod:`polytask.tasks.ssl.augment`, each declaring the modality kinds it fits.
"""

from polytask.tasks.ssl.augment import (
    Augmentation,
    BitFlip,
    FeatureDropout,
    GaussianNoise,
    HorizontalFlip,
    PixelNoise,
    RandomCrop,
)
from polytask.tasks.ssl.contrastive_views import ContrastiveViews, partner_targets
from polytask.tasks.ssl.eval_data import pretext_split
from polytask.tasks.ssl.loader import PretextLoader, pretext_generator
from polytask.tasks.ssl.masked_features import MaskedFeatures
from polytask.tasks.ssl.modality import MODALITY_KINDS, check_fits, modality_kind
from polytask.tasks.ssl.modality_contrastive import ModalityContrastive
from polytask.tasks.ssl.modality_mask import (
    ModalityMaskLoader,
    ModalityMaskPretext,
    draw_modality_mask,
)
from polytask.tasks.ssl.patch_mae import PatchMAE
from polytask.tasks.ssl.protocol import Pretext, pick_modality, replace_modality
from polytask.tasks.ssl.rotation import Rotation
from polytask.tasks.ssl.sla import SLAInference, SLALoader, SLATask, sla_aggregate

__all__ = [
    "MODALITY_KINDS",
    "Augmentation",
    "BitFlip",
    "ContrastiveViews",
    "FeatureDropout",
    "GaussianNoise",
    "HorizontalFlip",
    "MaskedFeatures",
    "ModalityContrastive",
    "ModalityMaskLoader",
    "ModalityMaskPretext",
    "PatchMAE",
    "PixelNoise",
    "Pretext",
    "PretextLoader",
    "RandomCrop",
    "Rotation",
    "SLAInference",
    "SLALoader",
    "SLATask",
    "check_fits",
    "draw_modality_mask",
    "modality_kind",
    "partner_targets",
    "pick_modality",
    "pretext_generator",
    "pretext_split",
    "replace_modality",
    "sla_aggregate",
]
