"""Augmentations for self-supervised views, one per file; each declares the modality kinds it fits."""

from polytask.tasks.ssl.augment.base import Augmentation
from polytask.tasks.ssl.augment.bit_flip import BitFlip
from polytask.tasks.ssl.augment.feature_dropout import FeatureDropout
from polytask.tasks.ssl.augment.gaussian_noise import GaussianNoise
from polytask.tasks.ssl.augment.horizontal_flip import HorizontalFlip
from polytask.tasks.ssl.augment.pixel_noise import PixelNoise
from polytask.tasks.ssl.augment.random_crop import RandomCrop

__all__ = [
    "Augmentation",
    "BitFlip",
    "FeatureDropout",
    "GaussianNoise",
    "HorizontalFlip",
    "PixelNoise",
    "RandomCrop",
]
