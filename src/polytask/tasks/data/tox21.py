"""The bundled Tox21 data set (12 binary toxicity assays, 7,831 molecules, 17% labels missing).

See ``resources/PROVENANCE.md`` for where the file comes from and how to cite it.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from polytask._core.catalog import TOX21_TASKS
from polytask.tasks.data.table import label_array, read_table

__all__ = ["TOX21_TASKS", "load_tox21", "tox21_path"]


def tox21_path() -> str:
    """Filesystem path of the bundled ``tox21.csv.gz``."""
    return str(resources.files("polytask.tasks.data") / "resources" / "tox21.csv.gz")


def load_tox21() -> tuple[list[str], dict[str, np.ndarray]]:
    """SMILES strings and, per task, float32 labels with NaN where the assay was not run."""
    path = tox21_path()
    frame = read_table(path, ["smiles", *TOX21_TASKS])
    labels = {t: label_array(frame, t, path, "binary") for t in TOX21_TASKS}
    return frame["smiles"].astype(str).tolist(), labels
