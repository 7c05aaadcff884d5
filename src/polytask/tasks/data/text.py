"""Text classification data: TweetEval and GLUE (SST-2, CoLA, MRPC, RTE) readers and tokenising.

Every reader takes the folder the caller points it to and returns a :class:`TextSplit` (texts,
optional second texts for sentence pairs, float labels with NaN for unlabelled files).
:func:`tokenize` turns texts into the padded ``input_ids`` / ``attention_mask`` tensors that
:class:`~polytask.tasks.data.TensorData` takes as inputs::

    split = read_glue("data/glue", "SST-2", "train")
    inputs = tokenize(split.texts, tokenizer, max_length=64, pairs=split.pairs)
    data = TensorData(inputs, {"sst2": split.labels})

File formats (tab-separated GLUE files are read with ``csv.QUOTE_NONE``: sentences contain
unbalanced quotes):

===========  ==========================================  ========================================
task         columns (header?)                           label
===========  ==========================================  ========================================
TweetEval    ``<split>_text.txt`` + ``<split>_labels.txt``  one integer per line
SST-2        ``sentence, label`` (header)                1 = positive
CoLA         ``source, label, annotation, sentence``       1 = acceptable; ``test.tsv`` is
             (no header); ``test.tsv``: ``index, sentence``  unlabelled (NaN)
MRPC         ``Quality, #1 ID, #2 ID, #1 String, #2 String``  1 = paraphrase; ``test.tsv`` is
             (header, UTF-8 BOM)                         unlabelled (NaN)
RTE          ``index, sentence1, sentence2, label``        entailment = 0, not_entailment = 1 (the
             (header, except ``val.tsv``)                GLUE / HF datasets ids); test unlabelled
===========  ==========================================  ========================================

Which file is which official GLUE split is the data's business, not the reader's: ``name`` is the
file stem (``"train"``, ``"val"``, ``"dev"``, ``"test"``, ``"msr_paraphrase_test"``...).
A malformed line raises a one-line :class:`~polytask._core.PolytaskError` naming file and line.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polytask._core import PolytaskError

__all__ = ["GLUE_TASKS", "TextSplit", "read_glue", "read_tweeteval", "tokenize"]

GLUE_TASKS = ("SST-2", "CoLA", "MRPC", "RTE")
_RTE_LABELS = {"entailment": 0.0, "not_entailment": 1.0}


@dataclass(frozen=True)
class TextSplit:
    """Texts (and second texts of sentence pairs) with one float label per row (NaN = none)."""

    texts: list[str]
    labels: Tensor
    pairs: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.texts) != int(self.labels.shape[0]):
            raise PolytaskError(
                f"TextSplit: {len(self.texts)} texts but {int(self.labels.shape[0])} labels"
            )
        if self.pairs is not None and len(self.pairs) != len(self.texts):
            raise PolytaskError(
                f"TextSplit: {len(self.pairs)} second texts but {len(self.texts)} texts"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, idx: Sequence[int]) -> TextSplit:
        """The rows ``idx``, in that order."""
        rows = [int(i) for i in idx]
        pairs = None if self.pairs is None else [self.pairs[i] for i in rows]
        return TextSplit([self.texts[i] for i in rows], self.labels[rows], pairs)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise PolytaskError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolytaskError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def _int_label(value: str, path: Path, line: int) -> float:
    try:
        return float(int(value.strip()))
    except ValueError:
        raise PolytaskError(f"{path}:{line}: label {value.strip()!r} is not an integer") from None


def read_tweeteval(root: str | Path, task: str, split: str) -> TextSplit:
    """``root/<task>/<split>_text.txt`` and ``<split>_labels.txt`` (TweetEval's layout).

    ``task`` is e.g. ``"irony"`` or ``"stance/abortion"``; ``split`` is ``train``, ``val`` or
    ``test`` (the official TweetEval splits). Trailing spaces of tweets are stripped.
    """
    folder = Path(root) / task
    text_path, label_path = folder / f"{split}_text.txt", folder / f"{split}_labels.txt"
    texts = [t.rstrip() for t in _lines(text_path)]
    raw = _lines(label_path)
    if len(raw) != len(texts):
        raise PolytaskError(
            f"{label_path}: {len(raw)} labels but {text_path.name} has {len(texts)} lines"
        )
    labels = [_int_label(v, label_path, i + 1) for i, v in enumerate(raw)]
    return TextSplit(texts, torch.tensor(labels, dtype=torch.float32))


def _rows(path: Path) -> list[list[str]]:
    lines = _lines(path)
    return [next(csv.reader([ln], delimiter="\t", quoting=csv.QUOTE_NONE)) for ln in lines]


def _need(row: list[str], n: int, path: Path, line: int) -> None:
    if len(row) != n:
        raise PolytaskError(f"{path}:{line}: expected {n} tab-separated fields, found {len(row)}")


def _sst2(rows: list[list[str]], path: Path) -> TextSplit:
    start = 1 if rows and rows[0][:1] == ["sentence"] else 0
    texts, labels = [], []
    for i, row in enumerate(rows[start:], start=start + 1):
        _need(row, 2, path, i)
        texts.append(row[0])
        labels.append(_int_label(row[1], path, i))
    return TextSplit(texts, torch.tensor(labels, dtype=torch.float32))


def _cola(rows: list[list[str]], path: Path) -> TextSplit:
    texts, labels = [], []
    if rows and rows[0][:1] == ["index"]:  # the unlabelled test file: index, sentence
        for i, row in enumerate(rows[1:], start=2):
            _need(row, 2, path, i)
            texts.append(row[1])
        return TextSplit(texts, torch.full((len(texts),), math.nan))
    for i, row in enumerate(rows, start=1):
        _need(row, 4, path, i)
        texts.append(row[3])
        labels.append(_int_label(row[1], path, i))
    return TextSplit(texts, torch.tensor(labels, dtype=torch.float32))


def _mrpc(rows: list[list[str]], path: Path) -> TextSplit:
    if not rows or rows[0][:1] not in (["Quality"], ["index"]):
        raise PolytaskError(f"{path}:1: expected a 'Quality' or 'index' header (MRPC layout)")
    labelled = rows[0][0] == "Quality"
    first, second, labels = [], [], []
    for i, row in enumerate(rows[1:], start=2):
        _need(row, 5, path, i)
        first.append(row[3])
        second.append(row[4])
        labels.append(_int_label(row[0], path, i) if labelled else math.nan)
    return TextSplit(first, torch.tensor(labels, dtype=torch.float32), second)


def _rte(rows: list[list[str]], path: Path) -> TextSplit:
    header = rows[0] if rows and rows[0][:1] == ["index"] else None
    labelled = header is None or "label" in header
    width = 4 if labelled else 3
    first, second, labels = [], [], []
    for i, row in enumerate(rows[1 if header else 0 :], start=2 if header else 1):
        _need(row, width, path, i)
        first.append(row[1])
        second.append(row[2])
        if not labelled:
            labels.append(math.nan)
        elif row[3] in _RTE_LABELS:
            labels.append(_RTE_LABELS[row[3]])
        else:
            raise PolytaskError(
                f"{path}:{i}: label {row[3]!r} is not 'entailment' or 'not_entailment'"
            )
    return TextSplit(first, torch.tensor(labels, dtype=torch.float32), second)


_GLUE_READERS: dict[str, Callable[[list[list[str]], Path], TextSplit]] = {
    "SST-2": _sst2,
    "CoLA": _cola,
    "MRPC": _mrpc,
    "RTE": _rte,
}


def read_glue(root: str | Path, task: str, name: str) -> TextSplit:
    """``root/<task>/<name>.tsv`` (or ``<name>.txt`` for MRPC's MSR files) of a GLUE task.

    ``task`` is one of :data:`GLUE_TASKS`. See the module docstring for each layout.
    """
    if task not in _GLUE_READERS:
        raise PolytaskError(f"read_glue: unknown task {task!r}; valid: {', '.join(GLUE_TASKS)}")
    folder = Path(root) / task
    path = folder / f"{name}.tsv"
    if not path.is_file() and (folder / f"{name}.txt").is_file():
        path = folder / f"{name}.txt"
    return _GLUE_READERS[task](_rows(path), path)


def tokenize(
    texts: Sequence[str],
    tokenizer: Any,
    max_length: int,
    pairs: Sequence[str] | None = None,
) -> dict[str, Tensor]:
    """Padded ``input_ids`` and ``attention_mask`` (``[N, L]`` int64, ``L ≤ max_length``).

    ``tokenizer`` is a Hugging Face tokenizer (callable with ``padding``, ``truncation``,
    ``max_length``, ``return_tensors``). Sentence pairs are truncated longest-first. Rows are
    padded to the longest row (at most ``max_length``). For pairs, the tokenizer's
    ``token_type_ids`` (segment ids) are returned too.
    """
    if max_length < 2:
        raise PolytaskError(f"tokenize: max_length must be >= 2, got {max_length}")
    if not texts:
        raise PolytaskError("tokenize: no texts")
    if pairs is not None and len(pairs) != len(texts):
        raise PolytaskError(f"tokenize: {len(pairs)} second texts for {len(texts)} texts")
    enc = tokenizer(
        list(texts),
        list(pairs) if pairs is not None else None,
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    out = {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}
    if pairs is not None and "token_type_ids" in enc:
        out["token_type_ids"] = enc["token_type_ids"].long()
    return out
