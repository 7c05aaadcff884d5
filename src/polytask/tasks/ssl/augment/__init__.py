"""Augmentations for self-supervised views, one per file; each declares the modality kinds it fits."""

from polytask.tasks.ssl.augment.base import Augmentation
from polytask.tasks.ssl.augment.bit_flip import BitFlip
from polytask.tasks.ssl.augment.feature_dropout import FeatureDropout
from polytask.tasks.ssl.augment.gaussian_noise import GaussianNoise

__all__ = ["Augmentation", "BitFlip", "FeatureDropout", "GaussianNoise"]
