"""TweetEval / GLUE readers on the real files (row and label counts from the data's provenance
notes) and on small broken files (one-line errors naming file and line)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polytask._core import PolytaskError
from polytask.tasks.data.text import TextSplit, read_glue, read_tweeteval, tokenize
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared data not available")


def _counts(split: TextSplit, classes: int) -> list[int]:
    return [int((split.labels == c).sum()) for c in range(classes)]


@needs_data
@pytest.mark.parametrize(
    ("task", "name", "rows", "counts"),
    [
        ("SST-2", "test", 872, [428, 444]),
        ("SST-2", "dev", 6735, [2994, 3741]),
        ("CoLA", "train", 7250, [2162, 5088]),
        ("CoLA", "val", 1301, [366, 935]),
        ("CoLA", "dev", 1043, [322, 721]),
        ("MRPC", "train", 3668, [1194, 2474]),
        ("MRPC", "dev", 408, [129, 279]),
        ("MRPC", "msr_paraphrase_test", 1725, [578, 1147]),
        ("RTE", "train", 2127, [1078, 1049]),
        ("RTE", "val", 363, [171, 192]),
        ("RTE", "dev", 277, [146, 131]),
    ],
)
def test_glue_files_have_the_documented_rows_and_labels(task, name, rows, counts) -> None:
    split = read_glue(DATA / "glue", task, name)
    assert len(split) == rows
    assert _counts(split, 2) == counts
    assert split.labels.dtype == torch.float32
    assert (split.pairs is not None) == (task in ("MRPC", "RTE"))


@needs_data
def test_glue_first_rows_and_unlabelled_test_files() -> None:
    mrpc = read_glue(DATA / "glue", "MRPC", "train")
    assert mrpc.texts[0].startswith("Amrozi accused his brother")  # the BOM is not in the text
    assert mrpc.pairs is not None and mrpc.pairs[0].startswith("Referring to him as only")
    cola = read_glue(DATA / "glue", "CoLA", "dev")  # no header, no final newline
    assert cola.texts[0].startswith("The sailors rode the breeze clear of the rocks")
    for task, rows in (("CoLA", 1063), ("RTE", 3000), ("MRPC", 1725)):
        test = read_glue(DATA / "glue", task, "test")
        assert len(test) == rows and bool(torch.isnan(test.labels).all())


@needs_data
@pytest.mark.parametrize(
    ("task", "split", "rows", "counts"),
    [
        ("irony", "train", 2862, [1417, 1445]),
        ("irony", "test", 784, [473, 311]),
        ("emotion", "train", 3257, [1400, 708, 294, 855]),
        ("hate", "val", 1000, [573, 427]),
        ("offensive", "train", 11916, [7975, 3941]),
        ("stance/abortion", "train", 587, [159, 319, 109]),
    ],
)
def test_tweeteval_files_have_the_documented_rows_and_labels(task, split, rows, counts) -> None:
    data = read_tweeteval(DATA / "tweeteval", task, split)
    assert len(data) == rows
    assert _counts(data, len(counts)) == counts
    assert all(t == t.rstrip() for t in data.texts)


def test_bad_files_raise_one_line_errors_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "irony").mkdir()
    (tmp_path / "irony" / "train_text.txt").write_text("a\nb\nc\n")
    (tmp_path / "irony" / "train_labels.txt").write_text("0\nx\n1\n")
    with pytest.raises(PolytaskError, match=r"train_labels\.txt:2: label 'x' is not an integer"):
        read_tweeteval(tmp_path, "irony", "train")
    (tmp_path / "irony" / "train_labels.txt").write_text("0\n1\n")
    with pytest.raises(PolytaskError, match=r"2 labels but train_text\.txt has 3 lines"):
        read_tweeteval(tmp_path, "irony", "train")
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text('sentence\tlabel\ngood "film\t1\nbad\n')
    with pytest.raises(
        PolytaskError, match=r"train\.tsv:3: expected 2 tab-separated fields, found 1"
    ):
        read_glue(tmp_path, "SST-2", "train")
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n"
    )
    with pytest.raises(PolytaskError, match=r"dev\.tsv:2: label 'maybe'"):
        read_glue(tmp_path, "RTE", "dev")
    with pytest.raises(PolytaskError, match=r"nope\.tsv: file not found"):
        read_glue(tmp_path, "RTE", "nope")
    with pytest.raises(PolytaskError, match="unknown task 'QQP'"):
        read_glue(tmp_path, "QQP", "train")
    with pytest.raises(PolytaskError) as info:
        read_glue(tmp_path, "SST-2", "train")
    assert "\n" not in str(info.value)


def test_unbalanced_quotes_stay_inside_one_field(tmp_path: Path) -> None:
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "x.tsv").write_text('sentence\tlabel\nit "s fine\t1\nno\t0')
    split = read_glue(tmp_path, "SST-2", "x")
    assert split.texts == ['it "s fine', "no"]
    assert split.labels.tolist() == [1.0, 0.0]
    sub = split.select([1, 0])
    assert sub.texts == ["no", 'it "s fine'] and sub.labels.tolist() == [0.0, 1.0]


class _CharTokenizer:
    """A stand-in with the Hugging Face call signature: one id per character, 0 = padding."""

    def __call__(self, texts, pairs, padding, truncation, max_length, return_tensors):
        assert padding == "longest" and truncation is True and return_tensors == "pt"
        rows = [
            [ord(c) for c in t + ("|" + p if pairs is not None else "")][:max_length]
            for t, p in zip(texts, pairs or [None] * len(texts))
        ]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def test_tokenize_pads_to_the_longest_row_and_truncates() -> None:
    out = tokenize(["ab", "abcdef"], _CharTokenizer(), max_length=4)
    assert out["input_ids"].tolist() == [[97, 98, 0, 0], [97, 98, 99, 100]]
    assert out["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    pairs = tokenize(["a"], _CharTokenizer(), max_length=8, pairs=["b"])
    assert pairs["input_ids"].tolist() == [[97, 124, 98]]
    with pytest.raises(PolytaskError, match="max_length must be >= 2"):
        tokenize(["a"], _CharTokenizer(), max_length=1)
    with pytest.raises(PolytaskError, match="1 second texts for 2 texts"):
        tokenize(["a", "b"], _CharTokenizer(), max_length=4, pairs=["c"])
