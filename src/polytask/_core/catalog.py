"""Names of the bundled data sets' tasks, importable without the data code."""

from __future__ import annotations

#: the 12 Tox21 assays, in the column order of the bundled ``tox21.csv.gz``
TOX21_TASKS: tuple[str, ...] = (
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD",
    "NR-PPAR-gamma", "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
)  # fmt: skip
