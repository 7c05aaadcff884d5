"""Multi-task data: tensors, tables, the bundled Tox21, featurisation, splits, samplers, loaders."""

from polytask.tasks.data.featurize import ecfp
from polytask.tasks.data.loaders import Group, JointLoader, PerTaskLoader
from polytask.tasks.data.sampling import AllTasksSampler, RoundRobinSampler, TemperatureSampler
from polytask.tasks.data.splits import random_split, scaffold_split
from polytask.tasks.data.table import label_array, read_table
from polytask.tasks.data.tensors import Inputs, TensorData
from polytask.tasks.data.tox21 import TOX21_TASKS, load_tox21, tox21_path

__all__ = [
    "TOX21_TASKS",
    "AllTasksSampler",
    "Group",
    "Inputs",
    "JointLoader",
    "PerTaskLoader",
    "RoundRobinSampler",
    "TemperatureSampler",
    "TensorData",
    "ecfp",
    "label_array",
    "load_tox21",
    "random_split",
    "read_table",
    "scaffold_split",
    "tox21_path",
]
