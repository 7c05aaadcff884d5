"""Multi-task data: tensors, tables, the bundled Tox21, featurisation, splits, samplers, loaders."""

from polytask.tasks.data.anti_curriculum import AntiCurriculumSampler
from polytask.tasks.data.descriptors import Standardizer, descriptor_names, descriptors
from polytask.tasks.data.featurize import ecfp
from polytask.tasks.data.high_resource_first import HighResourceFirstSampler
from polytask.tasks.data.images import (
    FASHION_MNIST_CLASSES,
    load_digits_images,
    load_fashion_mnist,
    read_idx,
)
from polytask.tasks.data.loaders import Group, JointLoader, PerTaskLoader
from polytask.tasks.data.sampling import AllTasksSampler, RoundRobinSampler, TemperatureSampler
from polytask.tasks.data.splits import random_split, scaffold_split
from polytask.tasks.data.table import label_array, read_table
from polytask.tasks.data.tensors import Inputs, TensorData
from polytask.tasks.data.text import GLUE_TASKS, TextSplit, read_glue, read_tweeteval, tokenize
from polytask.tasks.data.tox21 import TOX21_TASKS, load_tox21, tox21_path

__all__ = [
    "FASHION_MNIST_CLASSES",
    "GLUE_TASKS",
    "TOX21_TASKS",
    "AllTasksSampler",
    "AntiCurriculumSampler",
    "Group",
    "HighResourceFirstSampler",
    "Inputs",
    "JointLoader",
    "PerTaskLoader",
    "RoundRobinSampler",
    "Standardizer",
    "TemperatureSampler",
    "TensorData",
    "TextSplit",
    "descriptor_names",
    "descriptors",
    "ecfp",
    "label_array",
    "load_digits_images",
    "load_fashion_mnist",
    "load_tox21",
    "random_split",
    "read_glue",
    "read_idx",
    "read_table",
    "read_tweeteval",
    "scaffold_split",
    "tokenize",
    "tox21_path",
]
